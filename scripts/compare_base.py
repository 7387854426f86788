"""A network of several styles against the shipped one-style networks, painting by painting.

    python scripts/compare_base.py MULTI.ckpt [--size 256] [--per-folder 3]

For every style of ``MULTI.ckpt`` that ships as a one-style model (``checkpoints/<style>.pt``),
both networks paint the held-out photos (the first ``--per-folder`` of ../shared/data/content
and of coco/val2017, never trained on) at ``--size`` px, and both are scored with the shipped
model's own training loss (its painting and VGG weights from ../shared): the protocol of the
models table (checkpoints/README.md), medians over the photos. A style passes when the
multi-style network's total is at most ``--tolerance`` (1 %) above the shipped network's.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
from common import HELD_OUT, STYLES, VGG16_WEIGHTS

from fastnst.checkpoint import load_with_metadata, style_names
from fastnst.shipped import shipped_models
from fastnst.style_loss import checkpoint_loss, held_out_photos, score_photos


def median_total(forward, loss, photos: list[Path], size: int) -> float:
    return statistics.median(r["total"] for r in score_photos(forward, loss, photos, size))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("multi", type=Path, help="a checkpoint holding several styles")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--per-folder", type=int, default=3)
    parser.add_argument("--tolerance", type=float, default=0.01)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    net, meta = load_with_metadata(args.multi)
    names = style_names(meta)
    photos = held_out_photos(HELD_OUT, args.per_folder)
    shipped = shipped_models()
    print(
        f"{args.multi.name}: {len(names)} styles; {len(photos)} held-out photos at {args.size} px"
    )
    print("| painting | shipped network | multi-style | change | within tolerance |")
    print("|---|---|---|---|---|")
    passed = 0
    for i, name in enumerate(names):
        if name not in shipped:
            print(f"| {name} | (not shipped) | | | |")
            continue
        loss, _ = checkpoint_loss(
            shipped[name], painting=STYLES / f"{name}.jpg", vgg_weights=VGG16_WEIGHTS
        )
        single, _ = load_with_metadata(shipped[name])
        mix = torch.zeros(1, len(names))
        mix[0, i] = 1.0
        old = median_total(single, loss, photos, args.size)
        new = median_total(lambda x, m=mix: net(x, m), loss, photos, args.size)
        change = new / old - 1
        ok = change <= args.tolerance
        passed += ok
        print(
            f"| {name} | {old:.3f} | {new:.3f} | {change:+.1%} | {'yes' if ok else 'no'} |",
            flush=True,
        )
    print(f"{passed} of {len(names)} paintings within {args.tolerance:.0%} of the shipped network")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
