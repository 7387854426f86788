"""Compare training recipes: held-out losses against minutes of training, from the runs'
TensorBoard logs (one folder per recipe, as scripts/demo.py --out writes them).

    python scripts/recipe_report.py fp32=outputs/r/fp32 bf16=outputs/r/bf16 [--plot F.png]

For every run: its wall-clock minutes from the first to the last logged training step, its
steps, and the held-out validation (val/style, val/content, val/total) at each validation,
the last one in the table. Times compare only within one machine and session.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def read_run(text: str) -> dict:
    name, sep, path = text.partition("=")
    folder = Path(path if sep else text)
    name = name if sep else folder.name
    (events_dir,) = [p.parent for p in folder.rglob("events.out.tfevents.*")][:1] or [None]
    if events_dir is None:
        raise SystemExit(f"error: no TensorBoard events under {folder}")
    events = EventAccumulator(str(events_dir), size_guidance={"scalars": 0}).Reload()
    train = events.Scalars("train/total")
    start = train[0].wall_time
    curve = []
    for total, style, content in zip(
        events.Scalars("val/total"),
        events.Scalars("val/style"),
        events.Scalars("val/content"),
        strict=True,
    ):
        curve.append(
            {
                "step": total.step,
                "minutes": (total.wall_time - start) / 60,
                "total": total.value,
                "style": style.value,
                "content": content.value,
            }
        )
    steps = train[-1].step
    minutes = (train[-1].wall_time - start) / 60 * steps / max(1, steps - train[0].step)
    return {"name": name, "steps": steps, "minutes": minutes, "curve": curve}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="FOLDER or NAME=FOLDER")
    parser.add_argument("--plot", type=Path, help="write held-out total against minutes")
    args = parser.parse_args(argv)
    runs = [read_run(folder) for folder in args.runs]
    print("| recipe | steps | training min | s/step | held-out style | content | total |")
    print("|---|---|---|---|---|---|---|")
    for run in runs:
        last = run["curve"][-1]
        print(
            f"| {run['name']} | {run['steps']} | {run['minutes']:.1f} | "
            f"{60 * run['minutes'] / run['steps']:.2f} | {last['style']:.3f} | "
            f"{last['content']:.3f} | {last['total']:.3f} |"
        )
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        for run in runs:
            curve = run["curve"]
            ax.plot([c["minutes"] for c in curve], [c["total"] for c in curve], "o-",
                    label=run["name"])  # fmt: skip
        ax.set_xlabel("minutes of training (this machine)")
        ax.set_ylabel("held-out total loss (val/total)")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
