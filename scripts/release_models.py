"""Write the models fastnst ships (checkpoints/<name>.pt) from finished training runs.

    python scripts/release_models.py --runs /path/to/checkpoint_dir [--names starry_night ...]

For each painting of PAINTINGS it reads ``<runs>/<name>.ckpt`` (the finished model of
``python -m fastnst.train ... checkpoint_dir=<runs> name=<name>``; a run started with init= from
an earlier release counts that release's steps, minutes and command first), writes the release file
(:func:`fastnst.checkpoint.write_release`: float16 weights, metadata, no optimiser state) to
``checkpoints/<name>.pt``, and prints its size and what float16 storage changes: the largest
difference, in 8-bit levels, between the network's output with its float32 and its float16
weights on the held-out photos of ``--photos`` at 256 px.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from fastnst.checkpoint import load_network, write_release
from fastnst.images import find_images, load_image

REPO = Path(__file__).resolve().parents[1]
from common import SHARED  # noqa: E402

# The public-domain paintings of ../shared/data/styles that ship, with what SOURCES.md says.
PAINTINGS = {
    "starry_night": ("The Starry Night (1889)", "Vincent van Gogh", "PD worldwide (d. 1890)"),
    "wave": ("The Great Wave off Kanagawa (c. 1831)", "Katsushika Hokusai", "PD worldwide"),
    "the_scream": ("The Scream (1893)", "Edvard Munch", "PD (d. 1944; US PD)"),
    "composition_vii": ("Composition VII (1913)", "Wassily Kandinsky", "PD (d. 1944; US PD)"),
    "the_shipwreck_of_the_minotaur": (
        "The Shipwreck of the Minotaur (c. 1810)",
        "J. M. W. Turner",
        "PD worldwide",
    ),
    "mondrian": ("abstract composition (c. 1913-14)", "Piet Mondrian", "PD (d. 1944; US PD)"),
}

# How the shipped networks were trained (scripts/train_shipped.sh runs exactly this): phase 1
# at 128 px, then the same run continued at 256 px.
PHASES = (
    "data.image_size=128 trainer.max_steps={p1}",
    "data.image_size=256 trainer.max_steps={p2} resume=last resume_changes=accept",
)


def _command(name: str) -> str:
    return (
        f"python -m fastnst.train style.name={name} style.image=<shared>/data/styles/{name}.jpg "
        "style.weight=3.0 data.root=<shared>/data/coco/train2017 "
        "data.val_root=<shared>/data/content loss.network=vgg16 "
        "loss.vgg_weights=<shared>/models/vgg16_features.pth trainer.precision=bf16-mixed "
        f"lr=1e-3 checkpoint_dir=<runs> name={name}"
    )


def training_command(name: str, p1: int, p2: int) -> str:
    common = _command(name)
    return " && ".join(f"{common} {phase.format(p1=p1, p2=p2)}" for phase in PHASES)


# A third phase (P3 of scripts/train_shipped.sh): more steps at 256 px with a new optimiser and
# a cosine-annealed learning rate, starting from phase 2's model.
CONTINUED = (
    "checkpoint_dir=<runs>/p3 init=<runs>/{name}.ckpt data.image_size=256 "
    "trainer.max_steps={p3} lr_schedule=cosine lr_warmup=10"
)


def continued(name: str, init: str | None, recipe: dict, phase1_steps: int) -> dict:
    """The recipe of a run started (init=) from an earlier model: that model's steps,
    minutes and command (from its release record, or for phase 2's training checkpoint, the
    two phases' command) followed by this run's."""
    if not init:
        return recipe
    start = torch.load(init, map_location="cpu", weights_only=True)
    before = start["fastnst"].get("release")
    if not before:
        steps = int(start["global_step"])
        before = {
            "command": training_command(name, min(phase1_steps, steps), steps),
            "steps": steps,
        }
    phase3 = CONTINUED.format(name=name, p3=recipe["steps"])
    recipe = {
        **recipe,
        "command": f"{before['command']} && {_command(name)} {phase3}",
        "steps": before["steps"] + recipe["steps"],
    }
    if "minutes" in recipe and "minutes" in before:
        recipe["minutes"] = round(before["minutes"] + recipe["minutes"], 1)
    return recipe


def float16_levels(source: Path, photos: list[Path]) -> int:
    """Largest output difference in 8-bit levels between float32 and float16 weights."""
    net, _ = load_network(source)
    half = type(net)(**net.settings())
    half.load_state_dict({k: v.half().float() for k, v in net.state_dict().items()})
    half.eval()
    worst = 0
    with torch.inference_mode():
        for photo in photos:
            x = load_image(photo, 256).unsqueeze(0)
            a = net(x).clamp(0, 1).mul(255).round()
            b = half(x).clamp(0, 1).mul(255).round()
            worst = max(worst, int((a - b).abs().max()))
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, required=True, help="the runs' checkpoint_dir")
    parser.add_argument("--names", nargs="+", default=list(PAINTINGS), choices=list(PAINTINGS))
    parser.add_argument("--out", type=Path, default=REPO / "checkpoints")
    parser.add_argument("--photos", type=Path, default=SHARED / "data" / "content")
    parser.add_argument("--phase1-steps", type=int, default=500)
    parser.add_argument("--minutes", action="append", default=[], metavar="NAME=MIN")
    parser.add_argument("--machine", default="2 cores of an AMD EPYC (AVX512-BF16), no GPU")
    args = parser.parse_args(argv)
    minutes = {k: float(v) for k, _, v in (m.partition("=") for m in args.minutes)}
    photos = find_images(args.photos)
    for name in args.names:
        source = args.runs / f"{name}.ckpt"
        if not source.is_file():
            print(f"{name}: no {source}; skipped", file=sys.stderr)
            continue
        trained = torch.load(source, map_location="cpu", weights_only=True)
        steps = int(trained["global_step"])
        title, artist, licence = PAINTINGS[name]
        recipe = {
            "painting": f"{name}.jpg",
            "title": title,
            "artist": artist,
            "licence": licence,
            "command": training_command(name, min(args.phase1_steps, steps), steps),
            "steps": steps,
            "machine": args.machine,
        }
        if name in minutes:
            recipe["minutes"] = minutes[name]
        init = trained["hyper_parameters"].get("init")
        recipe = continued(name, init, recipe, args.phase1_steps)
        dest = write_release(source, args.out / f"{name}.pt", recipe)
        levels = float16_levels(source, photos)
        print(
            f"{dest}: {dest.stat().st_size / 1e6:.2f} MB, {steps} steps; float16 weights change "
            f"the output by at most {levels} level(s) of 255 on {len(photos)} photos at 256 px"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
