from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models import vgg19

from fastnst.vgg import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LAYERS_BY_NAME,
    VGG19_LAYERS,
    WEIGHTS_FILE,
    VGGFeatures,
    VGGWeightsError,
    build_vgg19_features,
    layer_for_tap,
)

KIND_TYPES = {"conv": nn.Conv2d, "relu": nn.ReLU, "pool": nn.MaxPool2d}


def test_layer_table_matches_torchvision_at_every_index():
    features = vgg19(weights=None).features
    assert len(VGG19_LAYERS) == len(features)
    channels = 3
    for layer, module in zip(VGG19_LAYERS, features, strict=True):
        assert isinstance(module, KIND_TYPES[layer.kind]), layer
        if isinstance(module, nn.Conv2d):
            channels = module.out_channels
        assert layer.channels == channels, layer
    # Our copy of the network has torchvision's modules and parameter names and shapes.
    ours = build_vgg19_features("random")
    assert [type(m) for m in ours] == [type(m) for m in features]
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in features.state_dict().items()
    }
    for a, b in zip(ours, features, strict=True):
        if isinstance(a, nn.Conv2d):
            assert (a.kernel_size, a.stride, a.padding) == (b.kernel_size, b.stride, b.padding)
        if isinstance(a, nn.MaxPool2d):
            assert (a.kernel_size, a.stride) == (b.kernel_size, b.stride)
    assert [n.name for n in VGG19_LAYERS if n.kind == "pool"] == [f"pool{i}" for i in range(1, 6)]
    assert sum(n.kind == "conv" for n in VGG19_LAYERS) == 16
    assert LAYERS_BY_NAME["relu4_2"].index == 22 and LAYERS_BY_NAME["relu5_4"].index == 35


def test_strides_match_feature_map_sizes():
    vgg = VGGFeatures([layer.name for layer in VGG19_LAYERS], weights="random")
    feats = vgg(torch.rand(1, 3, 64, 64))
    for layer in VGG19_LAYERS:
        assert feats[layer.name].shape[1:] == (
            layer.channels,
            64 // layer.stride,
            64 // layer.stride,
        )


def test_conv_tap_returns_pre_relu_values():
    vgg = VGGFeatures(["conv3_1", "relu3_1"], weights="random")
    feats = vgg(torch.rand(2, 3, 48, 48))
    conv, relu = feats["conv3_1"], feats["relu3_1"]
    assert (conv < 0).any(), "an in-place ReLU overwrote the conv tap"
    assert torch.equal(relu, conv.clamp(min=0))


def test_origin_document_layers_under_both_taps():
    # "ReLU 1, 3, 5, 9, 13" (numbered by conv) are the first ReLU of each block.
    assert [layer_for_tap(n, "conv") for n in ("relu1_1", "relu4_2", "pool2")] == [
        "conv1_1",
        "conv4_2",
        "pool2",
    ]
    assert layer_for_tap("conv2_1", "relu") == "relu2_1"
    with pytest.raises(ValueError, match="tap must be"):
        layer_for_tap("relu1_1", "sigmoid")


def test_truncated_after_deepest_tap_and_deeper_layers_never_run():
    vgg = VGGFeatures(["relu1_1", "relu3_1"], weights="random")
    assert len(vgg.features) == LAYERS_BY_NAME["relu3_1"].index + 1
    calls: list[int] = []
    for i, m in enumerate(vgg.features):
        m.register_forward_hook(lambda *_, i=i: calls.append(i))
    out = vgg(torch.rand(1, 3, 32, 32), layers=["relu1_1"])
    assert set(out) == {"relu1_1"}
    assert max(calls) == LAYERS_BY_NAME["relu1_1"].index


def test_unknown_layer_name_is_rejected():
    with pytest.raises(ValueError, match="relu6_1"):
        VGGFeatures(["relu6_1"], weights="random")


def test_frozen_and_always_eval():
    vgg = VGGFeatures(["relu2_1"], weights="random")
    assert not any(p.requires_grad for p in vgg.parameters())
    vgg.train()
    assert not vgg.training and not any(m.training for m in vgg.modules())


def test_normalisation_happens_inside():
    vgg = VGGFeatures(["conv1_1"], weights="random")
    x = torch.rand(1, 3, 16, 16)
    x_before = x.clone()
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    expected = vgg.features[0]((x - mean) / std)
    assert torch.allclose(vgg(x)["conv1_1"], expected)
    assert torch.equal(x, x_before), "the extractor modified its input"


def test_random_weights_are_seeded():
    a = build_vgg19_features("random", seed=3)
    b = build_vgg19_features("random", seed=3)
    c = build_vgg19_features("random", seed=4)
    assert torch.equal(a[0].weight, b[0].weight)
    assert not torch.equal(a[0].weight, c[0].weight)


def _torchvision_state_dict(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return vgg19(weights=None).state_dict()


def test_imagenet_path_loads_torchvision_file_from_hub_cache(tmp_path, monkeypatch):
    # The same code that downloads the real weights finds them in torch's hub cache.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    state = _torchvision_state_dict(seed=11)
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(state, cache / WEIGHTS_FILE)
    vgg = VGGFeatures(["relu5_1"], weights="imagenet")
    for i, m in enumerate(vgg.features):
        if isinstance(m, nn.Conv2d):
            assert torch.equal(m.weight, state[f"features.{i}.weight"])


def test_state_dict_file_path(tmp_path):
    state = _torchvision_state_dict(seed=12)
    path = tmp_path / "my_vgg.pth"
    torch.save(state, path)
    vgg = VGGFeatures(["conv1_2"], weights=str(path))
    assert torch.equal(vgg.features[2].weight, state["features.2.weight"])


def test_state_dict_file_of_another_network_is_rejected(tmp_path):
    path = tmp_path / "not_vgg.pth"
    torch.save(nn.Linear(2, 2).state_dict(), path)
    with pytest.raises(VGGWeightsError, match="not a torchvision VGG19 state_dict"):
        VGGFeatures(["relu1_1"], weights=str(path))
    with pytest.raises(VGGWeightsError, match="does not exist"):
        VGGFeatures(["relu1_1"], weights=str(tmp_path / "missing.pth"))


def test_imagenet_offline_gives_one_clear_error(tmp_path, monkeypatch):
    # No cached file, and every HTTPS request goes to a closed port on loopback.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for var in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(VGGWeightsError) as info:
        VGGFeatures(["relu1_1"], weights="imagenet")
    message = str(info.value)
    assert WEIGHTS_FILE in message
    assert str(Path(tmp_path) / "hub" / "checkpoints" / WEIGHTS_FILE) in message
    assert "\n" not in message
    assert not list((tmp_path / "hub" / "checkpoints").glob("*")), "a partial file was left"
