"""One network of several styles against one network per style: held-out losses and pictures.

    python scripts/multistyle_report.py MULTI.ckpt --single DIR [--added ADDED.ckpt]
        [--added-run RUN --single-run RUN] [--figures docs/experiments/multistyle]

For every style of ``MULTI.ckpt`` that has a single-style network ``DIR/<style>.ckpt``, both
networks stylize the held-out photos (../shared/data/content and coco/val2017, never trained
on) and are scored with the training loss of that style (rebuilt from the checkpoints: loss
network, weights file, layers, painting, weights; the style term is weighted, as logged while
training). ``--added``: a checkpoint made by adding styles to MULTI.ckpt (``add_to``); its new
styles are compared the same way. ``--added-run`` / ``--single-run``: the TensorBoard folders
of that adding run and of the new style's single-style run: the held-out validation curve of
the added style against the single network's last value, i.e. how many steps adding a style
takes to reach full training's quality.

``--figures``: ``grid.jpg`` (rows: photos; columns: for each style, single-style then
multi-style network) and ``blend.jpg`` (the first two styles blended in five steps).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from common import CONTENT, HELD_OUT

from fastnst.checkpoint import load_with_metadata, style_names
from fastnst.download import style_image_path
from fastnst.images import load_image
from fastnst.style_loss import (
    checkpoint_loss,
    checkpoint_settings,
    held_out_photos,
    mean_scores,
    score_photos,
)

GRID_PHOTOS = ["chicago.jpg", "tubingen.jpg", "000000000139.jpg"]


def mix(names: list[str], weights: dict[str, float]) -> torch.Tensor | None:
    if len(names) == 1:
        return None
    return torch.tensor([weights.get(n, 0.0) for n in names])


def held_out(net, style_mix: torch.Tensor | None, loss, size: int) -> dict:
    """Mean (weighted) style and content terms of the network's outputs on HELD_OUT."""
    rows = score_photos(lambda x: net(x, style_mix), loss, held_out_photos(HELD_OUT), size)
    means = mean_scores(rows)
    return {"style": means["style"], "content": means["content"]}


def compare(multi: Path, single_dir: Path, size: int, only: list[str] | None = None) -> list[dict]:
    net, meta = load_with_metadata(multi)
    names = style_names(meta)
    trained = {s["name"] for s in checkpoint_settings(multi)[0]}
    rows = []
    for name in only or names:
        single_path = single_dir / f"{name}.ckpt"
        if name not in trained or not single_path.is_file():
            print(f"{name}: no {single_path}, or not trained by {multi.name}; left out")
            continue
        loss, _ = checkpoint_loss(multi, style=name)
        single, _ = load_with_metadata(single_path)
        s = held_out(single, None, loss, size)
        m = held_out(net, mix(names, {name: 1.0}), loss, size)
        rows.append({"style": name, "single": s, "multi": m})
        print(
            f"{name}: style {s['style']:.3f} single, {m['style']:.3f} multi; "
            f"content {s['content']:.3f} single, {m['content']:.3f} multi",
            flush=True,
        )
    return rows


