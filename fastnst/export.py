"""``fastnst-export CKPT --format onnx|torchscript -o FILE``: a trained network for deployment.

Both formats keep batch, height and width dynamic (any size from 8x8 px up, odd sizes too)
and are checked against the PyTorch network on odd sizes before the command reports success.

- ONNX: through ``torch.onnx.export`` (the torch.export-based exporter), style name in the
  model's metadata (``fastnst.style``); verified in onnxruntime. Needs
  ``pip install 'fastnst[onnx]'``. ``fastnst-stylize`` runs such a file directly.
- TorchScript: ``torch.jit.script``, loadable with ``torch.jit.load`` alone (no fastnst);
  the style name is in the archive's extra file ``fastnst.json``.

A network that holds several styles takes the style mix as a second input: ``style``, a
float32 vector of one weight per style (>= 0, not all 0; divided by their sum), in the order
of the style names stored with it (ONNX metadata ``fastnst.styles``, a JSON list; the
``styles`` of ``fastnst.json``). ``[1, 0, 0]`` is the first style, ``[0.7, 0.3, 0]`` a blend.
Such exports are verified on two mixes: the first style alone and a blend of the first two.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import warnings
from pathlib import Path

import torch

from fastnst.checkpoint import load_with_metadata, style_names
from fastnst.errors import CheckpointError
from fastnst.files import user_path, written_atomically
from fastnst.onnx_runtime import OnnxNetwork
from fastnst.shipped import model_path, shipped_dir
from fastnst.text import printable
from fastnst.transformer import TransformerNet

# Exported graphs have no branch for images below the network's minimum size; OnnxNetwork
# (fastnst.onnx_runtime) pads those itself, other runtimes must pass at least this.
MIN_EXPORT_SIZE = TransformerNet.min_size
ONNX_OPSET = 18
# Sizes the export is verified on: odd, non-square, and a batch of two.
VERIFY_SHAPES = ((1, 3, 67, 101), (2, 3, 96, 33), (1, 3, 257, 190))
# fp32 kernels differ between runtimes; measured differences are ~1e-6.
VERIFY_TOLERANCE = 1e-4


def verify_mixes(num_styles: int) -> list[torch.Tensor | None]:
    """The style mixes an export is verified on: none for one style; else the first style
    alone and a 0.7 / 0.3 blend of the first two."""
    if num_styles == 1:
        return [None]
    first, blend = torch.zeros(num_styles), torch.zeros(num_styles)
    first[0], blend[0], blend[1] = 1.0, 0.7, 0.3
    return [first, blend]


def export_onnx(net: TransformerNet, path: Path, style: str, styles: list[str]) -> None:
    import onnx

    dims = {
        0: torch.export.Dim("batch", min=1, max=1024),
        2: torch.export.Dim("height", min=MIN_EXPORT_SIZE),
        3: torch.export.Dim("width", min=MIN_EXPORT_SIZE),
    }
    example: tuple[torch.Tensor, ...] = (torch.rand(2, 3, 64, 96),)
    names, shapes = ["image"], {"x": dims}
    if net.num_styles > 1:
        example = (*example, torch.full((net.num_styles,), 1.0 / net.num_styles))
        names.append("style")
        shapes["style"] = None  # one weight per style: a fixed length
    # The exporter narrates every stage on stdout and warns about its own internals.
    with (
        contextlib.redirect_stdout(io.StringIO()),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            net,
            example,
            input_names=names,
            output_names=["stylized"],
            dynamic_shapes=shapes,
            dynamo=True,
            # 18 is what most deployed runtimes (onnxruntime >= 1.14, TensorRT, OpenVINO) load.
            opset_version=ONNX_OPSET,
            verbose=False,
        )
    model = program.model_proto
    props = {"fastnst.style": style, "fastnst.pixels": "float32 RGB NCHW in [0, 1]"}
    if net.num_styles > 1:
        props["fastnst.styles"] = json.dumps(styles)
    onnx.helper.set_model_props(model, props)
    with written_atomically(path) as partial:
        partial.write_bytes(model.SerializeToString())


def export_torchscript(net: TransformerNet, path: Path, style: str, styles: list[str]) -> None:
    extra = {"style": style, **({"styles": styles} if net.num_styles > 1 else {})}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is in maintenance; it still works
        scripted = torch.jit.script(net)
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer, _extra_files={"fastnst.json": json.dumps(extra)})
    with written_atomically(path) as partial:
        partial.write_bytes(buffer.getvalue())


def verify(net: TransformerNet, path: Path, fmt: str) -> float:
    """Max |exported - PyTorch| over VERIFY_SHAPES (random images, fixed seed)."""
    if fmt == "onnx":
        exported = OnnxNetwork(path)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.load's deprecation notice
            exported = torch.jit.load(str(path), map_location="cpu")
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for mix in verify_mixes(net.num_styles):
        for shape in VERIFY_SHAPES:
            x = torch.rand(shape, generator=generator)
            with torch.inference_mode():
                if mix is None:
                    expected, got = net(x), exported(x)
                elif fmt == "onnx":
                    expected = net(x, mix)
                    with exported.styled(mix):
                        got = exported(x)
                else:
                    expected, got = net(x, mix), exported(x, mix)
            if got.shape != expected.shape:
                raise RuntimeError(f"export gives shape {tuple(got.shape)} for {shape}")
            worst = max(worst, float((got - expected).abs().max()))
    return worst


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="fastnst-export",
        description="Export a trained fastnst network to ONNX or TorchScript.",
    )
    parser.add_argument(
        "checkpoint", help="a .ckpt written by fastnst.train, or a shipped model's name"
    )
    parser.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    parser.add_argument(
        "-o",
        "--output",
        type=user_path,
        default=None,
        help="file to write (default: beside the checkpoint, with .onnx or .pt; for a shipped "
        "model <name>.onnx or <name>.torchscript.pt in the current folder)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        args.checkpoint = model_path(args.checkpoint)
    except CheckpointError as exc:
        print(f"fastnst-export: error: {exc}", file=sys.stderr)
        return 2
    suffix = ".onnx" if args.format == "onnx" else ".torchscript.pt"
    if args.format == "torchscript" and args.checkpoint.suffix == ".ckpt":
        suffix = ".pt"  # beside a training checkpoint, as before
    # Beside a checkpoint of the user's; a shipped model's export goes to the current folder.
    default = args.checkpoint.with_suffix(suffix)
    if args.checkpoint.resolve().parent == shipped_dir().resolve():
        default = Path(args.checkpoint.stem + suffix)
    output = args.output or default
    if output.resolve() == args.checkpoint.resolve():
        print(f"fastnst-export: error: {output} is the model itself", file=sys.stderr)
        return 1
    if output.exists() and not args.overwrite:
        print(
            f"fastnst-export: error: {output} exists; pass --overwrite to replace it",
            file=sys.stderr,
        )
        return 1
    try:
        net, meta = load_with_metadata(args.checkpoint)
        style, styles = str(meta.get("style_name", "styled")), style_names(meta)
        if args.format == "onnx":
            try:
                import onnx  # noqa: F401
                import onnxscript  # noqa: F401
            except ImportError:
                raise CheckpointError(
                    "ONNX export needs onnx and onnxscript: pip install 'fastnst[onnx]'"
                ) from None
            export_onnx(net, output, style, styles)
        else:
            export_torchscript(net, output, style, styles)
        diff = verify(net, output, args.format)
    except CheckpointError as exc:
        print(f"fastnst-export: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"fastnst-export: error: cannot write {output} ({exc})", file=sys.stderr)
        return 1
    shapes = ", ".join("x".join(map(str, s)) for s in VERIFY_SHAPES)
    runtime = "onnxruntime" if args.format == "onnx" else "torch.jit.load"
    size = output.stat().st_size / 1e6
    held = (
        f"{len(styles)} styles ({printable(', '.join(styles), 200)}), input 'style' takes "
        f"{len(styles)} weights"
        if len(styles) > 1
        else f"style {printable(style, 80)}"
    )
    print(f"wrote {output} ({args.format}, {held}, {size:.1f} MB)")
    mixes = [m for m in verify_mixes(len(styles)) if m is not None]
    shown = [str([round(w, 2) for w in m.tolist()]) for m in mixes]
    mixed = " for style mixes " + " and ".join(shown) if mixes else ""
    print(f"verified in {runtime} on {shapes}{mixed}: max abs diff vs PyTorch {diff:.2e}")
    if diff > VERIFY_TOLERANCE:
        print(
            f"fastnst-export: error: the export differs from PyTorch by {diff:.2e} "
            f"(> {VERIFY_TOLERANCE:g}); do not use {output}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
