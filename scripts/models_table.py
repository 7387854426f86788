"""The models table of checkpoints/README.md, from the shipped files and scripts/quality.py runs.

    for m in starry_night wave the_scream composition_vii the_shipwreck_of_the_minotaur mondrian; do
      python scripts/quality.py $m --style ../shared/data/styles/$m.jpg \
        --vgg-weights ../shared/models/vgg16_features.pth --max-photos 3 --adam-steps 1 \
        --lbfgs-steps 60 --bar-steps 50 --init content noise --out outputs/quality/$m
    done
    python scripts/models_table.py --quality outputs/quality

For every shipped model: its painting and licence (from the file's release record), steps,
training minutes and machine, and from ``<quality>/<name>/quality.csv`` the medians over the
held-out photos of its style, content and total loss at 256 px (the photos' own style loss in
brackets), the total of 50 L-BFGS steps of per-image optimisation (the bar: from the photo, and
from noise when the run has it), the L-BFGS steps needed to reach the network's total, and how
much less time per image the network takes than those 50 steps.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

from fastnst.checkpoint import load_with_metadata
from fastnst.shipped import shipped_models


def _median_steps(values: list[str]) -> str:
    numbers = [int(v.lstrip(">")) for v in values]
    capped = sum(v.startswith(">") for v in values)
    median = statistics.median(numbers)
    return f"{median:g}" + (f" ({capped} of {len(values)} beyond the limit)" if capped else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quality", type=Path, required=True, help="folders of quality.py runs")
    args = parser.parse_args(argv)
    print(
        "| model | painting | licence | steps | training | held-out style (photos') | "
        "content | total | total of 50 L-BFGS steps | L-BFGS steps to match | "
        "network vs 50 L-BFGS steps |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, path in shipped_models().items():
        _, meta = load_with_metadata(path)
        release = meta.get("release", {})
        minutes = release.get("minutes")
        trained = f"{minutes:.0f} min" if minutes else "?"
        table = args.quality / name / "quality.csv"
        if not table.is_file():
            print(f"{name}: no {table}", file=sys.stderr)
            continue
        with open(table, newline="") as f:
            rows = list(csv.DictReader(f))

        def med(key: str, rows: list[dict] = rows) -> float:
            return statistics.median(float(r[key]) for r in rows)

        # From the photo, then (when the run has it) from noise: "photo / noise".
        starts = ["lbfgs"] + (["lbfgs_noise"] if "lbfgs_noise_steps" in rows[0] else [])
        if "lbfgs_bar_total" in rows[0]:
            bar = " / ".join(f"{med(f'{k}_bar_total'):.3f}" for k in starts)
            ratio = f"{med('lbfgs_bar_seconds') / med('net_seconds'):.0f}× less time"
        else:  # a run of quality.py from before --bar-steps
            bar, ratio = "?", "?"
        steps = " / ".join(_median_steps([r[f"{k}_steps"] for r in rows]) for k in starts)
        print(
            f"| `{name}` | {release.get('title', '?')}, {release.get('artist', '?')} | "
            f"{release.get('licence', '?')} | {release.get('steps', '?')} | {trained} | "
            f"{med('net_style'):.3f} ({med('photo_style'):.3f}) | {med('net_content'):.3f} | "
            f"{med('net_total'):.3f} | {bar} | {steps} | {ratio} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
