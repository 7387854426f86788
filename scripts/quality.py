"""How good is a trained network? Its loss on held-out photos against per-image optimisation.

    python scripts/quality.py checkpoints/demo/starry_night.ckpt --out outputs/quality

The fast network's claim (Johnson et al. 2016) is quality like per-image optimisation at a
fraction of the time. For every held-out photo (default: ../shared/data/content and
../shared/data/coco/val2017, never trained on) this script

1. stylizes it with the network and scores the result with the network's own training loss
   (rebuilt from the checkpoint: same loss network, weights file, layers, painting, weights);
2. runs per-image optimisation (Adam and L-BFGS, same loss, same size) until its total loss is
   at or below the network's, and counts the steps and seconds that took. It starts from the
   photo (``--init content``, the default and the stricter yardstick: the content term starts at
   0) and, with ``--init content noise``, also from uniform noise, the start of Gatys et al.'s
   method and of Johnson et al.'s baseline (their ``neural-style`` starts from noise by default).

Writes ``quality.csv`` (one row per photo) and ``summary.md`` (medians) to ``--out`` and prints
the summary. Times are wall-clock on this machine (network: median of 3 forward passes after a
warm-up; optimisation: the steps it needed).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from common import HELD_OUT

from fastnst.checkpoint import load_network
from fastnst.errors import FastnstError
from fastnst.images import load_image, save_image
from fastnst.optimize import optimize_image
from fastnst.shipped import model_path
from fastnst.style_loss import checkpoint_loss, checkpoint_settings, held_out_photos, score

OPTIMIZERS = ("adam", "lbfgs")
INITS = ("content", "noise")
LABELS = {"adam": "Adam", "lbfgs": "L-BFGS"}
FROM = {"content": "the photo", "noise": "noise"}


def run_key(optimizer: str, init: str) -> str:
    """The CSV column stem of one optimiser and start: ``lbfgs`` from the photo (the columns
    every earlier run has), ``lbfgs_noise`` from noise."""
    return optimizer if init == "content" else f"{optimizer}_{init}"


def time_forward(
    net: torch.nn.Module, x: torch.Tensor, repeats: int = 3
) -> tuple[torch.Tensor, float]:
    with torch.inference_mode():
        out = net(x)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            out = net(x)
            times.append(time.perf_counter() - start)
    return out.clone(), statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a .ckpt or a shipped model's name")
    parser.add_argument("--photos", type=Path, nargs="+", default=HELD_OUT)
    parser.add_argument("--max-photos", type=int, default=None, help="per folder")
    parser.add_argument("--size", type=int, default=256, help="long side of the photos (px)")
    parser.add_argument("--style", type=Path, default=None, help="the painting, if moved")
    parser.add_argument(
        "--vgg-weights", type=Path, default=None, help="the loss network's weights, if moved"
    )
    parser.add_argument("--adam-steps", type=int, default=500, help="give up after this many")
    parser.add_argument("--lbfgs-steps", type=int, default=200, help="give up after this many")
    parser.add_argument(
        "--init",
        nargs="+",
        choices=INITS,
        default=["content"],
        help="where per-image optimisation starts: the photo, uniform noise, or both",
    )
    parser.add_argument(
        "--bar-steps",
        type=int,
        default=50,
        help="L-BFGS also runs this many steps, for its total there (the shipped models' bar)",
    )
    parser.add_argument(
        "--save-images",
        action="store_true",
        help="also write each photo's network output and L-BFGS image after --bar-steps (PNG)",
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    args.init = list(dict.fromkeys(args.init))  # each start once, in the order given
    if args.threads:
        torch.set_num_threads(args.threads)

    args.checkpoint = model_path(args.checkpoint)
    net, style_name = load_network(args.checkpoint)
    if net.num_styles > 1:
        raise SystemExit(
            f"error: {args.checkpoint} holds several styles; this script measures one-style "
            "networks "
            "(scripts/multistyle_report.py compares multi-style ones)"
        )
    try:
        loss, style = checkpoint_loss(
            args.checkpoint, painting=args.style, vgg_weights=args.vgg_weights
        )
    except FastnstError as exc:
        raise SystemExit(f"error: {exc} (a moved painting: --style FILE)") from None
    photos = held_out_photos(args.photos, args.max_photos)

    rows: list[dict[str, Any]] = []
    for photo in photos:
        content = load_image(photo, args.size).unsqueeze(0)
        stylized, net_seconds = time_forward(net, content)
        scores = score(loss, stylized, content)
        row: dict[str, Any] = {
            "photo": photo.name,
            "size": "x".join(str(s) for s in content.shape[-2:]),
            "photo_style": scores["photo_style"],
            "net_style": scores["style"],
            "net_content": scores["content"],
            "net_total": scores["total"],
            "net_seconds": net_seconds,
        }
        if args.save_images:
            args.out.mkdir(parents=True, exist_ok=True)
            save_image(stylized[0].clamp(0, 1), args.out / f"{photo.stem}_network.png")
        runs = [
            optimise(args, loss, content, scores["total"], optimizer, init, row, photo.stem)
            for init in args.init
            for optimizer in OPTIMIZERS
        ]
        rows.append(row)
        print(
            f"{photo.name}: network style {row['net_style']:.3f} content {row['net_content']:.3f} "
            f"total {row['net_total']:.3f} in {net_seconds:.3f} s; " + ", ".join(runs),
            flush=True,
        )

    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "quality.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary = summarise(args, style_name, style, loss_settings(args.checkpoint), rows)
    (args.out / "summary.md").write_text(summary)
    print(summary)


def optimise(
    args: argparse.Namespace,
    loss,
    content: torch.Tensor,
    target: float,
    optimizer: str,
    init: str,
    row: dict[str, Any],
    stem: str,
) -> str:
    """One per-image optimisation of ``content`` from ``init`` until it reaches ``target``
    (L-BFGS: and at least ``--bar-steps``); its figures go into ``row``, a line of text back."""
    key = run_key(optimizer, init)
    limit = args.adam_steps if optimizer == "adam" else args.lbfgs_steps
    bar = args.bar_steps if optimizer == "lbfgs" else 0
    at_bar: list[torch.Tensor] = []  # the image after `bar` updates, for --save-images

    def keep(step: int, terms: dict, image: torch.Tensor) -> None:
        if step == bar:
            at_bar.append(image.clone())

    result = optimize_image(
        loss,
        content,
        max(limit, bar),
        optimizer,
        init=init,
        progress=False,
        stop_below=target,
        min_steps=bar,
        on_log=keep if args.save_images and bar else None,
    )
    steps, seconds = first_reaching(result.history, target)
    row[f"{key}_steps"] = steps if steps is not None else f">{result.history[-1].step}"
    row[f"{key}_seconds"] = seconds
    text = f"{LABELS[optimizer]} from {FROM[init]} {row[f'{key}_steps']} steps"
    if bar:
        row[f"{key}_bar_total"] = result.history[bar].terms["total"]
        row[f"{key}_bar_seconds"] = result.history[bar - 1].seconds
        text += f" (total after {bar}: {row[f'{key}_bar_total']:.3f})"
        if args.save_images:
            save_image(at_bar[0][0], args.out / f"{stem}_{key}{bar}.png")
    return text


def first_reaching(history: list, total: float) -> tuple[int | None, float]:
    """The first step whose image is at or below ``total`` and the seconds of the updates that
    made it (a record's own seconds include the update after it); ``None`` and the seconds of
    the whole run when none is."""
    for record in history:
        if record.terms["total"] <= total:
            return record.step, history[record.step - 1].seconds if record.step > 0 else 0.0
    return None, history[-1].seconds


def _steps_median(values: list[Any]) -> str:
    # Photos that never reached the network's loss count as the limit, marked with ">".
    numbers = [int(str(v).lstrip(">")) for v in values]
    median = statistics.median(numbers)
    capped = sum(str(v).startswith(">") for v in values)
    return f"{median:g}" + (f" ({capped} of {len(values)} did not reach it)" if capped else "")


def loss_settings(path: Path) -> dict:
    return checkpoint_settings(path)[1]


def summarise(args, style_name: str, style: dict, loss: dict, rows: list[dict]) -> str:
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0] if k.endswith(
        ("_style", "_content", "_total", "_seconds"))}  # fmt: skip
    net_s = med["net_seconds"]
    lines = [
        f"# {style_name}: fast network vs per-image optimisation",
        "",
        f"{len(rows)} held-out photos at {args.size} px (long side); loss: "
        f"{loss.get('network', 'vgg19')} ({loss.get('vgg_weights')}), style weight "
        f"{style['weight']:g}, normalised {loss.get('normalize', False)}. "
        f"Medians over photos; {torch.get_num_threads()} CPU threads.",
        "",
        "| | style | content | total | steps to reach the network's total | s / image |",
        "|---|---|---|---|---|---|",
        f"| photo, untouched | {med['photo_style']:.3f} | 0 | {med['photo_style']:.3f} | | |",
        f"| fast network | {med['net_style']:.3f} | {med['net_content']:.3f} | "
        f"{med['net_total']:.3f} | 1 forward pass | {net_s:.3f} |",
    ]
    for init in args.init:
        for optimizer in OPTIMIZERS:
            key = run_key(optimizer, init)
            seconds = med[f"{key}_seconds"]
            label = LABELS[optimizer] + (" (lr 0.02)" if optimizer == "adam" else "")
            lines.append(
                f"| {label} from {FROM[init]} | | | ≤ network's | "
                f"{_steps_median([r[f'{key}_steps'] for r in rows])} | "
                f"{seconds:.1f} ({seconds / net_s:.0f}× the network) |"
            )
    bars = []
    for init in args.init:
        key = run_key("lbfgs", init)
        if f"{key}_bar_total" not in rows[0]:
            continue
        seconds = med[f"{key}_bar_seconds"]
        lines.append(
            f"| L-BFGS from {FROM[init]}, after {args.bar_steps} steps | | | "
            f"{med[f'{key}_bar_total']:.3f} | {args.bar_steps} | "
            f"{seconds:.1f} ({seconds / net_s:.0f}× the network) |"
        )
        met = sum(r["net_total"] <= r[f"{key}_bar_total"] for r in rows)
        bars.append(
            f"The network's total is at or below that of {args.bar_steps} L-BFGS steps from "
            f"{FROM[init]} on {met} of {len(rows)} photos."
        )
    return "\n".join(lines + [""] + bars) + "\n"


if __name__ == "__main__":
    main()
