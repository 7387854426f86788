"""What real runs meet: bad files, NaN losses, bad overrides, malicious checkpoints."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fastnst.data import ContentDataModule
from fastnst.errors import DataNotFoundError, NonFiniteLossError
from fastnst.stylize import main as stylize_main
from fastnst.train import train

from .conftest import (
    COCO_TRAIN,
    CONTENT,
    SHARED_MODELS_VGG16,
    STARRY_NIGHT,
    compose_config,
    run_console,
    run_hydra_cli,
)

pytestmark = pytest.mark.shared_data

COCO_FILES = sorted(COCO_TRAIN.glob("*.jpg"))


def _salt(folder: Path) -> list[str]:
    """Copy 12 real photos and add every kind of bad or odd file; return the bad names."""
    folder.mkdir(parents=True)
    for src in COCO_FILES[:12]:
        shutil.copy(src, folder / src.name)
    photo = Image.open(COCO_FILES[12]).convert("RGB")
    (folder / "zero.jpg").write_bytes(b"")
    data = COCO_FILES[13].read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "notes.jpg").write_text("a text file named .jpg")
    photo.convert("CMYK").save(folder / "cmyk.jpg")
    gray16 = np.asarray(photo.convert("L")).astype(np.uint16) * 257
    Image.fromarray(gray16).save(folder / "gray16.png")
    photo.resize((5, 3)).save(folder / "tiny.png")  # smaller than the crop
    photo.resize((1000, 1000)).save(folder / "huge.png")  # a "decompression bomb" (see below)
    return ["huge.png", "notes.jpg", "truncated.jpg", "zero.jpg"]


def test_salted_folder_trains_and_reports_bad_files(tmp_path, monkeypatch, capsys):
    bad = _salt(tmp_path / "photos")
    # Pillow refuses images over twice this many pixels; 1000x1000 fakes a bomb cheaply.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 450_000)
    cfg = compose_config(
        [
            f"data.root={tmp_path / 'photos'}",
            f"data.val_root={COCO_TRAIN}",
            "data.val_count=2",
            "model=small",
            "data.image_size=32",
            "data.batch_size=4",
            "trainer.max_steps=8",  # two epochs of the 16 usable-or-not files
            "trainer.val_check_interval=4",
            f"checkpoint_dir={tmp_path / 'ck'}",
        ]
    )
    final = train(cfg, tmp_path / "run")
    assert final.is_file()
    out = capsys.readouterr().out
    assert "Skipped 4 unreadable image file(s)" in out
    for name in bad:
        assert name in out
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    acc.Reload()
    assert [e.value for e in acc.Scalars("data/skipped_files")] == [4.0]


def test_folder_with_no_usable_image_fails_fast(tmp_path):
    folder = tmp_path / "junk"
    folder.mkdir()
    for i in range(20):
        (folder / f"{i}.jpg").write_text("not an image")
    dm = ContentDataModule(str(folder), num_workers=0, val_count=2)
    with pytest.raises(DataNotFoundError, match="none of the 18 image files"):
        dm.setup("fit")


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    from fastnst import losses

    real_terms = losses.PerceptualLoss.terms
    calls = {"n": 0}

    def poisoned(self, output, targets, *args, **kwargs):
        terms = real_terms(self, output, targets, *args, **kwargs)
        if torch.is_grad_enabled():  # training steps only
            calls["n"] += 1
            if calls["n"] == 8:  # the 8th training step is step 7 (0-based)
                terms = {k: v * float("nan") for k, v in terms.items()}
        return terms

    monkeypatch.setattr(losses.PerceptualLoss, "terms", poisoned)
    cfg = compose_config(
        [
            "model=small",
            "data.image_size=32",
            "data.batch_size=2",
            "trainer.max_steps=30",
            "checkpoint_every=5",
            f"checkpoint_dir={tmp_path / 'ck'}",
        ]
    )
    with pytest.raises(NonFiniteLossError) as info:
        train(cfg, tmp_path / "run")
    message = str(info.value)
    assert "at step 7" in message and "last.ckpt" in message
    folder = tmp_path / "ck" / "starry_night"
    assert sorted(p.name for p in folder.iterdir()) == ["last.ckpt", "step0000005.ckpt"]
    last = torch.load(folder / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 5
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values())
    assert not (tmp_path / "ck" / "starry_night.ckpt").exists()


BAD_OVERRIDES = [
    ("loss.style_layers=[relu1_1,relu9_9]", "relu9_9"),
    ("loss.content_layers=[conv4_2x]", "conv4_2x"),
    ("loss.content_weight=-1", "loss.content_weight must be a number >= 0"),
    ("loss.style_layer_weights=[1,1,1,1,-2]", "style_layer_weights must be numbers >= 0"),
    ("loss.style_layer_weights=[1,1]", "2 entries for 5 style layers"),
    ("loss.tap=sigmoid", "loss.tap must be one of"),
    ("loss.style_stat=mean", "loss.style_stat must be one of"),
    ("loss.vgg_weights=/nowhere/vgg.pth", "neither 'imagenet', 'random' nor a file"),
    ("loss.network=vgg11", "loss.network must be one of ('vgg19', 'vgg16')"),
    (
        "loss.network=vgg16 loss.style_layers=[relu1_1,relu5_4] loss.style_layer_weights=[1,1]",
        "loss.style_layers: vgg16 has no layer(s) ['relu5_4'] (relu5_4 is a layer of vgg19)",
    ),
    ("loss=johnson16 loss.content_layers=[relu3_4]", "vgg16 has no layer(s) ['relu3_4']"),
    ("loss.normalize=maybe", "loss.normalize must be true or false"),
    ("style.weight=-5", "style.weight must be a number >= 0"),
    ("style.image=/nowhere/painting.jpg", "/nowhere/painting.jpg does not exist"),
    ("data.image_size=8", "data.image_size must be a number >= 16"),
    ("data.batch_size=0", "data.batch_size must be a number >= 1"),
    ("data.root=/nowhere/coco", "data.root: /nowhere/coco is not a folder"),
    (f"data.cache_dir={STARRY_NIGHT}", "is a file, not a folder"),
    ("model.base_channels=0", "model.base_channels must be a number >= 1"),
    ("trainer.accelerator=gpu", "no CUDA device is available"),
    ("lr=0", "lr must be a number > 0"),
    ("resume=/nowhere/last.ckpt", "/nowhere/last.ckpt does not exist"),
]


@pytest.mark.parametrize(("override", "message"), BAD_OVERRIDES, ids=[o for o, _ in BAD_OVERRIDES])
def test_bad_override_is_one_line_with_exit_status_2(
    tmp_path, monkeypatch, capsys, override, message
):
    if override == "trainer.accelerator=gpu" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU, so the override is valid here")
    monkeypatch.chdir(tmp_path)
    status, stderr = run_hydra_cli(
        [f"style.image={STARRY_NIGHT}", f"data.root={COCO_TRAIN}", "loss.vgg_weights=random",
         *override.split(), f"hydra.run.dir={tmp_path / 'run'}"],
        monkeypatch, capsys,
    )  # fmt: skip
    assert status == 2, stderr[-1500:]
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], stderr[-1500:]
    # Failed before any heavy work: no checkpoint folder, no TensorBoard run.
    assert not (tmp_path / "checkpoints").exists()
    assert not (tmp_path / "run" / "tensorboard").exists()


@pytest.mark.shared_models
def test_weights_file_of_the_other_network_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status, stderr = run_hydra_cli(
        [f"style.image={STARRY_NIGHT}", f"data.root={COCO_TRAIN}",
         f"loss.vgg_weights={SHARED_MODELS_VGG16}", f"hydra.run.dir={tmp_path / 'run'}"],
        monkeypatch, capsys,
    )  # fmt: skip
    assert status == 1 and "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr[-1500:]
    assert "holds VGG16 weights, but the loss network is vgg19" in errors[0]
    assert not (tmp_path / "checkpoints").exists()


class _Exploit:
    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_malicious_checkpoint_does_not_execute(tmp_path):
    marker = tmp_path / "pwned"
    exploit = _Exploit()
    exploit.marker = str(marker)
    evil = tmp_path / "evil.ckpt"
    with open(evil, "wb") as f:
        pickle.dump({"fastnst": {"kind": "fastnst.TransformerNet"}, "x": exploit}, f)
    # The file is a working exploit: an unrestricted unpickler runs it.
    with open(evil, "rb") as f:
        pickle.load(f)
    assert marker.exists()
    marker.unlink()
    # In this process: an unpickler that ran code would touch the marker here too.
    result = run_console(stylize_main, [evil, CONTENT / "sailboat.jpg", "-o", tmp_path / "o.png"])
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "refused" in result.stderr and "could run code" in result.stderr
    assert not marker.exists(), "loading the checkpoint ran code"


def test_a_full_disk_while_checkpointing_keeps_the_last_complete_one(tmp_path, monkeypatch, capsys):
    """ENOSPC while last.ckpt is rewritten at step 4 (Lightning writes step0000002.ckpt,
    last.ckpt, step0000004.ckpt, then last.ckpt again): one line, exit 1, and last.ckpt is
    still step 2's (Lightning's own writer would have truncated it), no partial file beside."""
    import errno

    from fastnst import train as train_module

    saves = []
    write = train_module.TorchCheckpointIO.save_checkpoint

    def full_after_one(self, checkpoint, path, storage_options=None):
        saves.append(checkpoint["global_step"])
        if len(saves) == 4:
            Path(path).write_bytes(b"half a checkpoint")  # what a full disk leaves
            raise OSError(errno.ENOSPC, "No space left on device")
        write(self, checkpoint, path, storage_options)

    monkeypatch.setattr(train_module.TorchCheckpointIO, "save_checkpoint", full_after_one)
    status, stderr = run_hydra_cli(
        [f"style.image={STARRY_NIGHT}", f"data.root={COCO_TRAIN}", "loss.vgg_weights=random",
         "model=small", "data.image_size=32", "data.batch_size=2", "data.val_count=2",
         "data.num_workers=0", "trainer.max_steps=6", "checkpoint_every=2",
         "trainer.enable_progress_bar=false", f"checkpoint_dir={tmp_path / 'ck'}",
         f"hydra.run.dir={tmp_path / 'run'}"],
        monkeypatch, capsys,
    )  # fmt: skip
    assert status == 1, stderr
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0], stderr
    folder = tmp_path / "ck" / "starry_night"
    assert "resume=last" in errors[0] and str(folder / "last.ckpt") in errors[0]
    ckpt = torch.load(folder / "last.ckpt", map_location="cpu", weights_only=True)
    assert saves == [2, 2, 4, 4] and ckpt["global_step"] == 2
    assert not [p.name for p in folder.iterdir() if "partial" in p.name or p.name == ".lock"]
