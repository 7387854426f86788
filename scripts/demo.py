"""make demo: train a network that paints, in minutes on a CPU, then stylize the shared photos.

    python scripts/demo.py                      # Starry Night
    python scripts/demo.py --style wave         # any painting in ../shared/data/styles/
    python scripts/demo.py "styles=[...]" trainer.max_steps=1200   # several paintings, one net

Trains a small Johnson network (``model=small``: 16 base channels, 3 residual blocks) against
the real ImageNet VGG16 features of
``../shared/models/vgg16_features.pth`` on the 128 COCO photos of
``../shared/data/coco/train2017`` (``trainer=demo``: 300 steps of batch 4 at 128 px), validating
on the held-out photos of ``../shared/data/content``, then stylizes those photos at 512 px into
``outputs/demo/<style>/``. Equivalent to ``python -m fastnst.train`` with the overrides that
:func:`overrides` returns (printed at the start) and a ``fastnst-stylize`` call.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def overrides(style: str, shared: Path, checkpoint_dir: Path) -> list[str]:
    """The Hydra overrides of the demo's training run."""
    return [
        f"style.name={style}",
        f"style.image={shared / 'data' / 'styles' / (style + '.jpg')}",
        f"data.root={shared / 'data' / 'coco' / 'train2017'}",
        f"data.val_root={shared / 'data' / 'content'}",
        "data.image_size=128",
        "model=small",
        "loss.network=vgg16",
        f"loss.vgg_weights={shared / 'models' / 'vgg16_features.pth'}",
        "trainer=demo",
        f"checkpoint_dir={checkpoint_dir}",
    ]


def train_demo(
    style: str, shared: Path, checkpoint_dir: Path, run_dir: Path, extra: list[str]
) -> Path:
    """Train the demo network in-process; returns the checkpoint's path."""
    from hydra import compose, initialize_config_dir

    from fastnst.cli import CONF_DIR
    from fastnst.train import train

    settings = overrides(style, shared, checkpoint_dir) + extra
    print(shlex.join([sys.executable, "-m", "fastnst.train", *settings]), flush=True)
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=settings)
    return train(cfg, run_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--style", default="starry_night", help="a painting's file stem")
    parser.add_argument("--shared", type=Path, default=SHARED, help="the shared data folder")
    parser.add_argument("--checkpoint-dir", type=Path, default=Path("checkpoints/demo"))
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--size", type=int, default=512, help="stylize at this long side")
    parser.add_argument("overrides", nargs="*", help="more Hydra overrides for training")
    args = parser.parse_args(argv)

    from fastnst import commands
    from fastnst.checkpoint import load_with_metadata, style_names
    from fastnst.errors import FastnstError
    from fastnst.stylize import main as stylize

    painting = args.shared / "data" / "styles" / f"{args.style}.jpg"
    if not painting.is_file():
        found = sorted(p.stem for p in (args.shared / "data" / "styles").glob("*.jpg"))
        print(f"error: no painting {painting}; choose one of {found}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    run_dir = args.out / "runs" / time.strftime("%Y-%m-%d_%H-%M-%S")
    try:
        checkpoint = train_demo(
            args.style, args.shared, args.checkpoint_dir, run_dir, args.overrides
        )
    except FastnstError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    trained = time.perf_counter() - start
    photos = args.shared / "data" / "content"
    out = args.out / args.style
    command = [str(checkpoint), str(photos), "-o", str(out), "--size", str(args.size)]
    if len(style_names(load_with_metadata(checkpoint)[1])) > 1:
        # Several styles (styles=[...] or add_to=...): every one, into a folder of the run.
        out = args.out / checkpoint.stem
        command = [str(checkpoint), str(photos), "-o", str(out), "--size", str(args.size)]
        command += ["--style", "all"]
    print(commands.stylize(*command, "--overwrite"), flush=True)
    status = stylize(command + ["--overwrite"])
    total = time.perf_counter() - start
    print(
        f"Demo done in {total / 60:.1f} min (training {trained / 60:.1f} min). "
        f"Stylized photos: {out}/  Model: {checkpoint}"
    )
    return status


if __name__ == "__main__":
    sys.exit(main())
