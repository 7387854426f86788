"""fastnst-stylize as a user runs it: a subprocess of the installed console script."""

from __future__ import annotations

import subprocess
import sys

import torch
from PIL import Image

from fastnst import module, stylize
from fastnst.images import load_image

from .conftest import COCO_TRAIN, CONTENT, STYLIZE

PHOTO = CONTENT / "sailboat.jpg"


def _run(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(STYLIZE), *map(str, args), "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def _one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def test_imports_neither_lightning_nor_hydra():
    code = (
        "import sys, fastnst.stylize; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('pytorch_lightning', 'lightning', 'hydra', 'omegaconf')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert stylize.CHECKPOINT_KIND == module.CHECKPOINT_KIND


def test_rebuilds_the_network_from_the_checkpoint_alone(tiny_checkpoint):
    ckpt = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    net, style = stylize.load_network(tiny_checkpoint)
    assert style == "starry_night"
    assert net.encoder[0][1].out_channels == ckpt["hyper_parameters"]["model"]["base_channels"]
    for k, v in net.state_dict().items():
        assert torch.equal(v, ckpt["state_dict"][f"net.{k}"]), k


def test_several_images_into_a_folder(tiny_checkpoint, tmp_path):
    photos = [PHOTO, sorted(COCO_TRAIN.glob("*.jpg"))[0]]
    result = _run(tiny_checkpoint, *photos, "-o", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    for photo in photos:
        out = tmp_path / "out" / f"{photo.stem}_starry_night{photo.suffix}"
        assert Image.open(out).size == Image.open(photo).size


def test_default_output_name_in_the_current_folder(tiny_checkpoint, tmp_path):
    result = _run(tiny_checkpoint, PHOTO, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "sailboat_starry_night.jpg").is_file()


def test_missing_image(tiny_checkpoint, tmp_path):
    _one_line_error(_run(tiny_checkpoint, tmp_path / "nope.jpg"), "nope.jpg", "no such file")


def test_non_image_input_and_the_good_one_still_done(tiny_checkpoint, tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("hello")
    result = _run(tiny_checkpoint, text, PHOTO, "-o", tmp_path / "out")
    _one_line_error(result, "notes.jpg")
    assert (tmp_path / "out" / "sailboat_starry_night.jpg").is_file()


def test_not_a_checkpoint(tmp_path):
    text = tmp_path / "model.ckpt"
    text.write_text("not a checkpoint")
    _one_line_error(_run(text, PHOTO), "model.ckpt", "not a fastnst checkpoint")
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": torch.nn.Linear(2, 2).state_dict()}, other)
    _one_line_error(_run(other, PHOTO), "other.ckpt", "not a fastnst checkpoint")
    _one_line_error(_run(tmp_path / "missing.ckpt", PHOTO), "missing.ckpt")


def test_output_equals_a_forward_pass(tiny_checkpoint, tmp_path):
    out = tmp_path / "out.png"
    assert _run(tiny_checkpoint, PHOTO, "-o", out).returncode == 0
    net, _ = stylize.load_network(tiny_checkpoint)
    with torch.inference_mode():
        expected = net(load_image(PHOTO).unsqueeze(0))[0]
    assert (load_image(out) - expected).abs().max() <= 1 / 255 + 1e-4


def test_bf16_precision_is_close_to_fp32(tiny_checkpoint, tmp_path):
    assert _run(tiny_checkpoint, PHOTO, "-o", tmp_path / "fp32.png").returncode == 0
    result = _run(tiny_checkpoint, PHOTO, "-o", tmp_path / "bf16.png", "--precision", "bf16")
    assert result.returncode == 0, result.stderr
    diff = (load_image(tmp_path / "bf16.png") - load_image(tmp_path / "fp32.png")).abs()
    assert diff.mean() < 1 / 255 and diff.max() < 10 / 255


def test_fp16_on_cpu_is_a_usage_error(tiny_checkpoint, tmp_path):
    result = _run(tiny_checkpoint, PHOTO, "--precision", "fp16")
    _one_line_error(result, "fp16 needs CUDA")
    assert result.returncode == 2
