"""Hostile and careless input: names from files are not paths, checkpoints are untrusted all
the way down, and no finished work is lost to a check that could have run first."""

from __future__ import annotations

import io
import math
import zipfile

import pytest
import torch

from fastnst import checkpoint
from fastnst import coco as download_coco
from fastnst.stylize import main as stylize_main

from .conftest import COCO_TRAIN, CONTENT, STARRY_NIGHT, run_console, run_hydra_cli
from .test_download import _coco_zip

pytestmark = pytest.mark.shared_data
PHOTO = CONTENT / "sailboat.jpg"


def _one_line(result, *fragments: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def _doctored(tiny_checkpoint, tmp_path, name: str = "doctored.ckpt", **changes):
    """The tiny checkpoint with parts replaced: meta=..., model=..., state=callable."""
    ckpt = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    if "meta" in changes:
        ckpt["fastnst"].update(changes["meta"])
    if "model" in changes:
        ckpt["hyper_parameters"]["model"] = changes["model"]
    if "state" in changes:
        changes["state"](ckpt["state_dict"])
    path = tmp_path / name
    torch.save(ckpt, path)
    return path


# --- 1. names from files are not paths --------------------------------------------------------


@pytest.mark.parametrize(
    "style", ["../../escaped", "/etc/evil", "a/../../b", "..", "", "x\x1b[31mred\x07", "é" * 300]
)
def test_a_style_name_from_a_checkpoint_never_leaves_the_output_folder(
    tiny_checkpoint, tmp_path, style
):
    crafted = _doctored(tiny_checkpoint, tmp_path, meta={"style_name": style})
    out = tmp_path / "out" / "deep"
    out.mkdir(parents=True)
    result = run_console(stylize_main, [crafted, PHOTO, PHOTO.with_name("tubingen.jpg"), "-o", out])
    assert result.returncode == 0, result.stderr
    written = sorted(p for p in tmp_path.rglob("*") if p.is_file() and p.suffix == ".jpg")
    assert len(written) == 2 and all(p.parent == out for p in written), written
    assert all(len(p.name) < 120 and not p.name.startswith(".") for p in written)
    assert "\x1b" not in result.stdout + result.stderr and "\x07" not in result.stdout


def test_an_output_path_through_a_missing_folder_is_checked_where_it_lands(
    tiny_checkpoint, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    precious = tmp_path / "photo.jpg"
    precious.write_bytes(PHOTO.read_bytes())
    before = precious.read_bytes()
    result = run_console(stylize_main, [tiny_checkpoint, PHOTO, "-o", "missing_dir/../photo.jpg"])
    _one_line(result, "exists")
    assert precious.read_bytes() == before


# --- 2. checkpoints are untrusted, all the way down -------------------------------------------


@pytest.mark.parametrize(
    ("model", "fragment"),
    [
        ({"base_channels": 10**7}, "base_channels must be a whole number in 1..512"),
        ({"base_channels": 2.5}, "base_channels"),
        ({"base_channels": "32"}, "base_channels"),
        ({"num_residual_blocks": 10**6}, "num_residual_blocks"),
        ({"num_residual_blocks": -1}, "num_residual_blocks"),
        ({"base_channels": True}, "base_channels"),
        ({"channels": 8}, "unknown model settings"),
        ("not a mapping", "not a mapping"),
    ],
)
def test_absurd_or_mistyped_network_settings_are_refused_before_building(
    tiny_checkpoint, tmp_path, model, fragment
):
    crafted = _doctored(tiny_checkpoint, tmp_path, model=model)
    result = run_console(stylize_main, [crafted, PHOTO, "-o", tmp_path / "o.png"])
    _one_line(result, "damaged fastnst checkpoint", fragment)
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_weights_are_refused(tiny_checkpoint, tmp_path, bad):
    def poison(state):
        key = sorted(state)[3]
        state[key] = state[key].clone()
        state[key].view(-1)[0] = bad

    crafted = _doctored(tiny_checkpoint, tmp_path, state=poison)
    result = run_console(stylize_main, [crafted, PHOTO, "-o", tmp_path / "o.png"])
    _one_line(result, "NaN or infinite")
    assert not (tmp_path / "o.png").exists()


def test_non_tensor_weights_and_odd_metadata_are_refused(tiny_checkpoint, tmp_path):
    def strings(state):
        state[sorted(state)[0]] = "not a tensor"

    crafted = _doctored(tiny_checkpoint, tmp_path, state=strings)
    _one_line(run_console(stylize_main, [crafted, PHOTO, "-o", tmp_path / "o.png"]), "float")
    crafted = _doctored(tiny_checkpoint, tmp_path, "meta.ckpt", meta={"style_name": 42})
    _one_line(run_console(stylize_main, [crafted, PHOTO, "-o", tmp_path / "o.png"]), "style_name")


def test_a_checkpoint_that_would_inflate_beyond_the_bound_is_refused(
    tiny_checkpoint, tmp_path, monkeypatch
):
    # A small file whose compressed entry inflates far beyond its size (the bound is lowered
    # so that the test need not write gigabytes).
    monkeypatch.setattr(checkpoint, "MAX_INFLATED_BYTES", 8 * 2**20)
    bomb = tmp_path / "bomb.ckpt"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with zipfile.ZipFile(tiny_checkpoint) as real:
            for entry in real.infolist():
                archive.writestr(entry.filename, real.read(entry))
        archive.writestr("archive/data/999", b"\0" * (16 * 2**20))
    assert bomb.stat().st_size < 2 * 2**20
    result = run_console(stylize_main, [bomb, PHOTO, "-o", tmp_path / "o.png"])
    _one_line(result, "would inflate")


def test_a_torchscript_file_is_recognised_and_refused_clearly(tiny_checkpoint, tmp_path):
    net, _ = checkpoint.load_network(tiny_checkpoint)
    scripted = tmp_path / "model.pt"
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(net), buffer)
    scripted.write_bytes(buffer.getvalue())
    result = run_console(stylize_main, [scripted, PHOTO, "-o", tmp_path / "o.png"])
    _one_line(result, "TorchScript program", ".ckpt it was exported from")
    assert "weights_only" not in result.stderr


# --- 3. no finished work lost to a check that could have run first ----------------------------


def test_an_unwritable_checkpoint_dir_fails_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    status, stderr = run_hydra_cli(
        [f"style.image={STARRY_NIGHT}", f"data.root={COCO_TRAIN}", "loss.vgg_weights=random",
         f"checkpoint_dir={blocker}", f"hydra.run.dir={tmp_path / 'run'}"],
        monkeypatch, capsys,
    )  # fmt: skip
    assert status == 2 and "checkpoint_dir" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "run" / "tensorboard").exists()  # no step was trained


