"""fastnst-export: ONNX (checked in onnxruntime) and TorchScript (loaded by torch alone)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch

from fastnst import checkpoint
from fastnst.errors import CheckpointError
from fastnst.export import main as export_main
from fastnst.images import load_image
from fastnst.onnx_runtime import OnnxNetwork
from fastnst.stylize import main as stylize_main

from .conftest import CONTENT, run_console

pytestmark = pytest.mark.shared_data
PHOTO = CONTENT / "sailboat.jpg"


def _export(*args) -> subprocess.CompletedProcess:
    """fastnst-export ARGS, in this process (see conftest.run_console)."""
    return run_console(export_main, args)


@pytest.fixture(scope="module")
def onnx_file(tiny_checkpoint, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "starry.onnx"
    result = _export(tiny_checkpoint, "--format", "onnx", "-o", path)
    assert result.returncode == 0, result.stderr
    assert "max abs diff vs PyTorch" in result.stdout
    return path


@pytest.mark.parametrize("shape", [(1, 3, 31, 47), (3, 3, 64, 65), (2, 3, 8, 9), (1, 3, 129, 77)])
def test_onnx_agrees_with_pytorch_on_any_size(tiny_checkpoint, onnx_file, shape):
    net, _ = checkpoint.load_network(tiny_checkpoint)
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    x = torch.rand(shape, generator=torch.Generator().manual_seed(sum(shape)))
    (y,) = session.run(None, {"image": x.numpy()})
    with torch.inference_mode():
        expected = net(x).numpy()
    assert y.shape == expected.shape
    assert np.abs(y - expected).max() < 1e-4


def test_onnx_carries_the_style_name(onnx_file):
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    assert session.get_modelmeta().custom_metadata_map["fastnst.style"] == "starry_night"


def test_stylize_runs_an_onnx_file_like_the_checkpoint(tiny_checkpoint, onnx_file, tmp_path):
    for model, name in ((tiny_checkpoint, "ckpt.png"), (onnx_file, "onnx.png")):
        result = run_console(stylize_main, [model, PHOTO, "-o", tmp_path / name, "--size", "99"])
        assert result.returncode == 0, result.stderr
    diff = (load_image(tmp_path / "ckpt.png") - load_image(tmp_path / "onnx.png")).abs()
    assert diff.max() <= 1 / 255 + 1e-6
    # Tiny images are padded up to the exported graph's minimum and cropped back.
    tiny = torch.rand(1, 3, 5, 6)
    with torch.inference_mode():
        expected = checkpoint.load_network(tiny_checkpoint)[0](tiny)
    assert (OnnxNetwork(onnx_file)(tiny) - expected).abs().max() < 1e-4


def test_onnx_file_cannot_tile(onnx_file, tmp_path):
    result = run_console(
        stylize_main, [onnx_file, PHOTO, "--tile", "128", "-o", tmp_path / "x.png"]
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--tile needs a .ckpt" in result.stderr


def test_torchscript_loads_with_torch_alone(tiny_checkpoint, tmp_path):
    path = tmp_path / "starry.pt"
    result = _export(tiny_checkpoint, "--format", "torchscript", "-o", path)
    assert result.returncode == 0, result.stderr
    x = torch.rand(2, 3, 37, 53, generator=torch.Generator().manual_seed(1))
    torch.save(x, tmp_path / "x.pt")
    code = (
        "import sys, warnings, torch; warnings.simplefilter('ignore'); "
        f"files = {{'fastnst.json': ''}}; m = torch.jit.load({str(path)!r}, _extra_files=files); "
        f"torch.save(m(torch.load({str(tmp_path / 'x.pt')!r})), {str(tmp_path / 'y.pt')!r}); "
        "assert not any(k.startswith('fastnst') for k in sys.modules); print(files['fastnst.json'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert '"style": "starry_night"' in out.stdout
    with torch.inference_mode():
        expected = checkpoint.load_network(tiny_checkpoint)[0](x)
    assert (torch.load(tmp_path / "y.pt") - expected).abs().max() < 1e-5


def test_export_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_text("no")
    result = _export(bad, "-o", tmp_path / "bad.onnx")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "not a fastnst checkpoint (a file torch.save did not write)" in result.stderr
    existing = tmp_path / "there.pt"
    existing.write_bytes(b"keep")
    result = _export(bad, "--format", "torchscript", "-o", existing)
    assert result.returncode == 1 and "exists" in result.stderr
    assert existing.read_bytes() == b"keep"


def test_onnx_without_onnxruntime_is_one_clear_line(onnx_file, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now raises ImportError
    with pytest.raises(CheckpointError, match=r"pip install 'fastnst\[onnx\]'"):
        OnnxNetwork(onnx_file)


def test_onnx_with_reduced_precision_is_a_usage_error(onnx_file, tmp_path):
    result = run_console(stylize_main, [onnx_file, PHOTO, "--precision", "bf16", "--device", "cpu"])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "needs a .ckpt" in result.stderr
