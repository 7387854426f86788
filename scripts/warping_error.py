"""Flicker, measured apart from motion: the warping error of style networks on clips whose true
motion is known exactly.

    python scripts/warping_error.py checkpoints/demo/starry_night.ckpt
    python scripts/warping_error.py plain.ckpt stable.ckpt \
        --gif docs/experiments/video_stability.gif

Each clip moves a held-out photo (``../shared/data/content`` and ``coco/val2017``, never
trained on) by the same small motion from frame to frame: a sub-pixel shift, a shift of a few
pixels, a zoom, a rotation; every frame gets fresh mild noise (as a camera sensor would). The
motion between frames t and t+1 is therefore exactly known, and the *warping error* (Ruder et
al. 2016; Lai et al. 2018) is the mean squared difference between stylized frame t+1 and
stylized frame t moved by that motion, over the pixels visible in both (RGB in [0, 1]). A
network that follows the motion and ignores the noise scores near the floor, which is the same
error of the unstylized frames (interpolation and noise); flicker adds to it.

Prints one table (a row per checkpoint and the input frames, a column per motion) and writes
it as JSON with ``--json``; ``--gif`` writes the first clip stylized by each checkpoint, side
by side, as an animated GIF.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from common import COCO_VAL, CONTENT, HELD_OUT

from fastnst.checkpoint import load_any
from fastnst.images import load_image
from fastnst.motion import affine, masked_mse, warp
from fastnst.style_loss import checkpoint_loss, held_out_photos, mean_scores, score_photos

DEFAULT_PHOTOS = [
    CONTENT / "chicago.jpg",
    CONTENT / "tubingen.jpg",
    COCO_VAL / "000000000724.jpg",
    COCO_VAL / "000000087038.jpg",
]


@dataclass(frozen=True)
class Motion:
    name: str
    shift: tuple[float, float] = (0.0, 0.0)  # px per frame
    rotate: float = 0.0  # degrees per frame
    zoom: float = 1.0  # per frame


MOTIONS = (
    Motion("shift 0.3 px", shift=(0.3, 0.2)),
    Motion("shift 2 px", shift=(2.0, 1.0)),
    Motion("zoom 1 %", zoom=1.01),
    Motion("rotate 0.5 deg", rotate=0.5),
)


def make_clip(
    photo: torch.Tensor, motion: Motion, frames: int, noise: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Frames of ``photo`` (1x3xHxW) moving by ``motion`` each frame, noised; the per-frame
    motion (3x3) and the masks of pixels the photo covers in each frame (T x 1 x H x W)."""
    height, width = photo.shape[-2:]
    step = affine(height, width, motion.shift, motion.rotate, motion.zoom)
    generator = torch.Generator().manual_seed(seed)
    clip, masks = [], []
    total = torch.eye(3, dtype=torch.float64)
    for _ in range(frames):
        moved, mask = warp(photo, total)
        noised = moved + noise * torch.randn(moved.shape, generator=generator)
        clip.append(noised.clamp(0, 1))
        masks.append(mask)
        total = step @ total
    return torch.cat(clip), step, torch.cat(masks)


def warping_error(frames: torch.Tensor, step: torch.Tensor, masks: torch.Tensor) -> float:
    """Mean over consecutive pairs of the masked MSE between frame t+1 and frame t moved by
    ``step``; only pixels that show the photo in both frames count."""
    errors = []
    for t in range(len(frames) - 1):
        moved, inside = warp(frames[t : t + 1], step)
        moved_mask, _ = warp(masks[t : t + 1], step)
        visible = inside * (moved_mask > 0.999).to(inside) * masks[t + 1 : t + 2]
        errors.append(masked_mse(frames[t + 1 : t + 2], moved, visible).item())
    return sum(errors) / len(errors)


