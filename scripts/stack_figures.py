"""Stack result images (e.g. the ``final.png`` grids of compare_taps.py runs) into one labelled
JPEG for the docs.

    python scripts/stack_figures.py outputs/real/taps/*/final.png \\
        --title "photo | ReLU taps | conv taps" --out docs/experiments/taps.jpg

Each image becomes a row, scaled to ``--width``, under a line with its label (``--labels``, or
the name of its folder).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont


def stack_rows(
    rows: list[Image.Image], labels: list[str], width: int, title: str = "", line: int = 16
) -> Image.Image:
    """``rows`` one under another, each scaled to ``width`` under a ``line`` px line with its
    label, below an optional ``title`` line."""
    font = ImageFont.load_default()
    scaled = [r.resize((width, round(r.height * width / r.width)), Image.LANCZOS) for r in rows]
    top = line if title else 0
    sheet = Image.new("RGB", (width, top + sum(r.height + line for r in scaled)), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((4, 2), title, fill="black", font=font)
    y = top
    for label, row in zip(labels, scaled, strict=True):
        draw.text((4, y + 2), label, fill="black", font=font)
        sheet.paste(row, (0, y + line))
        y += row.height + line
    return sheet


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", type=Path, nargs="+")
    parser.add_argument("--labels", nargs="*", help="one per image (default: folder names)")
    parser.add_argument("--title", default="", help="a line above everything")
    parser.add_argument("--width", type=int, default=780)
    parser.add_argument("--quality", type=int, default=82)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    labels = args.labels or [p.parent.name for p in args.images]
    if len(labels) != len(args.images):
        parser.error(f"{len(labels)} labels for {len(args.images)} images")

    rows = [Image.open(path).convert("RGB") for path in args.images]
    sheet = stack_rows(rows, labels, args.width, title=args.title)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, quality=args.quality, optimize=True)
    print(f"{args.out}: {sheet.width}x{sheet.height}, {args.out.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