def test_an_unwritable_optimize_output_fails_before_optimising(tmp_path, monkeypatch, capsys):
    from fastnst.optimize import main as optimize_main

    monkeypatch.chdir(tmp_path)
    status, stderr = run_hydra_cli(
        [f"content={PHOTO}", f"style.image={STARRY_NIGHT}", "loss.vgg_weights=random",
         f"output={tmp_path / 'result.xyz'}", "steps=500", "size=32"],
        monkeypatch, capsys, main=optimize_main,
    )  # fmt: skip
    assert status == 2 and "output" in stderr and ".xyz" in stderr
    assert not list(tmp_path.rglob("losses.csv"))  # it stopped before the first step


@pytest.mark.parametrize(
    "md5",
    ["train2017", "train2017:abc", "train2017=xyz", "val2017-" + "0" * 32, "coco=" + "0" * 32],
)
def test_a_malformed_md5_is_refused_before_any_download_and_keeps_partial_data(
    server,
    tmp_path,
    md5,
):
    base, files = server
    partial = tmp_path / "coco" / "train2017.zip.part"
    partial.parent.mkdir()
    partial.write_bytes(b"the first gigabytes")
    result = run_console(
        download_coco.main, ["--root", tmp_path / "coco", "--base-url", base, "--md5", md5]
    )
    assert result.returncode == 2 and "--md5" in result.stderr
    assert files.requests == [] and partial.read_bytes() == b"the first gigabytes"


def test_an_upper_case_md5_is_the_same_checksum(server, tmp_path):
    import hashlib

    base, files = server
    data = _coco_zip(tmp_path)
    files.content["/train2017.zip"] = data
    md5 = hashlib.md5(data).hexdigest().upper()
    result = run_console(
        download_coco.main,
        ["--root", tmp_path / "coco", "--base-url", base, "--md5", f"train2017={md5}"],
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "coco" / "train2017").is_dir()


