"""Running an exported ``.onnx`` network with onnxruntime (``pip install 'fastnst[onnx]'``),
called like the PyTorch one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from fastnst.errors import CheckpointError, first_line
from fastnst.text import printable
from fastnst.transformer import TransformerNet

# Far above any network fastnst builds (the default one exports to 7 MB): a bigger file is not
# one of its exports, and is not parsed.
MAX_ONNX_BYTES = 256 * 2**20


def check_onnx_file(path: Path) -> None:
    """Refuse, before onnxruntime reads it, an .onnx file that is too big, that refers to
    external data files (fastnst exports are one file; an external path could name any file
    on the machine) or that declares a tensor bigger than the file can hold.

    Raises:
        CheckpointError: one line saying which.
    """
    size = path.stat().st_size
    if size > MAX_ONNX_BYTES:
        raise CheckpointError(
            f"{path}: {size / 2**20:.0f} MB is far larger than any fastnst export "
            f"(at most {MAX_ONNX_BYTES / 2**20:.0f} MB); not loaded"
        )
    try:
        import onnx
    except ImportError:  # onnxruntime alone: it makes the same checks in recent releases
        return
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise CheckpointError(f"{path}: not a readable ONNX file ({first_line(exc)})") from None
    for tensor in _tensors(model.graph):
        where = f"{path}: tensor {printable(tensor.name, 80)!r}"
        if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.external_data:
            raise CheckpointError(
                f"{where} refers to data in another file (fastnst exports are one file); not loaded"
            )
        count = 1
        for dim in tensor.dims:
            count *= max(int(dim), 0)
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
        if count * itemsize > size:
            raise CheckpointError(
                f"{where} declares {count * itemsize / 2**20:.0f} MB in a file of "
                f"{size / 2**20:.1f} MB: damaged or crafted; not loaded"
            )


def _tensors(graph) -> Iterator:
    """Every tensor stored in a graph: initializers and constants, in subgraphs too."""
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _tensors(attribute.g)
            for sub in attribute.graphs:
                yield from _tensors(sub)


class OnnxNetwork:
    """An exported .onnx network run by onnxruntime, called like the PyTorch one."""

    def __init__(self, path: str | Path, device: torch.device | str = "cpu") -> None:
        path = Path(path)
        try:
            import onnxruntime as ort
        except ImportError:
            raise CheckpointError(
                f"{path}: running .onnx files needs onnxruntime: pip install 'fastnst[onnx]'"
            ) from None
        if not path.is_file():
            raise CheckpointError(f"{path}: no such file")
        check_onnx_file(path)
        providers = ["CPUExecutionProvider"]
        if torch.device(device).type == "cuda":
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own unexported exception types
            raise CheckpointError(f"{path}: not a usable ONNX model ({first_line(exc)})") from None
        inputs = self.session.get_inputs()
        if not 1 <= len(inputs) <= 2 or len(inputs[0].shape) != 4 or inputs[0].shape[1] != 3:
            raise CheckpointError(
                f"{path}: not a fastnst export (expects an NCHW RGB input and maybe a style mix)"
            )
        self.input_name = inputs[0].name
        meta = self.session.get_modelmeta().custom_metadata_map
        self.style = meta.get("fastnst.style", path.stem)
        # A network of several styles has a second input, the style mix.
        self.style_input = inputs[1].name if len(inputs) == 2 else None
        try:
            self.styles = [str(n) for n in json.loads(meta.get("fastnst.styles", "[]"))]
        except ValueError:
            self.styles = []
        if self.style_input is not None and len(self.styles) != inputs[1].shape[-1]:
            raise CheckpointError(f"{path}: its style names do not match its style input")
        self.num_styles = max(1, len(self.styles))
        self.mix: torch.Tensor | None = None

    @contextmanager
    def styled(self, style: torch.Tensor | None) -> Iterator[None]:
        """Within the block, calls use this style mix (as TransformerNet.styled)."""
        self.mix = style
        try:
            yield
        finally:
            self.mix = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h < TransformerNet.min_size or w < TransformerNet.min_size:
            pad = (0, max(TransformerNet.min_size - w, 0), 0, max(TransformerNet.min_size - h, 0))
            x = torch.nn.functional.pad(x, pad, mode="replicate")
        array = x.detach().float().cpu().contiguous().numpy()
        feeds = {self.input_name: array}
        if self.style_input is not None:
            if self.mix is None:
                raise RuntimeError("this export holds several styles: give a style mix")
            feeds[self.style_input] = self.mix.detach().float().cpu().reshape(-1).numpy()
        (y,) = self.session.run(None, feeds)
        return torch.from_numpy(y)[:, :, :h, :w]
