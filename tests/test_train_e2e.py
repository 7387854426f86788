"""Train -> checkpoint -> stylize on real photos, in-process from the real Hydra config."""

from __future__ import annotations

import subprocess

import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fastnst.images import load_image
from fastnst.train import build, save_final

from .conftest import CONTENT, STYLIZE, compose_config

pytestmark = pytest.mark.shared_data
STEPS = 80


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    cfg = compose_config(
        [
            "model=small",
            "data.image_size=64",
            "data.batch_size=4",
            f"trainer.max_steps={STEPS}",
            "trainer.val_check_interval=20",
            "trainer.log_every_n_steps=5",
            f"checkpoint_dir={tmp / 'checkpoints'}",
        ]
    )
    module, datamodule, trainer = build(cfg, tmp / "run")
    vgg_before = {k: v.clone() for k, v in module.loss.vgg.state_dict().items()}
    targets_before = [t.clone() for t in module.loss.style_targets()]
    start = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    trainer.fit(module, datamodule=datamodule)
    end = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    final = tmp / "checkpoints" / "starry_night.ckpt"
    save_final(trainer, final)
    return {
        "tmp": tmp,
        "module": module,
        "trainer": trainer,
        "start": start,
        "end": end,
        "vgg_before": vgg_before,
        "targets_before": targets_before,
        "final": final,
    }


def test_style_loss_falls_below_a_quarter_and_below_the_photos(run):
    start, end = run["start"], run["end"]
    print(
        f"val/style {start['val/style']:.5g} -> {end['val/style']:.5g}; photos themselves "
        f"{end['val/style_input']:.5g}; val/content {start['val/content']:.5g} -> "
        f"{end['val/content']:.5g}"
    )
    assert end["val/style"] < start["val/style"] / 4
    assert end["val/style"] < end["val/style_input"]
    assert run["trainer"].global_step == STEPS


def test_vgg_and_style_targets_untouched_by_training(run):
    vgg_after = run["module"].loss.vgg.state_dict()
    assert vgg_after.keys() == run["vgg_before"].keys()
    for k, v in run["vgg_before"].items():
        assert torch.equal(v, vgg_after[k]), k
    for before, after in zip(
        run["targets_before"], run["module"].loss.style_targets(), strict=True
    ):
        assert torch.equal(before, after)


def test_tensorboard_holds_scalars_and_an_image(run):
    events = list((run["tmp"] / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert events
    tags = {"scalars": set(), "images": set()}
    for event_file in events:
        acc = EventAccumulator(str(event_file), size_guidance={"images": 0, "scalars": 0})
        acc.Reload()
        tags["scalars"] |= set(acc.Tags()["scalars"])
        tags["images"] |= set(acc.Tags()["images"])
    for name in ("content", "style", "total"):
        assert f"train/{name}" in tags["scalars"] and f"val/{name}" in tags["scalars"]
    # tv has weight 0 by default: not computed, not logged as a flat line of zeros.
    assert "train/tv" not in tags["scalars"] and "val/tv" not in tags["scalars"]
    assert "val/content_stylized" in tags["images"]


def test_checkpoints_written(run):
    assert run["final"].is_file()
    assert (run["tmp"] / "checkpoints" / "starry_night" / "last.ckpt").is_file()
    ckpt = torch.load(run["final"], map_location="cpu", weights_only=True)
    assert all(k.startswith("net.") for k in ckpt["state_dict"]), "VGG weights were saved"
    assert ckpt["hyper_parameters"]["model"] == {"base_channels": 16, "num_residual_blocks": 3}


def test_stylize_cli_on_a_real_photo(run, tmp_path):
    photo = CONTENT / "tubingen.jpg"
    out = tmp_path / "tubingen_starry.png"
    result = subprocess.run(
        [str(STYLIZE), str(run["final"]), str(photo), "-o", str(out), "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert Image.open(out).size == Image.open(photo).size
    diff = (load_image(out) - load_image(photo)).abs().mean().item()
    assert diff > 0.02, diff
    # The CLI's result is the network's forward pass (up to 8-bit rounding).
    with torch.inference_mode():
        expected = run["module"].net.eval()(load_image(photo).unsqueeze(0))[0]
    assert (load_image(out) - expected).abs().max() <= 1 / 255 + 1e-4
