"""fastnst-models: the models that ship with fastnst, by name.

fastnst-models                 # name, painting, licence, training
fastnst-stylize starry_night photo.jpg    # then use one by its name
"""

from __future__ import annotations

import argparse
import sys

from fastnst.checkpoint import load_with_metadata
from fastnst.errors import CheckpointError
from fastnst.shipped import shipped_dir, shipped_models
from fastnst.text import printable


def describe(name: str, meta: dict) -> str:
    release = meta.get("release") or {}
    painting = ", ".join(
        printable(release[k], 60) for k in ("title", "artist") if release.get(k)
    ) or printable(release.get("painting", "?"), 60)
    steps, minutes = release.get("steps"), release.get("minutes")
    trained = f"{steps} steps" if steps else "steps not recorded"
    if minutes:
        trained += f", {minutes:.0f} min on {printable(release.get('machine', '?'), 60)}"
    licence = printable(release.get("licence", "licence not recorded"), 80)
    return f"{printable(name, 40):<32} {painting} ({licence}); {trained}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fastnst-models", description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    models = shipped_models()
    if not models:
        print(f"fastnst-models: no shipped models in {shipped_dir()}", file=sys.stderr)
        return 1
    status = 0
    for name, path in models.items():
        try:
            _, meta = load_with_metadata(path)
        except CheckpointError as exc:
            print(f"fastnst-models: error: {exc}", file=sys.stderr)
            status = 1
            continue
        print(describe(name, meta))
    print(f"Use one by name: fastnst-stylize {next(iter(models))} photo.jpg")
    return status


if __name__ == "__main__":
    sys.exit(main())
