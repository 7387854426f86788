"""The models table of checkpoints/README.md, from the shipped files and scripts/quality.py runs.

    for m in starry_night wave the_scream composition_vii the_shipwreck_of_the_minotaur mondrian; do
      python scripts/quality.py $m --style ../shared/data/styles/$m.jpg \
        --vgg-weights ../shared/models/vgg16_features.pth --max-photos 3 --adam-steps 1 \
        --lbfgs-steps 100 --out outputs/quality/$m
    done
    python scripts/models_table.py --quality outputs/quality

For every shipped model: its painting and licence (from the file's release record), steps,
training minutes and machine, and from ``<quality>/<name>/quality.csv`` the medians over the
held-out photos of its style, content and total loss at 256 px (the photos' own style loss in
brackets), the L-BFGS steps that per-image optimisation needs to reach its total, and how much
less time per image the network takes than those steps.
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
        "content | total | L-BFGS steps to match | network vs those steps |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
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

        ratio = med("lbfgs_seconds") / med("net_seconds")
        print(
            f"| `{name}` | {release.get('title', '?')}, {release.get('artist', '?')} | "
            f"{release.get('licence', '?')} | {release.get('steps', '?')} | {trained} | "
            f"{med('net_style'):.3f} ({med('photo_style'):.3f}) | {med('net_content'):.3f} | "
            f"{med('net_total'):.3f} | {_median_steps([r['lbfgs_steps'] for r in rows])} | "
            f"{ratio:.0f}× less time |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
