from __future__ import annotations

import pytest
import torch

from fastnst.errors import ConfigError
from fastnst.losses import (
    DEFAULT_CONTENT_LAYERS,
    DEFAULT_STYLE_LAYERS,
    PerceptualLoss,
    covariance_matrix,
    gram_matrix,
    mean_std,
    total_variation,
)
from fastnst.vgg import VGGFeatures, build_vgg_features

# One image, two channels, 2x2 pixels: channel a = [1, 2, 3, 4], channel b = [0, 1, 1, 0].
TINY = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [1.0, 0.0]]]])


def painting(size: int) -> torch.Tensor:
    """A seeded stand-in painting (size x size): stripes and blobs of colour plus noise.
    These tests check the loss arithmetic, which holds for any image."""
    generator = torch.Generator().manual_seed(size)
    y = torch.linspace(0, 6.28, size)[:, None]
    x = torch.linspace(0, 6.28, size)[None, :]
    waves = torch.stack([torch.sin(3 * x + y), torch.cos(2 * y - x), torch.sin(x * y / 4)])
    return (0.5 + 0.35 * waves + 0.15 * torch.rand(3, size, size, generator=generator)).clamp(0, 1)


def test_gram_by_hand():
    # a.a = 1+4+9+16 = 30, a.b = 2+3 = 5, b.b = 2; divided by C*H*W = 8.
    expected = torch.tensor([[[30.0, 5.0], [5.0, 2.0]]]) / 8
    assert torch.allclose(gram_matrix(TINY), expected)


def test_covariance_by_hand():
    # Means 2.5 and 0.5; centred a = [-1.5, -0.5, 0.5, 1.5], b = [-0.5, 0.5, 0.5, -0.5]:
    # a.a = 5, a.b = 0.75 - 0.25 + 0.25 - 0.75 = 0, b.b = 1; divided by 8.
    expected = torch.tensor([[[5.0, 0.0], [0.0, 1.0]]]) / 8
    assert torch.allclose(covariance_matrix(TINY), expected)


def test_mean_std_by_hand():
    # a = [1, 2, 3, 4]: mean 2.5, population variance (2.25+0.25+0.25+2.25)/4 = 1.25;
    # b = [0, 1, 1, 0]: mean 0.5, variance 0.25.
    expected = torch.tensor([[[2.5, 0.5], [1.25**0.5, 0.5]]])
    assert torch.allclose(mean_std(TINY), expected, atol=1e-6)


def test_mean_std_loss_has_finite_gradient_on_constant_channels():
    # A flat grey image leaves some deep channels constant (and dead ReLUs): a plain std
    # would give 0/0 gradients there.
    style = painting(64)
    loss = PerceptualLoss(style, vgg_weights="random", style_stat="meanstd")
    x = torch.full((1, 3, 64, 64), 0.5, requires_grad=True)
    loss(x, x.detach())["total"].backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


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
    return PerceptualLoss(painting(64), vgg_weights="random", tv_weight=1.0)


def test_defaults_are_the_origin_documents_layers(loss):
    assert DEFAULT_STYLE_LAYERS == ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    assert DEFAULT_CONTENT_LAYERS == ("relu4_2",)
    conv = PerceptualLoss(painting(32), vgg_weights="random", tap="conv")
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
    style = painting(48)
    x = torch.rand(1, 3, 32, 32)
    gram = PerceptualLoss(style, vgg_weights="random", style_stat="gram")(x, x)["style"]
    cov = PerceptualLoss(style, vgg_weights="random", style_stat="covariance")(x, x)["style"]
    assert not torch.allclose(gram, cov)


def test_style_layer_weights_scale_each_layer():
    style = painting(48)
    x = torch.rand(1, 3, 32, 32)
    one = PerceptualLoss(style, ["relu1_1"], vgg_weights="random")(x, x)["style"]
    three = PerceptualLoss(style, ["relu1_1"], style_layer_weights=[3.0], vgg_weights="random")
    assert torch.allclose(three(x, x)["style"], 3 * one)
    with pytest.raises(ValueError, match="style_layer_weights"):
        PerceptualLoss(style, ["relu1_1"], style_layer_weights=[1.0, 2.0], vgg_weights="random")
    with pytest.raises(ValueError, match="style_stat"):
        PerceptualLoss(style, vgg_weights="random", style_stat="mean")


def _scaled_vgg_files(tmp_path, scale: float):
    """Two VGG19 weight files whose activations differ by ``scale`` at every layer.

    conv1_1 (weight and bias) and every later bias times ``scale``: ReLU, max-pool and a conv
    without its bias are positively homogeneous, so each activation is ``scale`` times larger.
    """
    state = build_vgg_features("vgg19", "random", seed=5).state_dict()
    # Random VGG biases start at zero; give them values so that scaling them matters.
    generator = torch.Generator().manual_seed(0)
    for k, v in state.items():
        if k.endswith("bias"):
            state[k] = torch.rand(v.shape, generator=generator) * 0.1
    scaled = {k: v * scale if k == "0.weight" or k.endswith("bias") else v
              for k, v in state.items()}  # fmt: skip
    paths = tmp_path / "plain.pth", tmp_path / "scaled.pth"
    torch.save(state, paths[0])
    torch.save(scaled, paths[1])
    return paths


