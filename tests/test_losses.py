from __future__ import annotations

import pytest
import torch

from fastnst.images import load_image
from fastnst.losses import (
    DEFAULT_CONTENT_LAYERS,
    DEFAULT_STYLE_LAYERS,
    PerceptualLoss,
    covariance_matrix,
    gram_matrix,
    total_variation,
)

from .conftest import STARRY_NIGHT

# One image, two channels, 2x2 pixels: channel a = [1, 2, 3, 4], channel b = [0, 1, 1, 0].
TINY = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [1.0, 0.0]]]])


def test_gram_by_hand():
    # a.a = 1+4+9+16 = 30, a.b = 2+3 = 5, b.b = 2; divided by C*H*W = 8.
    expected = torch.tensor([[[30.0, 5.0], [5.0, 2.0]]]) / 8
    assert torch.allclose(gram_matrix(TINY), expected)


def test_covariance_by_hand():
    # Means 2.5 and 0.5; centred a = [-1.5, -0.5, 0.5, 1.5], b = [-0.5, 0.5, 0.5, -0.5]:
    # a.a = 5, a.b = 0.75 - 0.25 + 0.25 - 0.75 = 0, b.b = 1; divided by 8.
    expected = torch.tensor([[[5.0, 0.0], [0.0, 1.0]]]) / 8
    assert torch.allclose(covariance_matrix(TINY), expected)


def test_gram_stays_fp32_under_autocast():
    x = torch.rand(2, 8, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        g = gram_matrix(x.bfloat16())
    assert g.dtype == torch.float32
    assert torch.allclose(g, gram_matrix(x.bfloat16().float()))


def test_total_variation_by_hand():
    # Vertical differences: |3-1|, |4-2| -> mean 2 ; horizontal: |2-1|, |4-3| -> mean 1.
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    assert total_variation(x).item() == pytest.approx(3.0)
    assert total_variation(torch.ones(1, 3, 5, 5)).item() == 0.0


@pytest.fixture(scope="module")
def loss() -> PerceptualLoss:
    return PerceptualLoss(load_image(STARRY_NIGHT, 64), vgg_weights="random", tv_weight=1.0)


def test_defaults_are_the_origin_documents_layers(loss):
    assert DEFAULT_STYLE_LAYERS == ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    assert DEFAULT_CONTENT_LAYERS == ("relu4_2",)
    conv = PerceptualLoss(load_image(STARRY_NIGHT, 32), vgg_weights="random", tap="conv")
    assert conv.style_layers == ["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"]
    assert conv.content_layers == ["conv4_2"]


def test_style_targets_and_content_features_carry_no_grad(loss):
    for target in loss.style_targets():
        assert not target.requires_grad and target.grad_fn is None
    content = torch.rand(2, 3, 32, 32, requires_grad=True)
    feats = loss.content_targets(content)
    assert all(not f.requires_grad and f.grad_fn is None for f in feats.values())


def test_style_targets_are_not_saved_with_the_weights(loss):
    assert not any(k.startswith("style_target") for k in loss.state_dict())


def test_terms_are_named_weighted_and_sum(loss):
    content = torch.rand(2, 3, 32, 32)
    output = torch.rand(2, 3, 32, 32, requires_grad=True)
    terms = loss(output, content)
    assert set(terms) == {"content", "style", "tv", "total"}
    assert torch.allclose(terms["total"], terms["content"] + terms["style"] + terms["tv"])
    terms["total"].backward()
    assert output.grad is not None and output.grad.abs().sum() > 0
    assert loss(content, content)["content"].item() == 0.0


def test_gram_and_covariance_give_different_style_terms():
    style = load_image(STARRY_NIGHT, 48)
    x = torch.rand(1, 3, 32, 32)
    gram = PerceptualLoss(style, vgg_weights="random", style_stat="gram")(x, x)["style"]
    cov = PerceptualLoss(style, vgg_weights="random", style_stat="covariance")(x, x)["style"]
    assert not torch.allclose(gram, cov)


def test_style_layer_weights_scale_each_layer():
    style = load_image(STARRY_NIGHT, 48)
    x = torch.rand(1, 3, 32, 32)
    one = PerceptualLoss(style, ["relu1_1"], vgg_weights="random")(x, x)["style"]
    three = PerceptualLoss(style, ["relu1_1"], style_layer_weights=[3.0], vgg_weights="random")
    assert torch.allclose(three(x, x)["style"], 3 * one)
    with pytest.raises(ValueError, match="style_layer_weights"):
        PerceptualLoss(style, ["relu1_1"], style_layer_weights=[1.0, 2.0], vgg_weights="random")
    with pytest.raises(ValueError, match="style_stat"):
        PerceptualLoss(style, vgg_weights="random", style_stat="mean")
