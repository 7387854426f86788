"""make demo: train a network that paints, in minutes on a CPU, then stylize held-out photos.

    python scripts/demo.py                      # Starry Night
    python scripts/demo.py --style wave         # any painting in ../shared/data/styles/
    python scripts/demo.py "styles=[...]" trainer.max_steps=1200   # several paintings, one net

Trains a small Johnson network (``model=small``: 16 base channels, 3 residual blocks) with the
VGG16 perceptual loss for 300 steps of batch 4 at 128 px (``trainer=demo``), validating on
held-out photos, then stylizes those photos at 512 px into ``outputs/demo/<style>/``.
Equivalent to ``python -m fastnst.train`` with the overrides it prints at the start and a
``fastnst-stylize`` call. What it trains on:

- with the project's shared folder (``--shared``, default ``../shared``): the 128 COCO photos
  of ``data/coco/train2017``, the painting of ``data/styles/<style>.jpg``, the ImageNet VGG16
  weights of ``models/vgg16_features.pth``, and ``data/content`` as the held-out photos;
- without it, the same things through their public sources, each fetched once with a
  progress bar, resumably and checked where a checksum is published: the painting from its
  preset's URL (``conf/style/<style>.yaml``), torchvision's ImageNet VGG16 weights (528 MB,
  into torch's hub cache), the same 128 COCO photos and 5 COCO val2017 photos from COCO's image
  server (into the fastnst cache). ``--photos DIR`` and ``--view DIR`` take your own photos
  instead. torchvision's VGG16 activations are on another scale than the shared file's; the
  normalised loss (``loss.normalize``) makes the style weight mean the same on both.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
from common import SHARED  # noqa: E402

# The downloads without the shared folder: this many COCO photos to train on, to look at.
TRAIN_PHOTOS, VIEW_PHOTOS = 128, 5


def _has_shared(shared: Path, style: str) -> bool:
    return (shared / "data" / "styles" / f"{style}.jpg").is_file() and (
        shared / "models" / "vgg16_features.pth"
    ).is_file()


def overrides(style: str, shared: Path, checkpoint_dir: Path) -> list[str]:
    """The Hydra overrides of the demo's training run on the shared folder."""
    return [
        f"style.name={style}",
        f"style.image={shared / 'data' / 'styles' / (style + '.jpg')}",
        f"data.root={shared / 'data' / 'coco' / 'train2017'}",
        f"data.val_root={shared / 'data' / 'content'}",
        *_common(checkpoint_dir),
        f"loss.vgg_weights={shared / 'models' / 'vgg16_features.pth'}",
    ]


def _common(checkpoint_dir: Path) -> list[str]:
    return [
        "data.image_size=128",
        "model=small",
        "loss.network=vgg16",
        "trainer=demo",
        f"checkpoint_dir={checkpoint_dir}",
    ]


def public_overrides(
    style: str, checkpoint_dir: Path, photos: Path | None, view: Path | None
) -> tuple[list[str], Path]:
    """The demo's overrides without the shared folder, and the photos to view: fetches what
    it needs first (painting, photos, VGG16 weights), so that an offline machine fails in one
    line before any work."""
    from fastnst.coco import download_sample
    from fastnst.download import cache_dir, style_image_path
    from fastnst.errors import ConfigError
    from fastnst.jobs import CONF_DIR
    from fastnst.vgg import imagenet_weights_file

    preset = CONF_DIR / "style" / f"{style}.yaml"
    if not preset.is_file():
        presets = sorted(p.stem for p in (CONF_DIR / "style").glob("*.yaml"))
        raise ConfigError(
            "--style",
            f"{style!r} has no preset with a URL to fetch it from ({', '.join(presets)}); "
            "give the shared folder with --shared, or a painting with style.image=FILE",
        )
    from omegaconf import OmegaConf

    style_image_path(OmegaConf.to_container(OmegaConf.load(preset), resolve=True))
    coco = cache_dir() / "coco"
    photos = photos or download_sample(coco, "train2017", TRAIN_PHOTOS)
    view = view or download_sample(coco, "val2017", VIEW_PHOTOS)
    imagenet_weights_file("vgg16")
    settings = [
        f"style={style}",
        f"data.root={photos}",
        f"data.val_root={view}",
        *_common(checkpoint_dir),
        "loss.vgg_weights=imagenet",
    ]
    return settings, view


def train_demo(settings: list[str], run_dir: Path) -> Path:
    """Train the demo network in-process with these overrides; returns the checkpoint."""
    from hydra import compose, initialize_config_dir

    from fastnst.jobs import CONF_DIR
    from fastnst.train import train

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
    parser.add_argument("--photos", type=Path, help="train on these photos (a folder)")
    parser.add_argument("--view", type=Path, help="validate on and stylize these photos")
    parser.add_argument("overrides", nargs="*", help="more Hydra overrides for training")
    args = parser.parse_args(argv)

    from fastnst import commands
    from fastnst.checkpoint import load_with_metadata, style_names
    from fastnst.errors import FastnstError
    from fastnst.stylize import main as stylize

    shared, out = args.shared.expanduser(), args.out.expanduser()
    checkpoint_dir = args.checkpoint_dir.expanduser()
    photos = args.photos.expanduser() if args.photos else None
    view = args.view.expanduser() if args.view else None
    start = time.perf_counter()
    run_dir = out / "runs" / time.strftime("%Y-%m-%d_%H-%M-%S")
    try:
        if _has_shared(shared, args.style):
            settings = overrides(args.style, shared, checkpoint_dir)
            settings += [f"data.root={photos}"] if photos else []
            settings += [f"data.val_root={view}"] if view else []
            view = view or shared / "data" / "content"
        else:
            where = shared / "data" / "styles" / f"{args.style}.jpg"
            print(f"No {where}: fetching the demo's painting, photos and VGG16 weights instead")
            settings, view = public_overrides(args.style, checkpoint_dir, photos, view)
        checkpoint = train_demo(settings + args.overrides, run_dir)
    except FastnstError as exc:
        hint = (
            ""
            if _has_shared(shared, args.style)
            else f" (without the shared folder {shared} the demo needs the internet, or "
            "--photos and --view folders, style.image=PAINTING and loss.vgg_weights=FILE)"
        )
        print(f"error: {exc}{hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo: interrupted", file=sys.stderr)
        return 130
    trained = time.perf_counter() - start
    target = out / args.style
    command = [str(checkpoint), str(view), "-o", str(target), "--size", str(args.size)]
    if len(style_names(load_with_metadata(checkpoint)[1])) > 1:
        # Several styles (styles=[...] or add_to=...): every one, into a folder of the run.
        target = out / checkpoint.stem
        command = [str(checkpoint), str(view), "-o", str(target), "--size", str(args.size)]
        command += ["--style", "all"]
    print(commands.stylize(*command, "--overwrite"), flush=True)
    status = stylize(command + ["--overwrite"])
    total = time.perf_counter() - start
    print(
        f"Demo done in {total / 60:.1f} min (training {trained / 60:.1f} min). "
        f"Stylized photos: {target}/  Model: {checkpoint}"
    )
    return status


if __name__ == "__main__":
    sys.exit(main())
