"""``fastnst-stylize CKPT IMG [IMG ...] [-o OUT]``: apply a trained style network.

Imports neither Lightning nor Hydra: the checkpoint alone rebuilds the network.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from fastnst.images import ImageReadError, load_image, save_image
from fastnst.transformer import TransformerNet

# Kept equal to fastnst.module.CHECKPOINT_KIND (a test checks), without importing Lightning.
CHECKPOINT_KIND = "fastnst.TransformerNet"


class CheckpointError(Exception):
    """The file is not a fastnst checkpoint."""


def load_network(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[TransformerNet, str]:
    """Rebuild the trained network from a checkpoint file; returns (network, style name).

    The file is read with ``weights_only=True``: a checkpoint cannot run code on load.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        ckpt: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a file it cannot read
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: not a fastnst checkpoint ({reason})") from None
    meta = ckpt.get("fastnst") if isinstance(ckpt, dict) else None
    if not isinstance(meta, dict) or meta.get("kind") != CHECKPOINT_KIND:
        raise CheckpointError(f"{path}: not a fastnst checkpoint (no fastnst model in it)")
    hparams = ckpt.get("hyper_parameters", {})
    net = TransformerNet(**(hparams.get("model") or {}))
    state = {k[len("net.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: damaged fastnst checkpoint ({exc})") from None
    return net.to(device).eval(), str(meta.get("style_name", "styled"))


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CheckpointError("--device cuda: no CUDA device is available")
    return torch.device(name)


def output_paths(inputs: list[Path], out: Path | None, style: str) -> list[Path]:
    """Where each stylized image goes.

    One input: ``-o`` is the output file. Several: ``-o`` is a folder. Without ``-o``: next to
    the current directory as ``<stem>_<style><ext>``.
    """
    if out is not None and len(inputs) == 1 and not out.is_dir():
        return [out]
    folder = out if out is not None else Path.cwd()
    return [folder / f"{p.stem}_{style}{p.suffix or '.png'}" for p in inputs]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="fastnst-stylize",
        description="Stylize images with a network trained by python -m fastnst.train.",
    )
    parser.add_argument("checkpoint", type=Path, help="a .ckpt written by fastnst.train")
    parser.add_argument("images", type=Path, nargs="+", help="image file(s) to stylize")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help="output file (one input) or folder (several); default: <stem>_<style>.<ext> here",
    )
    parser.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="auto: CUDA when available, else CPU",
    )
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16", "fp16"],
        help="bf16/fp16 run the network under autocast (fp16: CUDA only); about 2x faster, "
        "output within a few 8-bit levels of fp32",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the network first: pays off over many images of one size",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        device = pick_device(args.device)
    except CheckpointError as exc:
        print(f"fastnst-stylize: error: {exc}", file=sys.stderr)
        return 2
    if args.precision == "fp16" and device.type != "cuda":
        print(
            "fastnst-stylize: error: --precision fp16 needs CUDA; use bf16 on the CPU",
            file=sys.stderr,
        )
        return 2
    try:
        net, style = load_network(args.checkpoint, device)
    except CheckpointError as exc:
        print(f"fastnst-stylize: error: {exc}", file=sys.stderr)
        return 1
    if device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    forward = torch.compile(net) if args.compile else net
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)
    if args.output is not None and len(args.images) > 1:
        args.output.mkdir(parents=True, exist_ok=True)
    failed = 0
    for src, dst in zip(args.images, output_paths(args.images, args.output, style), strict=True):
        try:
            if dst.exists() and dst.resolve() == src.resolve():
                raise ImageReadError(f"{src}: output would overwrite the input; pass -o")
            image = load_image(src).unsqueeze(0).to(device)
            with (
                torch.inference_mode(),
                torch.autocast(
                    device.type, dtype=dtype or torch.float32, enabled=dtype is not None
                ),
            ):
                stylized = forward(image).float()
            save_image(stylized, dst)
        except ImageReadError as exc:
            print(f"fastnst-stylize: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        except (ValueError, OSError) as exc:  # Pillow: unknown extension, unwritable folder
            print(f"fastnst-stylize: error: cannot write {dst} ({exc})", file=sys.stderr)
            failed += 1
            continue
        print(f"{src} -> {dst}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