def table(rows: list[dict], title: str) -> str:
    lines = [
        f"{title}",
        "",
        "| style | style loss: single | multi | change | content loss: single | multi | change "
        "| total: single | multi | change |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        s, m = row["single"], row["multi"]
        cells = [row["style"]]
        for key in ("style", "content", "total"):
            one = s[key] if key != "total" else s["style"] + s["content"]
            many = m[key] if key != "total" else m["style"] + m["content"]
            cells += [f"{one:.3f}", f"{many:.3f}", f"{100 * (many / one - 1):+.1f} %"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def curve(added_run: Path, single_run: Path, name: str) -> str:
    """The added style's held-out validation by step against the single network's last."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    added = EventAccumulator(str(added_run)).Reload()
    single = EventAccumulator(str(single_run)).Reload()
    goal = {k: single.Scalars(f"val/{k}")[-1].value for k in ("style", "content", "total")}
    lines = [
        f"Adding {name}: held-out validation (../shared/data/content) by step, against its "
        f"single-style network after full training (total {goal['total']:.3f}: style "
        f"{goal['style']:.3f}, content {goal['content']:.3f})",
        "",
        "| step | style | content | total | vs single total |",
        "|---|---|---|---|---|",
    ]
    reached = None
    for s, c, t in zip(
        *(added.Scalars(f"val/{name}/{k}") for k in ("style", "content", "total")), strict=True
    ):
        lines.append(
            f"| {t.step + 1} | {s.value:.3f} | {c.value:.3f} | {t.value:.3f} | "
            f"{100 * (t.value / goal['total'] - 1):+.1f} % |"
        )
        if reached is None and t.value <= goal["total"]:
            reached = t.step + 1
    lines.append("")
    lines.append(
        f"First validation at or below the single network's total: step {reached}"
        if reached
        else "Not reached the single network's total within the run"
    )
    return "\n".join(lines)


# --- pictures -------------------------------------------------------------------------------


def _cell(image: torch.Tensor, size: int) -> torch.Tensor:
    """An image centre-cropped to a square and resized to size x size."""
    import torch.nn.functional as F

    h, w = image.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = image[..., top : top + side, left : left + side]
    return F.interpolate(square[None], size=(size, size), mode="area")[0]


@torch.inference_mode()
def grid_figure(multi: Path, single_dir: Path, out: Path, cell: int = 160) -> None:
    from torchvision.utils import make_grid, save_image

    net, meta = load_with_metadata(multi)
    names = [n for n in style_names(meta) if (single_dir / f"{n}.ckpt").is_file()]
    trained = {s["name"]: s for s in checkpoint_settings(multi)[0]}
    photos = [next(p for p in held_out_photos(HELD_OUT) if p.name == name) for name in GRID_PHOTOS]
    singles = {name: load_with_metadata(single_dir / f"{name}.ckpt")[0] for name in names}
    white = torch.ones(3, cell, cell)
    cells = [white]  # header: the paintings, each over its two columns
    for name in names:
        painting = _cell(load_image(style_image_path(trained[name]), 256), cell)
        cells += [painting, white]
    for photo in photos:
        image = load_image(photo, 384)[None]
        cells.append(_cell(image[0], cell))
        for name in names:
            cells.append(_cell(singles[name](image)[0], cell))
            cells.append(_cell(net(image, mix(style_names(meta), {name: 1.0}))[0], cell))
    grid = make_grid(torch.stack(cells), nrow=1 + 2 * len(names), padding=4, pad_value=1.0)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, out.with_suffix(".png"))
    _to_jpeg(out.with_suffix(".png"), out)


@torch.inference_mode()
def blend_figure(multi: Path, out: Path, photo: str = "chicago.jpg", size: int = 256) -> None:
    from torchvision.utils import make_grid, save_image

    net, meta = load_with_metadata(multi)
    names = style_names(meta)
    first, second = names[0], names[1]
    image = load_image(CONTENT / photo, size)[None]
    cells = []
    for w in (0.0, 0.25, 0.5, 0.75, 1.0):
        cells.append(net(image, mix(names, {first: 1 - w, second: w}))[0])
    grid = make_grid(torch.stack(cells), nrow=5, padding=4, pad_value=1.0)
    save_image(grid, out.with_suffix(".png"))
    _to_jpeg(out.with_suffix(".png"), out)


def _to_jpeg(png: Path, jpeg: Path) -> None:
    from PIL import Image

    Image.open(png).convert("RGB").save(jpeg, quality=82, optimize=True)
    png.unlink()
    print(f"wrote {jpeg} ({jpeg.stat().st_size / 1e3:.0f} KB)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("multi", type=Path, help="a checkpoint holding several styles")
    parser.add_argument("--single", type=Path, required=True, help="folder of <style>.ckpt")
    parser.add_argument("--added", type=Path, default=None, help="MULTI with a style added")
    parser.add_argument("--added-run", type=Path, default=None, help="its TensorBoard folder")
    parser.add_argument("--single-run", type=Path, default=None, help="TensorBoard folder")
    parser.add_argument("--size", type=int, default=256, help="held-out photos' long side")
    parser.add_argument("--figures", type=Path, default=None, help="write grid.jpg, blend.jpg")
    args = parser.parse_args(argv)
    torch.set_grad_enabled(False)
    report = [table(compare(args.multi, args.single, args.size), f"Held-out, {args.size} px:")]
    if args.added is not None:
        _, meta = load_with_metadata(args.added)
        new = style_names(meta)[len(style_names(load_with_metadata(args.multi)[1])) :]
        rows = compare(args.added, args.single, args.size, new)
        report.append(table(rows, f"Added to {args.multi.name} (norms only), {args.size} px:"))
        if args.added_run is not None and args.single_run is not None:
            for name in new:
                report.append(curve(args.added_run, args.single_run, name))
    if args.figures is not None:
        grid_figure(args.multi, args.single, args.figures / "grid.jpg")
        blend_figure(args.multi, args.figures / "blend.jpg")
    print("\n\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
