"""Bad input answered in one line before any work (hostile round 4): checkpoints that declare
more than they hold, the wrong file where the model goes, output paths, the COCO download's
damaged files and settings, and the trainer's settings."""

from __future__ import annotations

import hashlib
import io
import os
import resource
import subprocess
import zipfile

import pytest
import torch
from PIL import Image

from fastnst import checkpoint
from fastnst import coco as download_coco
from fastnst import stylize as stylize_module
from fastnst.download import DownloadError, download
from fastnst.shipped import shipped_models
from fastnst.stylize import main as stylize_main

from .conftest import (
    COCO_TRAIN,
    CONTENT,
    STARRY_NIGHT,
    STYLIZE,
    TINY_RUN,
    compose_config,
    run_console,
    run_hydra_cli,
)
from .test_hostile import _doctored

pytestmark = pytest.mark.shared_data
PHOTO = CONTENT / "sailboat.jpg"


def _one_line(result, code: int, *fragments: str) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


# --- 1. a checkpoint may not ask for more memory than it holds -------------------------------


def test_a_tiny_file_declaring_a_huge_network_is_refused_before_allocating(
    tiny_checkpoint, tmp_path
):
    # 1.4 KB declaring a 4.8 G-parameter network (about 18 GiB) and holding no weights. The
    # process may not allocate more than 3 GiB: building the declared network first fails.
    bomb = _doctored(
        tiny_checkpoint,
        tmp_path,
        name="bomb.ckpt",
        model={"base_channels": 512, "num_residual_blocks": 64},
        state=lambda s: s.clear(),
    )
    assert bomb.stat().st_size < 4096

    def capped() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (3 * 2**30, 3 * 2**30))

    result = subprocess.run(
        [str(STYLIZE), str(bomb), str(PHOTO), "-o", str(tmp_path / "out.jpg")],
        preexec_fn=capped,
        capture_output=True,
        text=True,
        timeout=120,
    )
    _one_line(result, 2, "damaged fastnst checkpoint", "not in the file")
    assert not (tmp_path / "out.jpg").exists()


def test_weights_of_another_shape_than_declared_are_refused_naming_the_tensor(
    tiny_checkpoint, tmp_path
):
    def widen(state):
        key = next(k for k, v in state.items() if v.dim() == 4)
        state[key] = torch.zeros(2 * state[key].shape[0], *state[key].shape[1:])

    bad = _doctored(tiny_checkpoint, tmp_path, name="wide.ckpt", state=widen)
    with pytest.raises(checkpoint.CheckpointError, match=r"in the file, its settings declare"):
        checkpoint.load_with_metadata(bad)


def test_the_app_and_init_refuse_the_bomb_through_the_same_loader(
    tiny_checkpoint, tmp_path, monkeypatch, capsys
):
    from fastnst.app import Library

    bomb = _doctored(
        tiny_checkpoint,
        tmp_path,
        name="bomb.ckpt",
        model={"base_channels": 512, "num_residual_blocks": 64},
        state=lambda s: s.clear(),
    )
    library = Library([bomb], torch.device("cpu"))
    assert not library.models and any("not in the file" in p for p in library.problems)
    monkeypatch.chdir(tmp_path)
    status, stderr = run_hydra_cli(
        [f"style.image={STARRY_NIGHT}", f"data.root={COCO_TRAIN}", "loss.vgg_weights=random",
         f"init={bomb}", f"hydra.run.dir={tmp_path / 'run'}"],
        monkeypatch, capsys,
    )  # fmt: skip
    assert status != 0 and "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "not in the file" in errors[0], stderr[-1500:]


# --- 6. what was given where the model goes ---------------------------------------------------


def _mp4_like(path):
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(64))
    return path


def _text(path):
    path.write_text("root:x:0:0:root:/root:/bin/bash\n")
    return path


class _Code:
    """Pickles as a call: what a hostile checkpoint holds."""

    def __reduce__(self):
        return (os.getcwd, ())