@torch.inference_mode()
def stylize(net, frames: torch.Tensor) -> torch.Tensor:
    return torch.cat([net(f[None]).float().clamp(0, 1) for f in frames])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", type=Path, nargs="+", help=".ckpt or .onnx files")
    parser.add_argument("--photos", type=Path, nargs="+", default=DEFAULT_PHOTOS)
    parser.add_argument("--size", type=int, default=256, help="long side of the clips (px)")
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--noise", type=float, default=0.01, help="std of each frame's noise")
    parser.add_argument(
        "--losses",
        action="store_true",
        help="also each network's style and content loss (its own training loss) on the "
        "held-out photos of quality.py, at --size",
    )
    parser.add_argument("--json", type=Path, help="write the table here")
    parser.add_argument("--gif", type=Path, help="first clip of the last motion, side by side")
    parser.add_argument("--gif-motion", default="shift 0.3 px", help="which motion for --gif")
    args = parser.parse_args(argv)
    if args.frames < 2:
        parser.error("--frames must be at least 2 (the error compares consecutive frames)")

    torch.manual_seed(0)
    nets = {}
    # Named by file, or by folder and file where files share a name (runs of one style).
    unique = len({p.stem for p in args.checkpoints}) == len(args.checkpoints)
    for path in args.checkpoints:
        net, _, _ = load_any(path, torch.device("cpu"))
        if getattr(net, "num_styles", 1) > 1:
            raise SystemExit(
                f"error: {path} holds several styles; this script measures one-style networks "
                "(scripts/multistyle_report.py compares multi-style ones)"
            )
        nets[path.stem if unique else f"{path.parent.name}/{path.stem}"] = net
    rows: dict[str, dict[str, float]] = {name: {} for name in ["input frames", *nets]}
    gif_frames: list[torch.Tensor] = []
    for motion in MOTIONS:
        sums = {name: 0.0 for name in rows}
        for i, photo_path in enumerate(args.photos):
            photo = load_image(photo_path, args.size).unsqueeze(0)
            clip, step, masks = make_clip(photo, motion, args.frames, args.noise, seed=i)
            sums["input frames"] += warping_error(clip, step, masks)
            outputs = []
            for name, net in nets.items():
                out = stylize(net, clip)
                outputs.append(out)
                sums[name] += warping_error(out, step, masks)
            if i == 0 and motion.name == args.gif_motion:
                gif_frames = [
                    torch.cat([clip[t]] + [o[t] for o in outputs], dim=-1)
                    for t in range(args.frames)
                ]
        for name in rows:
            rows[name][motion.name] = sums[name] / len(args.photos)
    for name in rows:
        rows[name]["mean"] = sum(rows[name][m.name] for m in MOTIONS) / len(MOTIONS)

    if args.losses:
        for path, name in zip(args.checkpoints, nets, strict=True):
            rows[name].update(held_out_losses(path, nets[name], args.size))

    columns = [m.name for m in MOTIONS] + ["mean"]
    print(
        f"Warping error (mean squared, RGB in [0, 1], x 1000) over {len(args.photos)} held-out "
        f"photos, {args.frames} frames of {args.size} px, noise std {args.noise}:"
    )
    print("| | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(f"{1000 * row[c]:.3f}" for c in columns) + " |")
    if args.losses:
        print(f"\nHeld-out loss (its own training loss, mean over photos, {args.size} px):")
        print("| | style | content |\n|---|---|---|")
        for name in nets:
            print(f"| {name} | {rows[name]['style']:.4f} | {rows[name]['content']:.4f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))
    if args.gif and gif_frames:
        write_gif(gif_frames, args.gif)
        print(
            f"{args.gif}: input | " + " | ".join(nets) + f" ({args.gif.stat().st_size // 1024} KB)"
        )
    return rows


def held_out_losses(path: Path, net, size: int) -> dict[str, float]:
    """Mean style and content term of ``net``'s outputs on the held-out photos, under the
    checkpoint's own training loss."""
    loss, _ = checkpoint_loss(path)
    means = mean_scores(score_photos(net, loss, held_out_photos(HELD_OUT), size))
    return {"style": means["style"], "content": means["content"]}


def write_gif(frames: list[torch.Tensor], path: Path, ms: int = 120) -> None:
    from torchvision.transforms.functional import to_pil_image

    images = [to_pil_image(f.clamp(0, 1)) for f in frames]
    # Back and forth, so the loop has no jump.
    images = images + images[-2:0:-1]
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=ms, loop=0)


if __name__ == "__main__":
    main()