# --- 6. values that pass Hydra's type check but not their meaning -----------------------------


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("data.image_size=64.5", "data.image_size"),
        ("data.num_workers=1.5", "data.num_workers"),
        ("model.base_channels=2.5", "model.base_channels"),
        ("data.batch_size=true", "data.batch_size"),
    ],
)
def test_numbers_that_must_be_whole_are_one_line_errors(
    tmp_path, monkeypatch, capsys, override, key
):
    monkeypatch.chdir(tmp_path)
    status, stderr = run_hydra_cli(
        [f"style.image={STARRY_NIGHT}", f"data.root={COCO_TRAIN}", "loss.vgg_weights=random",
         override, f"hydra.run.dir={tmp_path / 'run'}"],
        monkeypatch, capsys,
    )  # fmt: skip
    assert status == 2 and "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and key in errors[0], stderr[-1500:]


# --- 5. phone media ----------------------------------------------------------------------------


def _sideways_jpeg(path, orientation: int = 6):
    """A real photo stored as a phone stores a portrait: pixels sideways, EXIF tag to turn."""
    from PIL import Image

    with Image.open(PHOTO) as img:
        exif = Image.Exif()
        exif[0x0112] = orientation
        img.convert("RGB").save(path, exif=exif, quality=95)
        return img.size  # (width, height) as stored


def test_exif_orientation_is_applied_when_reading_and_stylizing(tiny_checkpoint, tmp_path):
    from PIL import Image

    from fastnst.images import load_image, read_image_uint8

    phone = tmp_path / "portrait.jpg"
    width, height = _sideways_jpeg(phone)
    upright = load_image(phone)
    assert upright.shape[-2:] == (width, height)  # turned a quarter: height and width swap
    fast = read_image_uint8(phone)  # the training path, libjpeg straight into a tensor
    assert fast.shape[-2:] == (width, height)
    assert (fast.float() / 255 - upright).abs().mean() < 2 / 255
    out = tmp_path / "portrait_styled.jpg"
    result = run_console(stylize_main, [tiny_checkpoint, phone, "-o", out])
    assert result.returncode == 0, result.stderr
    with Image.open(out) as img:
        assert img.size == (height, width)  # upright, as the phone showed it


def test_an_animated_gif_says_only_its_first_frame_is_done(tiny_checkpoint, tmp_path):
    from PIL import Image

    frames = [Image.new("RGB", (40, 30), c) for c in ("red", "green", "blue")]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100, loop=0)
    result = run_console(stylize_main, [tiny_checkpoint, gif, "-o", tmp_path / "out.png"])
    assert result.returncode == 0, result.stderr
    assert "3 frames; only the first is stylized" in result.stdout
    assert (tmp_path / "out.png").is_file()


