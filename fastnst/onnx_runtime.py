"""Running an exported ``.onnx`` network with onnxruntime (``pip install 'fastnst[onnx]'``),
called like the PyTorch one."""

from __future__ import annotations

from pathlib import Path

import torch

from fastnst.errors import CheckpointError, first_line
from fastnst.transformer import TransformerNet


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
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[1] != 3:
            raise CheckpointError(f"{path}: not a fastnst export (expects one NCHW RGB input)")
        self.input_name = inputs[0].name
        meta = self.session.get_modelmeta().custom_metadata_map
        self.style = meta.get("fastnst.style", path.stem)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h < TransformerNet.min_size or w < TransformerNet.min_size:
            pad = (0, max(TransformerNet.min_size - w, 0), 0, max(TransformerNet.min_size - h, 0))
            x = torch.nn.functional.pad(x, pad, mode="replicate")
        array = x.detach().float().cpu().contiguous().numpy()
        (y,) = self.session.run(None, {self.input_name: array})
        return torch.from_numpy(y)[:, :, :h, :w]
