"""How good is a trained network? Its loss on held-out photos against per-image optimisation.

    python scripts/quality.py checkpoints/demo/starry_night.ckpt --out outputs/quality

The fast network's claim (Johnson et al. 2016) is quality like per-image optimisation at a
fraction of the time. For every held-out photo (default: ../shared/data/content and
../shared/data/coco/val2017, never trained on) this script

1. stylizes it with the network and scores the result with the network's own training loss
   (rebuilt from the checkpoint: same loss network, weights file, layers, painting, weights);
2. runs per-image optimisation (Adam and L-BFGS, from the photo, same loss, same size) until its
   total loss is at or below the network's, and counts the steps and seconds that took.

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
from fastnst.images import load_image
from fastnst.optimize import optimize_image
from fastnst.shipped import model_path
from fastnst.style_loss import checkpoint_loss, checkpoint_settings, held_out_photos, score

OPTIMIZERS = ("adam", "lbfgs")


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
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
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
    limits = {"adam": args.adam_steps, "lbfgs": args.lbfgs_steps}

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
        net_terms = {"total": scores["total"]}
        for optimizer in OPTIMIZERS:
            result = optimize_image(
                loss,
                content,
                limits[optimizer],
                optimizer,
                progress=False,
                stop_below=net_terms["total"],
            )
            last = result.history[-1]
            reached = last.terms["total"] <= net_terms["total"]
            row[f"{optimizer}_steps"] = last.step if reached else f">{limits[optimizer]}"
            row[f"{optimizer}_seconds"] = last.seconds
        rows.append(row)
        print(
            f"{photo.name}: network style {row['net_style']:.3f} content {row['net_content']:.3f} "
            f"total {row['net_total']:.3f} in {net_seconds:.3f} s; Adam {row['adam_steps']} steps "
            f"({row['adam_seconds']:.1f} s), L-BFGS {row['lbfgs_steps']} steps "
            f"({row['lbfgs_seconds']:.1f} s)",
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
    for optimizer, label in (("adam", "Adam (lr 0.02)"), ("lbfgs", "L-BFGS")):
        seconds = med[f"{optimizer}_seconds"]
        lines.append(
            f"| {label} from the photo | | | ≤ network's | "
            f"{_steps_median([r[f'{optimizer}_steps'] for r in rows])} | "
            f"{seconds:.1f} ({seconds / net_s:.0f}× the network) |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
