"""Does one style weight mean the same on every loss network? Per-image optimisation says.

    python scripts/loss_balance.py --out outputs/balance

For each loss network and weights file (default: VGG19 with random weights, VGG16 with
../shared/models/vgg16_features.pth, VGG19 with torchvision's ImageNet weights when they are in
torch's hub cache) and each loss formulation (the default, normalised by the targets' energy,
with style weight 3; the origin document's raw mean squared errors with style weight 1e5), this
optimises one photo from itself with L-BFGS and prints: the style term of the untouched photo,
the style and content terms at the end, how far the style term fell, and the share of the style
term in the final total. A balanced setting lowers the style term by a clear factor while the
content term stays of the same order (neither term wins outright). Writes ``balance.csv``,
``summary.md``, the final images (``<network>_<weights>_<formulation>.png``) and ``grid.png``
(the photo, then each run's image in table order) to ``--out``;
``--figure docs/experiments/loss_balance.jpg`` writes the grid there too.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import torch
from common import SHARED  # noqa: E402
from torchvision.utils import make_grid

from fastnst.errors import VGGWeightsError
from fastnst.images import load_image, save_image
from fastnst.losses import PerceptualLoss
from fastnst.optimize import optimize_image

FORMULATIONS = {"normalised": (True, 3.0), "origin": (False, 1e5)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--content", type=Path, default=SHARED / "data/content/tubingen.jpg")
    parser.add_argument("--style", type=Path, default=SHARED / "data/styles/starry_night.jpg")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--style-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=100, help="L-BFGS steps")
    parser.add_argument("--vgg16-weights", type=Path, default=SHARED / "models/vgg16_features.pth")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--figure", type=Path, default=None, help="also write the grid here")
    args = parser.parse_args(argv)

    setups = [
        ("vgg19", "random"),
        ("vgg16", str(args.vgg16_weights)),
        ("vgg19", "imagenet"),
    ]
    content = load_image(args.content, args.size).unsqueeze(0)
    style = load_image(args.style, args.style_size)
    args.out.mkdir(parents=True, exist_ok=True)
    rows, images, missing = [], [content[0]], []
    for network, weights in setups:
        for formulation, (normalize, style_weight) in FORMULATIONS.items():
            try:
                loss = PerceptualLoss(
                    style,
                    style_weight=style_weight,
                    network=network,
                    vgg_weights=weights,
                    normalize=normalize,
                )
            except VGGWeightsError as exc:
                missing.append(f"{network} + {weights}: not available here ({exc})")
                break
            result = optimize_image(loss, content, args.steps, "lbfgs", progress=False)
            first, last = result.history[0].terms, result.history[-1].terms
            label = "shared file" if weights == str(args.vgg16_weights) else weights
            rows.append(
                {
                    "network": network,
                    "weights": label,
                    "formulation": formulation,
                    "style_weight": style_weight,
                    "photo_style": first["style"],
                    "final_style": last["style"],
                    "final_content": last["content"],
                    "style_fell_by": first["style"] / max(last["style"], 1e-30),
                    "style_share": last["style"] / max(last["total"], 1e-30),
                }
            )
            print(_row(rows[-1]), flush=True)
            name = f"{network}_{label.replace(' ', '_')}_{formulation}.png"
            save_image(result.image, args.out / name)
            images.append(result.image[0])

    with open(args.out / "balance.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    grid = make_grid(torch.stack(images), nrow=len(images), padding=4, pad_value=1.0)
    save_image(grid, args.out / "grid.png")
    if args.figure is not None:
        save_image(grid, args.figure, quality=90)
    lines = [
        f"# Loss balance: {args.content.name} + {args.style.name}, {args.size} px, "
        f"{args.steps} L-BFGS steps from the photo",
        "",
        "| network | weights | formulation | style weight | style of the photo | final style | "
        "final content | style fell by | style share of the final total |",
        "|---|---|---|---|---|---|---|---|---|",
        *(_row(r) for r in rows),
        "",
        *missing,
    ]
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _row(r: dict) -> str:
    return (
        f"| {r['network']} | {r['weights']} | {r['formulation']} | {r['style_weight']:g} | "
        f"{r['photo_style']:.4g} | {r['final_style']:.4g} | {r['final_content']:.4g} | "
        f"{r['style_fell_by']:.1f}× | {r['style_share']:.0%} |"
    )


if __name__ == "__main__":
    main()
