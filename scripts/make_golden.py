"""Write the reference outputs that tests/test_golden.py compares fastnst-stylize against.

    python scripts/make_golden.py            # writes tests/golden/*.png

The checkpoint is written here by hand in the version-1 checkpoint format (the layout of the
first released checkpoints: ``fastnst`` metadata, ``hyper_parameters.model``, ``net.*``
weights), with weights drawn from a seeded generator key by key, so it does not depend on how
the network initialises itself. The input is a seeded synthetic picture. The outputs are what
``fastnst-stylize`` made of them when the references were recorded; a refactoring that claims
"no change in behaviour" must reproduce them within tests/test_golden.py's tolerance (at most
one 8-bit level on at most 0.5 % of the pixels: what different CPUs' kernels give). Rerun
this only for a deliberate change of output, and say so in the commit.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden"

# The network: 8 base channels, 2 residual blocks; its state_dict keys as of version 1.
MODEL = {"base_channels": 8, "num_residual_blocks": 2}
SIZE = (77, 101)  # odd, and larger than a 64 px tile in both directions
# name -> fastnst-stylize options
CASES = {
    "whole": [],
    "exact_tiles": ["--tile", "64"],
    "thumbnail_tiles": ["--max-memory", "300KB"],
    "color_strength": ["--preserve-color", "--strength", "0.7"],
}


def _state_keys(model: dict) -> dict[str, tuple[int, ...]]:
    """The version-1 state_dict of TransformerNet(**model): key -> shape."""
    c, blocks = model["base_channels"], model["num_residual_blocks"]
    keys: dict[str, tuple[int, ...]] = {}

    def conv_norm(prefix: str, c_in: int, c_out: int, kernel: int, norm: bool = True) -> None:
        keys[f"{prefix}.1.weight"] = (c_out, c_in, kernel, kernel)
        keys[f"{prefix}.1.bias"] = (c_out,)
        if norm:
            keys[f"{prefix}.2.weight"] = (c_out,)
            keys[f"{prefix}.2.bias"] = (c_out,)

    conv_norm("encoder.0", 3, c, 9)
    conv_norm("encoder.1", c, 2 * c, 3)
    conv_norm("encoder.2", 2 * c, 4 * c, 3)
    for i in range(blocks):
        conv_norm(f"residuals.{i}.body.0", 4 * c, 4 * c, 3)
        conv_norm(f"residuals.{i}.body.1", 4 * c, 4 * c, 3)
    conv_norm("decoder.0.1", 4 * c, 2 * c, 3)
    conv_norm("decoder.1.1", 2 * c, c, 3)
    conv_norm("decoder.2", c, 3, 9, norm=False)
    return keys


def write_checkpoint(path: Path, style_name: str = "golden") -> None:
    """A version-1 fastnst checkpoint with seeded weights."""
    generator = torch.Generator().manual_seed(1234)
    state = {}
    for key, shape in sorted(_state_keys(MODEL).items()):
        fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
        if key.endswith(".weight") and len(shape) == 1:  # norm scale around 1
            value = 1 + 0.3 * torch.randn(shape, generator=generator)
        else:
            value = torch.randn(shape, generator=generator) / math.sqrt(fan_in)
        state[f"net.{key}"] = value
    torch.save(
        {
            "state_dict": state,
            "hyper_parameters": {"model": dict(MODEL), "style_name": style_name},
            "fastnst": {"kind": "fastnst.TransformerNet", "style_name": style_name},
        },
        path,
    )


def write_input(path: Path) -> None:
    """A seeded picture with smooth gradients, edges and noise, saved losslessly."""
    from PIL import Image

    generator = torch.Generator().manual_seed(99)
    h, w = SIZE
    y = torch.linspace(0, 1, h)[:, None].expand(h, w)
    x = torch.linspace(0, 1, w)[None, :].expand(h, w)
    image = torch.stack([x, y, ((x - 0.5) ** 2 + (y - 0.4) ** 2 < 0.08).float()])
    image = (0.8 * image + 0.2 * torch.rand(3, h, w, generator=generator)).clamp(0, 1)
    array = image.mul(255).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(array).save(path)


def stylize_cases(checkpoint: Path, image: Path, out_dir: Path) -> dict[str, Path]:
    """Each case of CASES through fastnst-stylize's main(); returns case -> output file."""
    from fastnst.stylize import main

    outputs = {}
    for name, options in CASES.items():
        out = out_dir / f"{name}.png"
        status = main(
            [str(checkpoint), str(image), "-o", str(out), "--device", "cpu", "--overwrite"]
            + options
        )
        if status != 0:
            raise SystemExit(f"fastnst-stylize failed on case {name}")
        outputs[name] = out
    return outputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=GOLDEN)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)  # the references do not depend on the thread count this way
    work = args.out / "_work"
    work.mkdir(exist_ok=True)
    write_checkpoint(work / "golden.ckpt")
    write_input(args.out / "input.png")
    for name, path in stylize_cases(work / "golden.ckpt", args.out / "input.png", work).items():
        path.replace(args.out / f"{name}.png")
    (work / "golden.ckpt").unlink()
    work.rmdir()
    print(f"wrote {', '.join(CASES)} and input.png under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
