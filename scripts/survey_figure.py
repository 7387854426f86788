"""Before/after figure of style_survey.py runs: for each painting, the painting and its result on
one photo under each setting.

    python scripts/survey_figure.py outputs/real/survey/{default,size128,scales,weight10} \\
        --labels "default" "style.size=128" "style.scales=[1,0.5]" "style.weight=10" \\
        --styles candy feathers udnie --photo tubingen --out docs/experiments/fixes.jpg

Each column is a style_survey.py output folder, or a file pattern with ``{style}`` and
``{photo}`` in it (e.g. fastnst-stylize outputs: ``out/{style}_w3/{photo}_{style}.jpg``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import SHARED_DATA as SHARED  # noqa: E402
from PIL import Image, ImageDraw, ImageFont


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "surveys",
        nargs="+",
        help="style_survey.py --out folders, or patterns with {style}, {photo}",
    )
    parser.add_argument("--labels", nargs="*", help="one per survey (default: folder names)")
    parser.add_argument("--styles", nargs="+", required=True)
    parser.add_argument("--photo", required=True, help="the photo's file stem")
    parser.add_argument("--styles-dir", type=Path, default=SHARED / "styles")
    parser.add_argument("--tile", type=int, default=200)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    labels = args.labels or [Path(p).name for p in args.surveys]
    if len(labels) != len(args.surveys):
        parser.error(f"{len(labels)} labels for {len(args.surveys)} surveys")

    font = ImageFont.load_default()
    head, tile, pad = 14, args.tile, 3
    columns = ["painting", *labels]
    canvas = Image.new(
        "RGB",
        (len(columns) * (tile + pad), head + len(args.styles) * (tile + pad)),
        "white",
    )
    draw = ImageDraw.Draw(canvas)
    for c, label in enumerate(columns):
        draw.text((c * (tile + pad) + 2, 1), label, fill="black", font=font)
    for r, style in enumerate(args.styles):
        paths = [next(args.styles_dir.glob(f"{style}.*"))]
        paths += [
            Path(survey.format(style=style, photo=args.photo))
            if "{" in survey
            else Path(survey) / args.photo / f"{style}.png"
            for survey in args.surveys
        ]
        for c, path in enumerate(paths):
            img = Image.open(path).convert("RGB")
            img.thumbnail((tile, tile), Image.LANCZOS)
            x = c * (tile + pad) + (tile - img.width) // 2
            y = head + r * (tile + pad) + (tile - img.height) // 2
            canvas.paste(img, (x, y))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(args.out, quality=82, optimize=True)
    print(f"{args.out}: {args.out.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
