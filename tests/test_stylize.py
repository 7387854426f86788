"""fastnst-stylize as a user runs it: its main() with a command line (a few tests start the
installed console script itself)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fastnst import checkpoint, stylize
from fastnst.images import load_image, resize_tensor_long_side
from fastnst.stylize import main as stylize_main

from .conftest import COCO_TRAIN, CONTENT, run_console

pytestmark = pytest.mark.shared_data
PHOTO = CONTENT / "sailboat.jpg"


def _run(*args, cwd=None) -> subprocess.CompletedProcess:
    """fastnst-stylize ARGS --device cpu, in this process (see conftest.run_console)."""
    return run_console(stylize_main, [*args, "--device", "cpu"], cwd=cwd)


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


def test_rebuilds_the_network_from_the_checkpoint_alone(tiny_checkpoint):
    ckpt = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    net, style = checkpoint.load_network(tiny_checkpoint)
    assert ckpt["fastnst"]["kind"] == checkpoint.CHECKPOINT_KIND  # written and read in one place
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
    net, _ = checkpoint.load_network(tiny_checkpoint)
    with torch.inference_mode():
        expected = net(load_image(PHOTO).unsqueeze(0))[0]
    assert (load_image(out) - expected).abs().max() <= 1 / 255 + 1e-4


def test_bf16_precision_is_close_to_fp32(tiny_checkpoint, tmp_path):
    # At 160 px: bf16 convolutions are emulated (slow) on CPUs without AVX512-BF16.
    size = ("--size", "160")
    assert _run(tiny_checkpoint, PHOTO, "-o", tmp_path / "fp32.png", *size).returncode == 0
    result = _run(tiny_checkpoint, PHOTO, "-o", tmp_path / "bf16.png", "--precision", "bf16", *size)
    assert result.returncode == 0, result.stderr
    diff = (load_image(tmp_path / "bf16.png") - load_image(tmp_path / "fp32.png")).abs()
    assert diff.mean() < 1 / 255 and diff.max() < 10 / 255


def test_fp16_on_cpu_is_a_usage_error(tiny_checkpoint, tmp_path):
    result = _run(tiny_checkpoint, PHOTO, "--precision", "fp16")
    _one_line_error(result, "fp16 needs CUDA")
    assert result.returncode == 2


# --- inputs, outputs and the options of issue 4 ---------------------------------------------


def _photos(folder, count=3):
    """Copies of real COCO photos in a temporary folder (the shared originals stay put)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for src in sorted(COCO_TRAIN.glob("*.jpg"))[:count]:
        out.append(Path(shutil.copy(src, folder / src.name)))
    return out


def test_folder_is_searched_recursively_and_mirrored(tiny_checkpoint, tmp_path):
    top = _photos(tmp_path / "in", 2)
    deep = _photos(tmp_path / "in" / "sub" / "deeper", 1)
    (tmp_path / "in" / "readme.txt").write_text("not an image, not an image extension")
    result = _run(tiny_checkpoint, tmp_path / "in", "-o", tmp_path / "out", "--size", "64")
    assert result.returncode == 0, result.stderr
    for photo in top:
        assert (tmp_path / "out" / f"{photo.stem}_starry_night.jpg").is_file()
    assert (tmp_path / "out" / "sub" / "deeper" / f"{deep[0].stem}_starry_night.jpg").is_file()
    assert "3 written, 0 skipped (exist), 0 failed" in result.stdout


def test_glob_pattern_and_output_extension(tiny_checkpoint, tmp_path):
    photos = _photos(tmp_path / "in", 3)
    pattern = str(tmp_path / "in" / "*.jpg")
    result = _run(tiny_checkpoint, pattern, "-o", tmp_path / "out", "--size", "48", "--ext", "png")
    assert result.returncode == 0, result.stderr
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == sorted(f"{p.stem}_starry_night.png" for p in photos)
    assert Image.open(tmp_path / "out" / written[0]).format == "PNG"