def test_normalized_terms_do_not_depend_on_the_activation_scale(tmp_path):
    plain, scaled = _scaled_vgg_files(tmp_path, 10.0)
    style = painting(48)
    torch.manual_seed(1)
    x, y = torch.rand(2, 3, 40, 40), torch.rand(2, 3, 40, 40)
    features = [VGGFeatures(["relu3_1"], weights=str(p))(x)["relu3_1"] for p in (plain, scaled)]
    assert torch.allclose(features[1], 10 * features[0], rtol=1e-4, atol=1e-4)

    def terms(path, normalize):
        loss = PerceptualLoss(style, vgg_weights=str(path), normalize=normalize)
        return {k: v.item() for k, v in loss(x, y).items()}

    a, b = terms(plain, True), terms(scaled, True)
    assert a["style"] > 0 and a["content"] > 0
    assert b["style"] == pytest.approx(a["style"], rel=1e-3)
    assert b["content"] == pytest.approx(a["content"], rel=1e-3)
    # The origin formulation: the content term grows with scale^2, the Gram term with scale^4.
    a, b = terms(plain, False), terms(scaled, False)
    assert b["content"] == pytest.approx(100 * a["content"], rel=1e-3)
    assert b["style"] == pytest.approx(1e4 * a["style"], rel=1e-3)


def test_normalized_terms_by_hand():
    style = painting(48)
    settings = dict(
        style_layers=["relu1_1", "relu2_1"],
        content_layers=["relu2_1"],
        vgg_weights="random",
        style_weight=2.0,
        style_layer_weights=[1.0, 3.0],
    )
    loss = PerceptualLoss(style, **settings)
    raw = PerceptualLoss(style, **settings, normalize=False)
    torch.manual_seed(2)
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    fx, fy, fs = (loss.vgg(t) for t in (x, y, style.unsqueeze(0)))
    # Content: per photo, squared error over the photo's squared features; mean over photos.
    per_photo = [
        ((fx["relu2_1"][i] - fy["relu2_1"][i]) ** 2).sum() / (fy["relu2_1"][i] ** 2).sum()
        for i in range(2)
    ]
    expected_content = sum(per_photo) / 2
    # Style: per layer, squared Gram error over the painting's squared Gram; weighted, averaged
    # over the two layers, times the style weight.
    per_layer = []
    for name in ("relu1_1", "relu2_1"):
        target = gram_matrix(fs[name])[0]
        g = gram_matrix(fx[name])
        per_layer.append(sum(((g[i] - target) ** 2).sum() for i in range(2)) / 2
                         / (target ** 2).sum())  # fmt: skip
    expected_style = 2.0 * (1.0 * per_layer[0] + 3.0 * per_layer[1]) / 2
    terms = loss(x, y)
    assert terms["content"].item() == pytest.approx(expected_content.item(), rel=1e-4)
    assert terms["style"].item() == pytest.approx(expected_style.item(), rel=1e-4)
    # normalize=False: plain mean squared errors, summed over layers (the origin document's).
    raw_terms = raw(x, y)
    expected_raw_style = 2.0 * sum(
        w * ((gram_matrix(fx[n]) - gram_matrix(fs[n])) ** 2).mean()
        for w, n in zip((1.0, 3.0), ("relu1_1", "relu2_1"), strict=True)
    )
    assert raw_terms["style"].item() == pytest.approx(expected_raw_style.item(), rel=1e-4)
    expected_raw_content = ((fx["relu2_1"] - fy["relu2_1"]) ** 2).mean()
    assert raw_terms["content"].item() == pytest.approx(expected_raw_content.item(), rel=1e-4)


def test_terms_of_weight_zero_are_neither_computed_nor_returned():
    loss = PerceptualLoss(painting(32), vgg_weights="random")  # tv_weight 0 by default
    assert loss.active_terms == ("content", "style")
    x = torch.rand(1, 3, 32, 32)
    terms = loss(x, x.flip(-1))
    assert set(terms) == {"content", "style", "total"}
    assert torch.equal(terms["total"], terms["content"] + terms["style"])
    with pytest.raises(ConfigError, match="nothing to optimise"):
        PerceptualLoss(painting(32), vgg_weights="random", style_weight=0, content_weight=0)


def test_style_at_several_scales_averages_their_statistics():
    big, small = painting(64), painting(32)
    both = PerceptualLoss([big, small], vgg_weights="random")
    each = [PerceptualLoss(p, vgg_weights="random").style_targets() for p in (big, small)]
    for target, a, b in zip(both.style_targets(), *each, strict=True):
        assert torch.allclose(target, (a + b) / 2, rtol=1e-5, atol=1e-7)
    # ...which is neither scale's alone.
    assert not torch.allclose(both.style_targets()[0], each[0][0])


def test_load_painting_at_scales(tmp_path):
    from PIL import Image

    from fastnst.images import load_image, load_painting

    path = tmp_path / "p.png"
    Image.fromarray((painting(90).permute(1, 2, 0).numpy() * 255).astype("uint8")).save(path)
    images = load_painting(path, 80, [1.0, 0.5])
    assert [tuple(i.shape) for i in images] == [(3, 80, 80), (3, 40, 40)]
    assert torch.equal(images[0], load_image(path, 80))
    for bad in ([], [1.0, -0.5], "0.5", [True]):
        with pytest.raises(ConfigError, match=r"style\.scales"):
            load_painting(path, 80, bad)