@pytest.mark.parametrize(
    ("make", "fragments"),
    [
        (lambda tmp: "", ["no model given", "starry_night"]),
        (lambda tmp: tmp, ["a folder, not a model file", "model comes first"]),
        (lambda tmp: PHOTO, ["a JPEG image, not a model", "model comes first", "wave"]),
        (lambda tmp: _mp4_like(tmp / "clip.mp4"), ["a video (MP4/MOV), not a model"]),
        (lambda tmp: _text(tmp / "passwd"), ["not a fastnst checkpoint (a file torch.save"]),
        (lambda tmp: "starry_nite", ["did you mean starry_night?"]),
    ],
)
def test_the_wrong_thing_as_the_model_says_what_it_is_and_what_goes_there(
    tmp_path, make, fragments
):
    result = run_console(stylize_main, [make(tmp_path), PHOTO, "-o", tmp_path / "out.jpg"])
    _one_line(result, 2, *fragments)


def test_a_pickle_that_would_run_code_is_refused_without_torchs_advice(tmp_path):
    evil = tmp_path / "evil.ckpt"
    torch.save({"fastnst": _Code()}, evil)
    result = run_console(stylize_main, [evil, PHOTO, "-o", tmp_path / "out.jpg"])
    line = _one_line(result, 2, "refused", "could run code")
    assert "weights_only" not in result.stderr and "trust" not in line


def test_a_file_named_like_a_shipped_model_is_taken_and_said_so(tmp_path):
    assert "wave" in shipped_models()
    (tmp_path / "wave").write_bytes(b"not a model")
    result = run_console(stylize_main, ["wave", PHOTO, "-o", tmp_path / "o.jpg"], cwd=tmp_path)
    _one_line(result, 2, "wave")
    assert "using the file" in result.stderr and "shipped model" in result.stderr
    assert str(shipped_models()["wave"]) in result.stderr


# --- 7. -o checked before anything is loaded --------------------------------------------------


@pytest.fixture
def no_loading(monkeypatch):
    """Fails the test if the model is loaded: the check must come first."""

    def loaded(*args, **kwargs):
        raise AssertionError("the model was loaded before -o was checked")

    monkeypatch.setattr(stylize_module, "load_any", loaded)


def test_several_inputs_and_an_output_file_name_is_refused_not_made_a_folder(tmp_path, no_loading):
    many = tmp_path / "many.jpg"
    result = run_console(stylize_main, ["wave", PHOTO, CONTENT / "chicago.jpg", "-o", many])
    _one_line(result, 2, "2 inputs make 2 outputs", "give a folder")
    assert not many.exists()


@pytest.mark.parametrize(
    ("output", "fragment"),
    [
        ("out.xyz", "cannot write images with extension '.xyz'"),
        ("../a_file/out.jpg", "is a file, not a folder"),
    ],
)
def test_an_output_that_cannot_be_written_is_refused_before_stylizing(
    tmp_path, no_loading, output, fragment
):
    (tmp_path / "a_file").write_text("in the way")
    result = run_console(stylize_main, ["wave", PHOTO, "-o", tmp_path / "new" / output])
    _one_line(result, 2, fragment)
    assert not (tmp_path / "new").exists()  # refused before anything was made


def test_a_video_asked_to_become_an_image_is_refused_before_loading(tmp_path, no_loading):
    clip = _mp4_like(tmp_path / "clip.mp4")
    result = run_console(stylize_main, ["wave", clip, "-o", tmp_path / "clip.png"])
    _one_line(result, 2, "a video cannot become clip.png")


# --- 3. the COCO download ---------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(var, raising=False)


