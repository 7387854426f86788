"""Checks with the real ImageNet VGG16 features (../shared/models/vgg16_features.pth).

A random VGG says nothing about what a network trained on ImageNet sees; these tests would fail
on a loss that is broken in a way random features hide (wrong layers, wrong normalisation, a
sign error, targets that drift).
"""

from __future__ import annotations

import pytest
import torch

from fastnst.images import load_image
from fastnst.losses import PerceptualLoss
from fastnst.optimize import optimize_image
from fastnst.train import build

from .conftest import CONTENT, SHARED_MODELS_VGG16, STARRY_NIGHT, STYLES, compose_config

pytestmark = [pytest.mark.shared_data, pytest.mark.shared_models]
REAL = ["loss.network=vgg16", f"loss.vgg_weights={SHARED_MODELS_VGG16}"]


@pytest.fixture(scope="module")
def real_loss() -> PerceptualLoss:
    return PerceptualLoss(
        load_image(STARRY_NIGHT, 128), network="vgg16", vgg_weights=str(SHARED_MODELS_VGG16)
    )


def test_a_few_optimisation_steps_lower_the_real_style_loss_by_a_clear_factor(real_loss):
    photo = load_image(CONTENT / "tubingen.jpg", 96).unsqueeze(0)
    result = optimize_image(real_loss, photo, 15, "adam", progress=False, log_every=15)
    start, end = result.history[0].terms, result.history[-1].terms
    assert start["content"] == 0.0
    assert end["style"] < start["style"] / 3, (start, end)
    # The content term now pulls back, but has not taken over: the balance of the default
    # weights keeps both terms of the same order.
    assert 0.05 < end["content"] / end["style"] < 5, end


def test_real_style_loss_ranks_paintings_against_the_painting(real_loss):
    # The painting itself scores near zero; another painting and a photo score far higher.
    starry = load_image(STARRY_NIGHT, 128).unsqueeze(0)
    other = load_image(STYLES / "mondrian.jpg", 128).unsqueeze(0)
    photo = load_image(CONTENT / "tubingen.jpg", 128).unsqueeze(0)
    with torch.no_grad():
        own, mondrian, tubingen = (real_loss(x, x)["style"].item() for x in (starry, other, photo))
    assert own < 1e-6
    assert mondrian > 0.5 and tubingen > 0.5


def test_short_training_brings_held_out_style_well_below_the_photos(tmp_path):
    cfg = compose_config(
        REAL
        + [
            "model=small",
            "data.image_size=64",
            "data.batch_size=4",
            f"data.val_root={CONTENT}",
            "data.val_count=4",
            "trainer.max_steps=40",
            "trainer.val_check_interval=40",
            "trainer.log_every_n_steps=10",
            "trainer.enable_model_summary=false",
            f"checkpoint_dir={tmp_path / 'checkpoints'}",
        ]
    )
    module, datamodule, trainer = build(cfg, tmp_path / "run")
    trainer.fit(module, datamodule=datamodule)
    end = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    print(
        f"held-out val/style {end['val/style']:.4g} (photos themselves "
        f"{end['val/style_input']:.4g}), val/content {end['val/content']:.4g}"
    )
    assert end["val/style"] < 0.5 * end["val/style_input"]
    assert end["val/content"] < end["val/style_input"]
