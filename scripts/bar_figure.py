"""The shipped models against their bar, as pictures: each network's output beside the image of
50 L-BFGS steps on the same photo and loss, from ``scripts/quality.py --save-images`` runs.

    for m in starry_night wave; do
      python scripts/quality.py $m --style ../shared/data/styles/$m.jpg \\
        --vgg-weights ../shared/models/vgg16_features.pth \\
        --photos ../shared/data/content/chicago.jpg --adam-steps 1 --lbfgs-steps 60 \\
        --save-images --out outputs/bar/$m
    done
    python scripts/bar_figure.py outputs/bar/* --out docs/experiments/bar.jpg

One row per run folder and photo: the network's output and the L-BFGS image, each labelled
with its total loss (from the folder's ``quality.csv``).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from PIL import Image
from stack_figures import stack_rows

LABEL_HEIGHT = 18


def rows_of(folder: Path) -> list[tuple[str, list[tuple[Path, str]]]]:
    """(row label, [(image, caption), ...]) for every photo of one quality.py run."""
    table = folder / "quality.csv"
    if not table.is_file():
        raise SystemExit(f"error: {table} does not exist (run scripts/quality.py --save-images)")
    rows = []
    with open(table, newline="") as f:
        for row in csv.DictReader(f):
            stem = Path(row["photo"]).stem
            bars = sorted(folder.glob(f"{stem}_lbfgs[0-9]*.png"))
            network = folder / f"{stem}_network.png"
            if not network.is_file() or not bars or "lbfgs_bar_total" not in row:
                raise SystemExit(f"error: {folder} has no saved images of {row['photo']}")
            steps = bars[0].stem.rsplit("lbfgs", 1)[1]
            rows.append(
                (
                    f"{folder.name}, {row['photo']}",
                    [
                        (network, f"network: total {float(row['net_total']):.2f}"),
                        (bars[0], f"{steps} L-BFGS steps: {float(row['lbfgs_bar_total']):.2f}"),
                    ],
                )
            )
    return rows


def side_by_side(images: list[Image.Image], gap: int = 4) -> Image.Image:
    strip = Image.new(
        "RGB", (sum(i.width for i in images) + gap * (len(images) - 1), images[0].height), "white"
    )
    x = 0
    for im in images:
        strip.paste(im, (x, 0))
        x += im.width + gap
    return strip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="quality.py --save-images folders")
    parser.add_argument("--height", type=int, default=200, help="of each image (px)")
    parser.add_argument("--quality", type=int, default=82)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    rows = [r for folder in args.runs for r in rows_of(folder)]
    strips = []
    for _, cells in rows:
        captioned = []
        for path, caption in cells:
            im = Image.open(path).convert("RGB")
            width = round(im.width * args.height / im.height)
            captioned.append(stack_rows([im], [caption], width, line=LABEL_HEIGHT))
        strips.append(side_by_side(captioned))
    width = max(s.width for s in strips)
    sheet = stack_rows(strips, [label for label, _ in rows], width, line=LABEL_HEIGHT)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, quality=args.quality)
    print(f"{args.out}: {len(rows)} rows, {args.out.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
