"""One recipe for the loss of a set of styles: training, optimisation and every script build it
with fastnst.style_loss, and a checkpoint's own training loss is rebuilt from it exactly."""

from __future__ import annotations

import pytest
import torch

from fastnst.errors import CheckpointError
from fastnst.style_loss import checkpoint_loss, checkpoint_settings, score_photos, style_loss
from fastnst.train import train

from .conftest import CONTENT, STARRY_NIGHT, TINY_RUN, compose_config

pytestmark = pytest.mark.shared_data


def _targets(loss) -> list[torch.Tensor]:
    return [t.clone() for t in loss.style_targets()]


@pytest.fixture(scope="module")
def scaled_run(tmp_path_factory):
    """A tiny run whose painting counts at two scales (style.scales)."""
    tmp = tmp_path_factory.mktemp("scaled")
    cfg = compose_config(
        [*TINY_RUN, "style.size=64", "style.scales=[1.0,0.5]", f"checkpoint_dir={tmp / 'ck'}"]
    )
    return train(cfg, tmp / "run"), cfg


def test_a_network_trained_with_scales_is_scored_against_its_own_targets(scaled_run):
    ckpt, cfg = scaled_run
    rebuilt, style = checkpoint_loss(ckpt)
    assert style["scales"] == [1.0, 0.5]
    # The targets training used: the module's own loss, built from the same settings.
    from fastnst.train import build_module

    module = build_module(cfg)
    for a, b in zip(_targets(rebuilt), _targets(module.loss), strict=True):
        assert torch.equal(a, b)
    # Not the targets of the painting at one scale (what the drifted copies computed).
    one_scale = style_loss([{**style, "scales": None}], checkpoint_settings(ckpt)[1])
    assert any(
        not torch.allclose(a, b)
        for a, b in zip(_targets(rebuilt), _targets(one_scale), strict=True)
    )


def test_the_first_checkpoint_layout_is_read(scaled_run, tmp_path):
    ckpt = torch.load(scaled_run[0], map_location="cpu", weights_only=True)
    style = ckpt["hyper_parameters"].pop("style")
    ckpt["hyper_parameters"].update(
        style_name=style["name"], style_image=style["image"], style_size=64, style_weight=3.0
    )
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    (rebuilt,), loss = checkpoint_settings(old)
    assert rebuilt == {"name": "starry_night", "image": str(STARRY_NIGHT), "size": 64,
                       "weight": 3.0}  # fmt: skip
    assert loss == ckpt["hyper_parameters"]["loss"]


def test_a_multi_style_checkpoint_names_its_styles(tiny_multi_run):
    styles, _ = checkpoint_settings(tiny_multi_run[0])
    assert [s["name"] for s in styles] == ["starry_night", "wave", "mosaic"]
    with pytest.raises(CheckpointError, match="several styles"):
        checkpoint_loss(tiny_multi_run[0])
    loss, style = checkpoint_loss(tiny_multi_run[0], style="wave")
    assert style["name"] == "wave" and loss.num_styles == 1


def test_scores_are_clamped_and_count_the_untouched_photo(scaled_run):
    loss, _ = checkpoint_loss(scaled_run[0])
    photo = CONTENT / "sailboat.jpg"
    (beyond,) = score_photos(lambda x: x * 4 - 1, loss, [photo], 48)  # far outside [0, 1]
    (clamped,) = score_photos(lambda x: (x * 4 - 1).clamp(0, 1), loss, [photo], 48)
    assert beyond == clamped
    (same,) = score_photos(lambda x: x, loss, [photo], 48)
    assert same["content"] == 0 and same["style"] == pytest.approx(same["photo_style"])