def test_sigterm_ends_a_batch_like_ctrl_c_with_143(tiny_checkpoint, tmp_path):
    import signal
    import subprocess
    import time

    from .conftest import STYLIZE

    photos = sorted(COCO_TRAIN.glob("*.jpg"))[:40]
    out = tmp_path / "out"
    process = subprocess.Popen(
        [str(STYLIZE), str(tiny_checkpoint), *map(str, photos), "-o", str(out), "--device",
         "cpu", "--size", "384"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not (out.is_dir() and any(out.glob("*.jpg"))):
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr[-2000:]
    assert "stopped after" in stderr and "--skip-existing" in stderr
    assert "Traceback" not in stderr
    assert not [p for p in out.iterdir() if "partial" in p.name]


# --- 6. one bad input never stops the batch ----------------------------------------------------


def test_a_video_asked_to_become_an_image_fails_alone(tiny_checkpoint, tmp_path):
    pytest.importorskip("av", reason="PyAV is part of the dev set-up")
    from .test_video import make_clip

    clip = tmp_path / "clip.mp4"
    make_clip(clip, frames=3)
    out = tmp_path / "out"
    result = run_console(stylize_main, [tiny_checkpoint, clip, PHOTO, "-o", out, "--ext", ".png"])
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "a video cannot become clip_starry_night.png" in errors[0]
    assert (out / "sailboat_starry_night.png").is_file()  # the other input is done


def test_a_file_name_too_long_for_the_file_system_fails_alone(tiny_checkpoint, tmp_path):
    long = tmp_path / ("x" * 250 + ".jpg")
    long.write_bytes(PHOTO.read_bytes())
    out = tmp_path / "out"
    result = run_console(stylize_main, [tiny_checkpoint, long, PHOTO, "-o", out])
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "xxxx" in errors[0], result.stderr
    assert (out / "sailboat_starry_night.jpg").is_file()


# --- 4. resume continues the run it claims to continue -----------------------------------------


def _tiny_run(tmp, checkpoints, *extra):
    from fastnst.train import train

    from .conftest import compose_config

    cfg = compose_config(
        ["model=small", "data.image_size=32", "data.batch_size=2", "data.val_count=2",
         "trainer.val_check_interval=2", "checkpoint_every=2", f"checkpoint_dir={checkpoints}",
         *extra],
    )  # fmt: skip
    return train(cfg, tmp / "run")


def test_resume_last_in_a_copied_folder_continues_and_updates_last(tmp_path):
    import shutil

    _tiny_run(tmp_path, tmp_path / "a", "trainer.max_steps=4")
    shutil.copytree(tmp_path / "a", tmp_path / "b")  # a copied (or moved) checkpoint folder
    _tiny_run(tmp_path, tmp_path / "b", "trainer.max_steps=8", "resume=last")
    folder = tmp_path / "b" / "starry_night"
    last = torch.load(folder / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 8  # last.ckpt itself moved on: a third resume starts at 8
    assert not list(folder.glob("last-v*.ckpt"))


def test_resume_with_other_settings_is_refused_listing_them(tmp_path, monkeypatch, capsys):
    _tiny_run(tmp_path, tmp_path / "ck", "trainer.max_steps=2")
    monkeypatch.chdir(tmp_path)
    common = [f"style.image={STARRY_NIGHT}", f"data.root={COCO_TRAIN}", "loss.vgg_weights=random",
              "model=small", "data.batch_size=2", "data.val_count=2", "data.num_workers=0",
              "trainer.max_steps=4", f"checkpoint_dir={tmp_path / 'ck'}", "resume=last",
              f"hydra.run.dir={tmp_path / 'run2'}"]  # fmt: skip
    status, stderr = run_hydra_cli(
        [*common, "data.image_size=48", "lr=0.002", "model.base_channels=8"], monkeypatch, capsys
    )
    assert status == 2 and "Traceback" not in stderr
    error = next(line for line in stderr.splitlines() if line.startswith("error:"))
    for difference in ("data.image_size 32 -> 48", "lr 0.001 -> 0.002", "base_channels 16 -> 8"):
        assert difference in error, error
    assert "resume_changes=accept" in error
    # Said which to keep: the new ones (the network's shape must still fit the weights).
    status, stderr = run_hydra_cli(
        [*common, "data.image_size=48", "lr=0.002", "resume_changes=accept"], monkeypatch, capsys
    )
    assert status == 0, stderr[-2000:]


def test_a_checkpoint_folder_in_use_is_refused_and_a_stale_lock_taken_over(tmp_path):
    import os

    from fastnst.errors import ConfigError

    folder = tmp_path / "ck" / "starry_night"
    folder.mkdir(parents=True)
    lock = folder / ".lock"
    import socket

    lock.write_text(f"{os.getpid()}@{socket.gethostname()}")  # a live run (this process)
    with pytest.raises(ConfigError, match="in use by another run"):
        _tiny_run(tmp_path, tmp_path / "ck", "trainer.max_steps=2")
    assert lock.exists()  # not ours to remove
    lock.write_text(f"999999999@{socket.gethostname()}")  # a run that died
    _tiny_run(tmp_path, tmp_path / "ck", "trainer.max_steps=2")
    assert not lock.exists() and (tmp_path / "ck" / "starry_night.ckpt").is_file()


def test_a_variable_frame_rate_video_keeps_every_frames_timestamp(tiny_checkpoint, tmp_path):
    av = pytest.importorskip("av", reason="PyAV is part of the dev set-up")
    from fractions import Fraction

    import numpy as np

    clip, ms = tmp_path / "phone.mp4", Fraction(1, 1000)
    gaps = [20, 33, 50, 16, 40]  # milliseconds between frames, as a phone records
    with av.open(str(clip), "w") as out:
        video = out.add_stream("libx264", rate=30)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        video.time_base = video.codec_context.time_base = ms
        t = 0
        for i in range(15):
            rgb = np.zeros((48, 64, 3), np.uint8)
            rgb[..., 0] = i * 15
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = t, ms
            out.mux(video.encode(frame))
            t += gaps[i % len(gaps)]
        out.mux(video.encode(None))

    def times(path):
        with av.open(str(path)) as container:
            return [round(float(f.pts * f.time_base), 3) for f in container.decode(video=0)]

    styled = tmp_path / "styled.mp4"
    result = run_console(stylize_main, [tiny_checkpoint, clip, "-o", styled])
    assert result.returncode == 0, result.stderr[-2000:]
    assert times(styled) == times(clip) and len(times(clip)) == 15


def test_a_style_image_too_small_for_style_size_null_is_one_line(tmp_path, monkeypatch, capsys):
    from PIL import Image

    tiny = tmp_path / "tiny_painting.png"
    Image.new("RGB", (12, 9), "orange").save(tiny)
    monkeypatch.chdir(tmp_path)
    status, stderr = run_hydra_cli(
        [f"style.image={tiny}", "style.size=null", f"data.root={COCO_TRAIN}",
         "loss.vgg_weights=random", f"hydra.run.dir={tmp_path / 'run'}"],
        monkeypatch, capsys,
    )  # fmt: skip
    assert status == 2 and "Traceback" not in stderr
    error = next(line for line in stderr.splitlines() if line.startswith("error:"))
    assert "style.image is 12x9 px" in error and "style.size" in error


# --- 7. round 3: style strings, ONNX files, videos, training folders, full disks --------------


def test_blend_weights_at_the_float_limit_are_divided_without_overflow():
    from fastnst.inference import parse_styles

    names = ["starry_night", "wave", "mosaic"]
    (choice,) = parse_styles("starry_night=1e308,wave=1e308", names)
    assert torch.allclose(choice.mix, torch.tensor([0.5, 0.5, 0.0]))
    assert choice.label == "starry_night50+wave50"
    (tiny,) = parse_styles("starry_night=1e-320,wave=0", names)  # subnormal: still that style
    assert tiny.label == "starry_night" and torch.equal(tiny.mix, torch.tensor([1.0, 0, 0]))
    for bad in ("starry_night=inf", "wave=nan", "wave=-1e308", "wave=1e309"):
        with pytest.raises(ValueError, match="--style"):
            parse_styles(bad, names)


def test_a_blend_of_a_thousand_styles_gets_a_short_distinct_label():
    from fastnst.inference import parse_styles

    names = [f"s{i}" for i in range(1000)]
    (even,) = parse_styles(",".join(f"{n}=1" for n in names), names)
    (other,) = parse_styles(",".join(f"{n}={1 + (i == 3)}" for i, n in enumerate(names)), names)
    assert torch.allclose(even.mix, torch.full((1000,), 1e-3))
    assert even.label.startswith("blend1000-") and len(even.label) < 30
    assert other.label != even.label


def _renamed_styles(multi_checkpoint, tmp_path, names):
    ckpt = torch.load(multi_checkpoint, map_location="cpu", weights_only=True)
    ckpt["fastnst"]["styles"] = names
    path = tmp_path / "renamed.ckpt"
    torch.save(ckpt, path)
    return path


def test_style_names_that_collide_as_file_names_write_one_file_each(multi_checkpoint, tmp_path):
    ckpt = _renamed_styles(multi_checkpoint, tmp_path, ["a/b", "a:b", "a b"])
    out = tmp_path / "out"
    result = run_console(
        stylize_main, [ckpt, PHOTO, "--style", "all", "--size", 48, "-o", out, "--ext", ".png"]
    )
    assert result.returncode == 0, result.stderr
    written = sorted(p.name for p in out.iterdir())
    assert written == ["sailboat_a_b-2.png", "sailboat_a_b-3.png", "sailboat_a_b.png"]
    pictures = [_pixels(out / name) for name in written]
    assert not torch.equal(pictures[0], pictures[1])  # three styles, not one file thrice


def _pixels(path):
    from fastnst.images import load_image

    return load_image(path)


def _wave_onnx(tiny_checkpoint, tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime is part of the dev set-up")
    from fastnst.export import main as export_main

    path = tmp_path / "tiny.onnx"
    assert export_main([str(tiny_checkpoint), "-o", str(path)]) == 0
    return path


def test_an_onnx_file_with_external_data_is_refused_before_it_is_read(tiny_checkpoint, tmp_path):
    import onnx

    model = onnx.load(str(_wave_onnx(tiny_checkpoint, tmp_path)))
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", "/etc/passwd"), ("offset", "0"), ("length", "4096")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    crafted = tmp_path / "external.onnx"
    onnx.save(model, str(crafted))
    result = run_console(stylize_main, [crafted, PHOTO, "-o", tmp_path / "out.png"])
    _one_line(result, "external.onnx", "refers to data in another file")
    assert not (tmp_path / "out.png").exists()


def test_an_onnx_file_declaring_a_huge_tensor_is_refused(tiny_checkpoint, tmp_path):
    import onnx

    model = onnx.load(str(_wave_onnx(tiny_checkpoint, tmp_path)))
    tensor = model.graph.initializer[0]
    del tensor.dims[:]
    tensor.dims.extend([100_000, 100_000, 10])  # 400 GB declared, a few kB of data
    crafted = tmp_path / "huge.onnx"
    onnx.save(model, str(crafted))
    result = run_console(stylize_main, [crafted, PHOTO, "-o", tmp_path / "out.png"])
    _one_line(result, "huge.onnx", "declares 381470 MB")


def _rotated(src, dst, degrees_clockwise: int = 90) -> None:
    """``src`` (an MP4) with its track's display matrix set to turn it 90 degrees clockwise,
    as a phone stores a portrait clip (the frames stay landscape in the file)."""
    import struct

    assert degrees_clockwise == 90
    data = bytearray(src.read_bytes())
    at = data.find(b"tkhd")
    version = data[at + 4]
    # tkhd: version+flags, times and ids (20 or 32 bytes), reserved 8, layer, group, volume,
    # reserved (2 each), then the 3x3 matrix in 16.16 / 2.30 fixed point.
    matrix_at = at + 8 + (20 if version == 0 else 32) + 16
    data[matrix_at : matrix_at + 36] = struct.pack(">9i", 0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30)
    dst.write_bytes(bytes(data))


def test_a_phone_portrait_video_comes_out_upright(tiny_checkpoint, tmp_path):
    av = pytest.importorskip("av", reason="PyAV is part of the dev set-up")
    import numpy as np

    plain = tmp_path / "plain.mp4"
    with av.open(str(plain), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(3):
            rgb = np.zeros((48, 64, 3), np.uint8)
            rgb[:12] = 255  # a white band along the top of the stored frame
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    portrait = tmp_path / "portrait.mp4"
    _rotated(plain, portrait)
    with av.open(str(portrait)) as clip:
        assert next(clip.decode(video=0)).rotation == -90  # players turn it clockwise
    out = tmp_path / "out"
    result = run_console(stylize_main, [tiny_checkpoint, portrait, "--strength", "0", "-o", out])
    assert result.returncode == 0, result.stderr
    with av.open(str(out / "portrait_starry_night.mp4")) as clip:
        frame = next(clip.decode(video=0))
        rgb = frame.to_ndarray(format="rgb24").astype(float)
    assert frame.rotation == 0 and rgb.shape == (64, 48, 3)  # upright: portrait
    # Turned clockwise, the stored frame's top is on the right.
    assert rgb[:, -8:].mean() > 200 and rgb[:, :8].mean() < 60


@pytest.mark.parametrize("kind", ["audio only", "no frames", "10-bit"])
def test_odd_videos_are_one_line_or_stylized(tiny_checkpoint, tmp_path, kind):
    av = pytest.importorskip("av", reason="PyAV is part of the dev set-up")
    import numpy as np

    clip = tmp_path / "clip.mkv"
    with av.open(str(clip), "w") as out:
        if kind == "audio only":
            sound = out.add_stream("aac", rate=16000)
            sound.layout = "mono"
            for start in range(0, 8192, 1024):
                chunk = av.AudioFrame.from_ndarray(
                    np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
                )
                chunk.sample_rate, chunk.pts = 16000, start
                out.mux(sound.encode(chunk))
            out.mux(sound.encode(None))
        else:
            video = out.add_stream("libx264", rate=10)
            video.width, video.height = 64, 48
            video.pix_fmt = "yuv420p10le" if kind == "10-bit" else "yuv420p"
            out.start_encoding()
            for i in range(3 if kind == "10-bit" else 0):
                rgb = np.full((48, 64, 3), 40 * i + 60, np.uint8)
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                    format=video.pix_fmt
                )
                frame.pts = i
                out.mux(video.encode(frame))
            out.mux(video.encode(None))
    out = tmp_path / "out"
    result = run_console(stylize_main, [tiny_checkpoint, clip, "-o", out])
    if kind == "10-bit":
        assert result.returncode == 0, result.stderr
        assert "3 frames, 64x48" in result.stdout
        return
    _one_line(result, "clip.mkv")
    assert not out.exists() or not any(out.iterdir())


def _train_on(folder, tmp_path, monkeypatch, capsys, *extra):
    return run_hydra_cli(
        [f"style.image={STARRY_NIGHT}", f"data.root={folder}", "loss.vgg_weights=random",
         "model=small", "data.image_size=32", "data.batch_size=2", "data.val_count=1",
         "data.num_workers=0", "trainer.max_steps=2", "trainer.enable_progress_bar=false",
         f"checkpoint_dir={tmp_path / 'ck'}", f"hydra.run.dir={tmp_path / 'run'}", *extra],
        monkeypatch, capsys,
    )  # fmt: skip


def test_a_training_folder_with_one_readable_photo_is_one_line_and_leaves_nothing(
    tmp_path, monkeypatch, capsys
):
    import shutil

    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(sorted(COCO_TRAIN.glob("*.jpg"))[0], photos / "good.jpg")
    (photos / "junk.jpg").write_bytes(b"not a photo")
    (photos / "cut.jpg").write_bytes((photos / "good.jpg").read_bytes()[:3000])
    status, stderr = _train_on(photos, tmp_path, monkeypatch, capsys)
    assert status == 1 and "Traceback" not in stderr, stderr
    assert "could be read" in stderr.splitlines()[-1]
    # No empty checkpoint folder is left (the run's log, naming the skipped files, is).
    assert not (tmp_path / "ck").exists() or not any((tmp_path / "ck").rglob("*"))


def test_one_pixel_photos_train(tmp_path, monkeypatch, capsys):
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(4):
        Image.new("RGB", (1, 1), (60 * i, 90, 200)).save(photos / f"dot{i}.png")
    status, stderr = _train_on(photos, tmp_path, monkeypatch, capsys)
    assert status == 0, stderr
    assert (tmp_path / "ck" / "starry_night.ckpt").is_file()


def test_a_painting_that_declares_20000_by_20000_pixels_is_one_line(tmp_path, monkeypatch, capsys):
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    painting = tmp_path / "huge.png"
    painting.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 99))
        + chunk(b"IEND", b"")
    )  # fmt: skip
    status, stderr = _train_on(COCO_TRAIN, tmp_path, monkeypatch, capsys, f"style.image={painting}")
    assert status == 1 and "Traceback" not in stderr, stderr
    assert "huge.png" in stderr.splitlines()[-1]
    assert not (tmp_path / "ck").exists() or not any((tmp_path / "ck").rglob("*"))


def test_a_full_disk_while_writing_outputs_is_a_line_per_file_and_no_partial_file(
    tiny_checkpoint, tmp_path, monkeypatch
):
    import errno

    from PIL import Image

    def full(self, fp, *args, **kwargs):
        with open(fp, "wb") as f:
            f.write(b"half a picture")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full)
    photos = sorted(COCO_TRAIN.glob("*.jpg"))[:2]
    out = tmp_path / "out"
    result = run_console(stylize_main, [tiny_checkpoint, *photos, "--size", 48, "-o", out])
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 2 and all("No space left on device" in e for e in errors), errors
    assert not list(out.iterdir())  # neither a half file nor a partial one
