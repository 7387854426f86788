"""Every file of every config group composes with the real conf/ and builds its objects."""

from __future__ import annotations

import inspect

import pytest
import pytorch_lightning as pl
import torch

from fastnst.data import ContentDataModule
from fastnst.jobs import CONF_DIR
from fastnst.losses import PerceptualLoss
from fastnst.style_loss import STYLE_DEFAULTS
from fastnst.train import build
from fastnst.transformer import TransformerNet

from .conftest import COCO_TRAIN, STYLES, compose_config, run_hydra_cli

pytestmark = pytest.mark.shared_data
GROUPS = ("style", "data", "model", "loss", "trainer")
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF_DIR / g).glob("*.yaml"))]
# Trainer options that need hardware this machine may not have.
NEEDS_CUDA = {("trainer", "gpu")}


def test_each_group_has_options():
    for group in GROUPS:
        assert any(g == group for g, _ in OPTIONS), group


@pytest.mark.parametrize(
    ("group", "option"),
    [
        pytest.param(g, o, marks=pytest.mark.gpu) if (g, o) in NEEDS_CUDA else (g, o)
        for g, o in OPTIONS
    ],
)
def test_option_composes_and_builds(group, option, tmp_path):
    cfg = compose_config(
        [f"{group}={option}", f"checkpoint_dir={tmp_path}", "loss.vgg_weights=random"]
        + ([f"style.image={STYLES / (option + '.jpg')}"] if group == "style" else [])
        + ([f"data.root={COCO_TRAIN}"] if group == "data" else [])
    )
    module, datamodule, trainer = build(cfg, tmp_path)
    assert isinstance(module.net, TransformerNet) and isinstance(module.loss, PerceptualLoss)
    assert isinstance(datamodule, ContentDataModule)
    assert isinstance(trainer, pl.Trainer)
    assert module.hparams.style["name"] == module.style_name == cfg.style.name
    assert trainer.max_steps == cfg.trainer.max_steps


def test_config_keys_are_constructor_arguments():
    def params(f):
        return set(inspect.signature(f).parameters)

    for group, target in [
        ("model", TransformerNet),
        ("data", ContentDataModule),
        ("trainer", pl.Trainer),
    ]:
        for path in (CONF_DIR / group).glob("*.yaml"):
            cfg = compose_config([f"{group}={path.stem}"])
            assert set(cfg[group]) <= params(target), (group, path.stem)
    loss_keys = set(compose_config()["loss"])
    assert loss_keys <= params(PerceptualLoss) - {"style_image", "style_weight"}
    # The module takes the style group whole.
    for path in (CONF_DIR / "style").glob("*.yaml"):
        assert set(compose_config([f"style={path.stem}"])["style"]) == set(STYLE_DEFAULTS)


def test_layer_names_and_taps_of_the_defaults():
    cfg = compose_config()
    assert list(cfg.loss.style_layers) == ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    assert list(cfg.loss.content_layers) == ["relu4_2"]
    assert cfg.loss.tap == "relu" and cfg.loss.style_stat == "gram"
    assert cfg.loss.vgg_weights == "random"  # the test override
    assert compose_config(["loss.vgg_weights=imagenet"]).loss.vgg_weights == "imagenet"


def test_cuda_trainer_option_targets_a_gpu():
    cfg = compose_config(["trainer=gpu"])
    assert cfg.trainer.accelerator == "gpu" and "mixed" in cfg.trainer.precision
    if not torch.cuda.is_available():
        with pytest.raises(Exception, match="(?i)gpu|cuda"):
            build(cfg, CONF_DIR.parent / "outputs" / "unused")


def test_cli_missing_coco_is_one_clear_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status, stderr = run_hydra_cli(
        [f"data.root={tmp_path / 'coco' / 'train2017'}"], monkeypatch, capsys
    )
    assert status == 2
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "train2017.zip" in errors[0] and "data.root=" in errors[0]


def test_cli_missing_style_image_is_one_clear_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status, stderr = run_hydra_cli(
        [f"data.root={tmp_path}", f"style.image={tmp_path / 'nope.jpg'}"], monkeypatch, capsys
    )
    assert status == 2 and "Traceback" not in stderr
    assert "nope.jpg does not exist" in stderr