def _bomb_jpeg() -> bytes:
    """A real, small JPEG whose header declares 30000 x 30000 pixels."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 100, 50)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (30000).to_bytes(2, "big") * 2  # height, width
    return bytes(data)


def _sample_args(tmp_path, base, count):
    return ["--root", tmp_path / "coco", "--base-url", base, "--sample", str(count)]


def test_a_sample_photo_declaring_a_billion_pixels_is_deleted_and_fetched_again(server, tmp_path):
    base, files = server
    name = download_coco.image_name(download_coco.SAMPLE_IDS["train2017"][0])
    files.content[f"/train2017/{name}"] = bomb = _bomb_jpeg()
    assert len(bomb) < 1000
    result = run_console(download_coco.main, _sample_args(tmp_path, base, 1))
    _one_line(result, 1, "is not a readable photo", "deleted")
    dest = tmp_path / "coco" / "train2017" / name
    assert not dest.exists()
    files.content[f"/train2017/{name}"] = (COCO_TRAIN / name).read_bytes()
    result = run_console(download_coco.main, _sample_args(tmp_path, base, 1))
    assert result.returncode == 0, result.stderr
    assert dest.read_bytes() == (COCO_TRAIN / name).read_bytes()


@pytest.mark.parametrize("broken", [b"", "truncated"])
def test_a_broken_sample_photo_already_there_is_fetched_again(server, tmp_path, broken):
    base, files = server
    name = download_coco.image_name(download_coco.SAMPLE_IDS["train2017"][0])
    good = (COCO_TRAIN / name).read_bytes()
    files.content[f"/train2017/{name}"] = good
    dest = tmp_path / "coco" / "train2017" / name
    dest.parent.mkdir(parents=True)
    dest.write_bytes(good[: len(good) // 2] if broken == "truncated" else broken)
    result = run_console(download_coco.main, _sample_args(tmp_path, base, 1))
    assert result.returncode == 0, result.stderr
    assert dest.read_bytes() == good and len(files.requests) == 1


def test_a_sample_larger_than_the_sample_is_refused_before_any_download(server, tmp_path):
    base, files = server
    result = run_console(download_coco.main, _sample_args(tmp_path, base, 1000))
    _one_line(result, 2, "--sample 1000", "train2017: 128")
    assert files.requests == []


def _zip_of_photos(tmp_path) -> bytes:
    archive = tmp_path / "made.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(COCO_TRAIN.glob("*.jpg"))[:2]:
            zf.write(p, f"train2017/{p.name}")
    return archive.read_bytes()


def test_a_damaged_zip_with_the_right_md5_leaves_nothing_behind(server, tmp_path):
    base, files = server
    data = bytearray(_zip_of_photos(tmp_path))
    # Damage the first member's compressed bytes, not the directory: zipfile opens it, and
    # inflating it fails (zlib.error) or its CRC does not match (BadZipFile).
    start = 30 + len(f"train2017/{sorted(COCO_TRAIN.glob('*.jpg'))[0].name}")
    data[start + 100 : start + 400] = bytes(300)
    files.content["/train2017.zip"] = bytes(data)
    md5 = hashlib.md5(data).hexdigest()
    root = tmp_path / "coco"
    args = ["--root", root, "--base-url", base, "--md5", f"train2017={md5}"]
    result = run_console(download_coco.main, args)
    _one_line(result, 1, "could not unpack", "damaged")
    assert sorted(p.name for p in root.iterdir()) == []  # no staging folder, no zip


def test_a_zip_already_there_is_checked_before_it_is_unpacked(server, tmp_path):
    base, files = server
    data = _zip_of_photos(tmp_path)
    files.content["/train2017.zip"] = data
    root = tmp_path / "coco"
    root.mkdir()
    (root / "train2017.zip").write_bytes(b"PK not the archive")
    md5 = hashlib.md5(data).hexdigest()
    result = run_console(
        download_coco.main, ["--root", root, "--base-url", base, "--md5", f"train2017={md5}"]
    )
    assert result.returncode == 0, result.stderr
    assert len(list((root / "train2017").iterdir())) == 2 and len(files.requests) == 1


def test_a_root_that_cannot_be_made_is_one_line(server, tmp_path):
    base, files = server
    (tmp_path / "a_file").write_text("in the way")
    result = run_console(
        download_coco.main, ["--root", tmp_path / "a_file" / "coco", "--base-url", base]
    )
    _one_line(result, 2, "--root", "cannot write there")
    assert files.requests == []


def test_a_content_length_that_is_not_a_number_is_read_to_the_end(server, tmp_path):
    base, files = server
    files.content["/a.bin"] = payload = COCO_TRAIN.joinpath(
        download_coco.image_name(9)
    ).read_bytes()
    files.length_header = "lots"
    sha = hashlib.sha256(payload).hexdigest()
    assert download(f"{base}/a.bin", tmp_path / "a.bin", sha).read_bytes() == payload


def test_a_mirror_that_is_not_a_url_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTNST_MIRROR", "not a url")
    with pytest.raises(DownloadError, match="FASTNST_MIRROR='not a url' is not a URL"):
        download("https://example.org/a.bin", tmp_path / "a.bin", None)
    result = run_console(download_coco.main, ["--root", tmp_path / "coco", "--sample", "1"])
    _one_line(result, 1, "FASTNST_MIRROR")


# --- 4. trainer settings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["trainer.val_check_interval=0"], "trainer.val_check_interval"),
        (["trainer.log_every_n_steps=0"], "trainer.log_every_n_steps"),
        (["+trainer.accumulate_grad_batches=0"], "trainer.accumulate_grad_batches"),
        (["+trainer.foo=1"], "trainer.foo"),
        (["+trainer.callbacks=null"], "trainer.callbacks"),
        (["seed=-1"], "seed"),
        (["seed=abc"], "seed"),
        (["trainer.max_time=abc"], "trainer.max_time"),
        (["trainer.max_time=-1"], "trainer.max_time"),
        (["trainer.max_time=00:00:00:00"], "trainer.max_time"),
        (["trainer.max_time=00:25:00:00"], "trainer.max_time"),
        (["lr_schedule=cosine", "trainer.max_steps=-1"], "lr_schedule"),
        (["lr_warmup=50", "trainer.max_steps=50"], "lr_warmup"),
        (["trainer.max_steps=true"], "trainer.max_steps"),
        (["lr=inf"], "lr"),
        (["lr=nan"], "lr"),
        (["style.weight=inf"], "style.weight"),
    ],
)
def test_trainer_settings_that_cannot_work_are_one_line_before_training(
    tmp_path, monkeypatch, capsys, overrides, key
):
    monkeypatch.chdir(tmp_path)
    status, stderr = run_hydra_cli(
        [f"style.image={STARRY_NIGHT}", f"data.root={COCO_TRAIN}", "loss.vgg_weights=random",
         f"checkpoint_dir={tmp_path / 'ck'}", *overrides, f"hydra.run.dir={tmp_path / 'run'}"],
        monkeypatch, capsys,
    )  # fmt: skip
    assert status == 2 and "Traceback" not in stderr, stderr[-1500:]
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {key}"), stderr[-1500:]
    assert not (tmp_path / "ck").exists()


def test_max_time_is_a_documented_setting_that_stops_training(tmp_path, monkeypatch, capsys):
    cfg = compose_config(["trainer.max_time=00:00:00:01"])
    assert cfg.trainer.max_time == "00:00:00:01"  # no + needed: conf/trainer has it
    monkeypatch.chdir(tmp_path)
    status, stderr = run_hydra_cli(
        [f"style.image={STARRY_NIGHT}", f"data.root={COCO_TRAIN}", "loss.vgg_weights=random",
         *TINY_RUN, "data.num_workers=0", "trainer.max_steps=100000",
         "trainer.max_time=00:00:00:01", "trainer.enable_progress_bar=false",
         f"checkpoint_dir={tmp_path / 'ck'}", f"hydra.run.dir={tmp_path / 'run'}"],
        monkeypatch, capsys,
    )  # fmt: skip
    assert status == 0, stderr[-1500:]
    step = torch.load(tmp_path / "ck" / "starry_night.ckpt", weights_only=True)["global_step"]
    assert 1 <= step < 100000


def test_a_run_refused_after_the_output_check_leaves_no_folder(tmp_path):
    out = tmp_path / "new" / "styled"
    result = run_console(stylize_main, ["no_such_model", PHOTO, CONTENT / "chicago.jpg", "-o", out])
    _one_line(result, 2, "no_such_model")
    assert not (tmp_path / "new").exists()


def test_several_styles_to_standard_output_are_refused(multi_checkpoint, tmp_path):
    result = run_console(stylize_main, [multi_checkpoint, PHOTO, "--style", "all", "-o", "-"])
    _one_line(result, 2, "one output per style", "standard output takes one image")