def test_empty_folder_and_unmatched_pattern_fail_but_the_rest_is_done(tiny_checkpoint, tmp_path):
    (tmp_path / "empty").mkdir()
    result = _run(
        tiny_checkpoint,
        tmp_path / "empty",
        str(tmp_path / "nothing*.png"),
        PHOTO,
        "-o",
        tmp_path / "out",
        "--size",
        "64",
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 2
    assert "empty: no image files" in errors[0] and "matches no files" in errors[1]
    assert (tmp_path / "out" / "sailboat_starry_night.jpg").is_file()


def test_never_overwrites_without_overwrite(tiny_checkpoint, tmp_path):
    out = tmp_path / "styled.png"
    out.write_bytes(b"precious")
    _one_line_error(
        _run(tiny_checkpoint, PHOTO, "-o", out, "--size", "64"), "exists", "--overwrite"
    )
    assert out.read_bytes() == b"precious"
    skipped = _run(tiny_checkpoint, PHOTO, "-o", out, "--size", "64", "--skip-existing")
    assert skipped.returncode == 0 and out.read_bytes() == b"precious"
    replaced = _run(tiny_checkpoint, PHOTO, "-o", out, "--size", "64", "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert max(Image.open(out).size) == 64


def test_refuses_to_write_over_its_input(tiny_checkpoint, tmp_path):
    (photo,) = _photos(tmp_path, 1)
    before = photo.read_bytes()
    _one_line_error(_run(tiny_checkpoint, photo, "-o", photo), "is the input", "--overwrite")
    assert photo.read_bytes() == before


def test_two_inputs_with_one_output_name(tiny_checkpoint, tmp_path):
    (a,) = _photos(tmp_path / "a", 1)
    (b,) = _photos(tmp_path / "b", 1)  # same file name in another folder
    result = _run(tiny_checkpoint, a, b, "-o", tmp_path / "out", "--size", "48")
    _one_line_error(result, str(b), "would write")
    assert (tmp_path / "out" / f"{a.stem}_starry_night.jpg").is_file()


def test_jpeg_quality(tiny_checkpoint, tmp_path):
    low, high = tmp_path / "q30.jpg", tmp_path / "q95.jpg"
    assert _run(tiny_checkpoint, PHOTO, "-o", low, "--quality", "30").returncode == 0
    assert _run(tiny_checkpoint, PHOTO, "-o", high).returncode == 0
    assert low.stat().st_size < 0.6 * high.stat().st_size


def test_size_sets_the_long_side(tiny_checkpoint, tmp_path):
    out = tmp_path / "small.png"
    assert _run(tiny_checkpoint, PHOTO, "-o", out, "--size", "100").returncode == 0
    w, h = Image.open(PHOTO).size
    scale = 100 / max(w, h)
    assert Image.open(out).size == (round(w * scale), round(h * scale))


def test_batches_of_same_size_images_match_one_by_one(tiny_checkpoint, tmp_path, monkeypatch):
    from fastnst import inference

    photos = _photos(tmp_path / "in", 6)
    sizes = []
    original = inference.Stylizer.__call__

    def spy(self, batch, progress=None):
        sizes.append(batch.shape[0])
        return original(self, batch, progress)

    monkeypatch.setattr(inference.Stylizer, "__call__", spy)
    common = [str(tiny_checkpoint), *map(str, photos), "--size", "64", "--ext", ".png"]
    assert stylize.main([*common, "-o", str(tmp_path / "one"), "--device", "cpu"]) == 0
    assert sizes == [1] * 6
    sizes.clear()
    assert stylize.main([*common, "-o", str(tmp_path / "four"), "--batch-size", "4"]) == 0
    shapes = [Image.open(p).size for p in photos]
    assert max(sizes) > 1 and sum(sizes) == 6, (sizes, shapes)
    for p in photos:
        name = f"{p.stem}_starry_night.png"
        diff = load_image(tmp_path / "one" / name) - load_image(tmp_path / "four" / name)
        assert diff.abs().max() <= 1 / 255 + 1e-6


def test_strength_zero_returns_the_input_and_half_is_between(tiny_checkpoint, tmp_path):
    runs = {}
    for strength in ("0", "0.5", "1"):
        out = tmp_path / f"s{strength}.png"
        result = _run(tiny_checkpoint, PHOTO, "-o", out, "--size", "96", "--strength", strength)
        assert result.returncode == 0, result.stderr
        runs[strength] = load_image(out)
    photo = resize_tensor_long_side(load_image(PHOTO), 96)  # as --size does
    assert (runs["0"] - photo).abs().max() <= 1 / 255 + 1e-6
    assert ((runs["0"] + runs["1"]) / 2 - runs["0.5"]).abs().max() <= 1.5 / 255
    assert (runs["1"] - photo).abs().mean() > 0.05


def test_preserve_color_keeps_the_photo_chroma(tiny_checkpoint, tmp_path):
    def chroma(img):
        from fastnst.inference import _RGB_TO_YCC

        return torch.einsum("ij,jhw->ihw", _RGB_TO_YCC[1:], img)

    photo = load_image(PHOTO, size=96)
    for flag in ([], ["--preserve-color"]):
        out = tmp_path / f"pc{len(flag)}.png"
        assert _run(tiny_checkpoint, PHOTO, "-o", out, "--size", "96", *flag).returncode == 0
    plain = (chroma(load_image(tmp_path / "pc0.png")) - chroma(photo)).abs().mean()
    kept = (chroma(load_image(tmp_path / "pc1.png")) - chroma(photo)).abs().mean()
    assert kept < 0.01 < plain


def test_tiled_output_matches_untiled(tiny_checkpoint, tmp_path):
    whole, tiled = tmp_path / "whole.png", tmp_path / "tiled.png"
    assert _run(tiny_checkpoint, PHOTO, "-o", whole).returncode == 0
    result = _run(tiny_checkpoint, PHOTO, "-o", tiled, "--tile", "128")
    assert result.returncode == 0, result.stderr
    diff = (load_image(whole) - load_image(tiled)).abs()
    assert diff.max() <= 2 / 255 + 1e-6  # 8-bit rounding of two results ~1e-3 apart


@pytest.mark.parametrize(("budget", "mode"), [("60MB", "exact"), ("20MB", "thumbnail")])
def test_memory_budget_tiles_automatically(tiny_checkpoint, tmp_path, monkeypatch, budget, mode):
    from fastnst import inference

    plans = []
    original = inference.Stylizer._stylize_one_tiled

    def spy(self, image, plan, progress):
        plans.append(plan.mode)
        return original(self, image, plan, progress)

    monkeypatch.setattr(inference.Stylizer, "_stylize_one_tiled", spy)
    out = tmp_path / "budget.png"
    argv = [str(tiny_checkpoint), str(PHOTO), "-o", str(out), "--device", "cpu"]
    assert stylize.main([*argv, "--max-memory", budget]) == 0
    assert plans == [mode]
    assert Image.open(out).size == Image.open(PHOTO).size


def test_alpha_is_kept(tiny_checkpoint, tmp_path):
    rgb = Image.open(PHOTO).convert("RGB").resize((80, 60))
    alpha = Image.linear_gradient("L").resize((80, 60))
    src = tmp_path / "cutout.png"
    Image.merge("RGBA", (*rgb.split(), alpha)).save(src)
    out = tmp_path / "styled.png"
    assert _run(tiny_checkpoint, src, "-o", out).returncode == 0
    styled = Image.open(out)
    assert styled.mode == "RGBA"
    assert np.array_equal(np.asarray(styled.getchannel("A")), np.asarray(alpha))
    result = _run(tiny_checkpoint, src, "-o", tmp_path / "styled.jpg")
    assert result.returncode == 0 and "has no alpha" in result.stdout
    assert Image.open(tmp_path / "styled.jpg").mode == "RGB"


def test_16_bit_and_cmyk_inputs(tiny_checkpoint, tmp_path):
    gray16 = tmp_path / "gray16.png"
    Image.fromarray((np.arange(60 * 80).reshape(60, 80) * 13).astype(np.uint16)).save(gray16)
    cmyk = tmp_path / "cmyk.jpg"
    Image.open(PHOTO).convert("CMYK").save(cmyk)
    result = _run(tiny_checkpoint, gray16, cmyk, "-o", tmp_path / "out", "--ext", "png")
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "out" / "gray16_starry_night.png").size == (80, 60)
    assert Image.open(tmp_path / "out" / "cmyk_starry_night.png").mode == "RGB"


def test_truncated_image_in_a_batch_does_not_stop_the_others(tiny_checkpoint, tmp_path):
    photos = _photos(tmp_path / "in", 3)
    data = photos[1].read_bytes()
    photos[1].write_bytes(data[: len(data) // 3])
    result = _run(tiny_checkpoint, tmp_path / "in", "-o", tmp_path / "out", "--batch-size", "2")
    _one_line_error(result, photos[1].name)
    for p in (photos[0], photos[2]):
        assert (tmp_path / "out" / f"{p.stem}_starry_night.jpg").is_file()
    assert not (tmp_path / "out" / f"{photos[1].stem}_starry_night.jpg").exists()


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_unavailable_device_is_a_usage_error(tiny_checkpoint, device):
    if (device == "cuda" and torch.cuda.is_available()) or (
        device == "mps" and torch.backends.mps.is_available()
    ):
        pytest.fail("this test expects a machine without that device")
    result = run_console(stylize_main, [tiny_checkpoint, PHOTO, "--device", device])
    _one_line_error(result, f"--device: {device} asked for")
    assert result.returncode == 2


def test_json_prints_one_object_per_output_and_nothing_else(multi_checkpoint, tmp_path):
    photos = [PHOTO, PHOTO.with_name("chicago.jpg")]
    out = tmp_path / "out"
    result = run_console(
        stylize_main,
        [multi_checkpoint, *photos, "--style", "all", "--size", "48", "-o", out, "--json"],
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]  # only JSON on stdout
    assert len(lines) == 2 * 3  # two photos, three styles
    keys = {"input", "output", "model", "style", "size", "device", "precision", "milliseconds"}
    assert all(set(line) == keys for line in lines)
    assert {line["style"] for line in lines} == {"starry_night", "wave", "mosaic"}
    for line in lines:
        written = Path(line["output"])
        assert written.is_file() and written.parent == out.resolve()
        with Image.open(written) as image:
            assert list(image.size) == line["size"] and max(image.size) == 48
        assert line["input"] in {str(p) for p in photos}
        assert line["device"] == "cpu" and line["precision"] == "fp32"
        assert line["milliseconds"] > 0
    # The lines that stdout holds without --json went to stderr.
    assert "written" in result.stderr


def test_a_pipe_in_and_out_gives_the_picture_of_the_file(tmp_path):
    from .conftest import STYLIZE

    direct = tmp_path / "direct.png"
    assert stylize_main(["wave", str(PHOTO), "--size", "64", "-o", str(direct)]) == 0
    piped = subprocess.run(
        [str(STYLIZE), "wave", "-", "--size", "64", "-o", "-", "--ext", ".png"],
        stdin=PHOTO.open("rb"),
        capture_output=True,
        timeout=120,
    )
    assert piped.returncode == 0, piped.stderr.decode()
    assert piped.stdout.startswith(b"\x89PNG")  # the image alone on stdout
    out = tmp_path / "piped.png"
    out.write_bytes(piped.stdout)
    assert torch.equal(load_image(out), load_image(direct))


@pytest.mark.parametrize(
    ("args", "stdin", "fragment"),
    [
        (["wave", PHOTO, CONTENT / "chicago.jpg", "-o", "-"], b"", "standard output takes one"),
        (["wave", "-", "-o", "-"], b"", "nothing on standard input"),
        (["wave", "-", "-o", "-"], b"hello", "is not an image"),
        (["wave", PHOTO, "-o", "-", "--json"], b"", "both want standard output"),
    ],
)
def test_pipes_that_cannot_work_are_one_line(args, stdin, fragment):
    from .conftest import STYLIZE

    result = subprocess.run(
        [str(STYLIZE), *map(str, args)], input=stdin, capture_output=True, timeout=120
    )
    err = result.stderr.decode()
    assert result.returncode == 2 and "Traceback" not in err, err
    assert fragment in err and result.stdout == b""
