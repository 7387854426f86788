from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models import vgg16, vgg19

from fastnst.errors import ConfigError
from fastnst.vgg import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LAYERS_BY_NAME,
    NETWORKS,
    VGG16_LAYERS,
    VGG19_LAYERS,
    WEIGHTS_FILES,
    VGGFeatures,
    VGGWeightsError,
    build_vgg19_features,
    build_vgg_features,
    layer_for_tap,
    layers_of,
)

from .conftest import SHARED_MODELS_VGG16

KIND_TYPES = {"conv": nn.Conv2d, "relu": nn.ReLU, "pool": nn.MaxPool2d}
TORCHVISION = {"vgg19": vgg19, "vgg16": vgg16}


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_layer_table_matches_torchvision_at_every_index(network):
    features = _torchvision_model(network).features
    table = NETWORKS[network]
    assert len(table) == len(features)
    channels = 3
    for layer, module in zip(table, features, strict=True):
        assert isinstance(module, KIND_TYPES[layer.kind]), layer
        if isinstance(module, nn.Conv2d):
            channels = module.out_channels
        assert layer.channels == channels, layer
    # Our copy of the network has torchvision's modules and parameter names and shapes.
    ours = build_vgg_features(network, "random")
    assert [type(m) for m in ours] == [type(m) for m in features]
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in features.state_dict().items()
    }
    for a, b in zip(ours, features, strict=True):
        if isinstance(a, nn.Conv2d):
            assert (a.kernel_size, a.stride, a.padding) == (b.kernel_size, b.stride, b.padding)
        if isinstance(a, nn.MaxPool2d):
            assert (a.kernel_size, a.stride) == (b.kernel_size, b.stride)
    assert [n.name for n in table if n.kind == "pool"] == [f"pool{i}" for i in range(1, 6)]


def test_canonical_names_of_both_networks():
    assert sum(n.kind == "conv" for n in VGG19_LAYERS) == 16
    assert LAYERS_BY_NAME["relu4_2"].index == 22 and LAYERS_BY_NAME["relu5_4"].index == 35
    assert sum(n.kind == "conv" for n in VGG16_LAYERS) == 13
    vgg16_names = layers_of("vgg16")
    # Johnson et al.'s layers, at torchvision's vgg16().features indices.
    assert [vgg16_names[n].index for n in ("relu1_2", "relu2_2", "relu3_3", "relu4_3")] == [
        3,
        8,
        15,
        22,
    ]
    assert "relu5_3" in vgg16_names and "relu5_4" not in vgg16_names
    assert "conv3_4" not in vgg16_names and "conv3_4" in LAYERS_BY_NAME


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_strides_match_feature_map_sizes(network):
    table = NETWORKS[network]
    vgg = VGGFeatures([layer.name for layer in table], weights="random", network=network)
    feats = vgg(torch.rand(1, 3, 64, 64))
    for layer in table:
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


def test_layer_of_the_other_network_names_both():
    with pytest.raises(ValueError) as info:
        VGGFeatures(["relu1_1", "relu5_4"], weights="random", network="vgg16")
    message = str(info.value)
    assert "vgg16 has no layer" in message and "relu5_4 is a layer of vgg19" in message
    assert "relu5_3" in message and "\n" not in message  # says what the valid names are
    with pytest.raises(
        ConfigError, match=r"network must be one of \('vgg19', 'vgg16'\), got 'vgg11'"
    ):
        VGGFeatures(["relu1_1"], weights="random", network="vgg11")


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


@functools.cache
def _torchvision_model(network: str) -> nn.Module:
    # Built once per network: a whole torchvision VGG (classifier included) takes seconds.
    torch.manual_seed(11)
    return TORCHVISION[network](weights=None)


def _torchvision_state(network: str) -> dict[str, torch.Tensor]:
    return _torchvision_model(network).state_dict()


def _torchvision_state_dict(network: str = "vgg19") -> dict[str, torch.Tensor]:
    """A torchvision VGG's state_dict with seeded random weights (a copy: edit freely)."""
    return dict(_torchvision_state(network))


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_imagenet_path_loads_torchvision_file_from_hub_cache(tmp_path, monkeypatch, network):
    # The same code that downloads the real weights finds them in torch's hub cache, under
    # the file name torchvision gives each network.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    state = _torchvision_state_dict(network=network)
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    assert WEIGHTS_FILES == {"vgg19": "vgg19-dcbb9e9d.pth", "vgg16": "vgg16-397923af.pth"}
    torch.save(state, cache / WEIGHTS_FILES[network])
    vgg = VGGFeatures(["relu5_1"], weights="imagenet", network=network)
    convs = 0
    for i, m in enumerate(vgg.features):
        if isinstance(m, nn.Conv2d):
            assert torch.equal(m.weight, state[f"features.{i}.weight"])
            convs += 1
    assert convs == (13 if network == "vgg19" else 11)  # up to conv5_1


def test_state_dict_file_path(tmp_path):
    state = _torchvision_state_dict()
    path = tmp_path / "my_vgg.pth"
    torch.save(state, path)
    vgg = VGGFeatures(["conv1_2"], weights=str(path))
    assert torch.equal(vgg.features[2].weight, state["features.2.weight"])


def test_state_dict_file_of_another_network_is_rejected(tmp_path):
    path = tmp_path / "not_vgg.pth"
    torch.save(nn.Linear(2, 2).state_dict(), path)
    with pytest.raises(VGGWeightsError, match="not a torchvision VGG19 state_dict"):
        VGGFeatures(["relu1_1"], weights=str(path))
    with pytest.raises(ConfigError, match="missing.pth is neither 'imagenet', 'random' nor a"):
        VGGFeatures(["relu1_1"], weights=str(tmp_path / "missing.pth"))
    # The right keys with the wrong shapes (a narrower network) are refused as well.
    state = _torchvision_state_dict()
    state["features.2.weight"] = state["features.2.weight"][:32]
    torch.save(state, path)
    shapes = r"2\.weight is \(32, 64, 3, 3\), expected \(64, 64, 3, 3\)"
    with pytest.raises(VGGWeightsError, match=shapes):
        VGGFeatures(["relu1_1"], weights=str(path))


@pytest.mark.parametrize(("file_net", "network"), [("vgg16", "vgg19"), ("vgg19", "vgg16")])
def test_file_of_the_other_network_is_one_line_naming_both(tmp_path, file_net, network):
    path = tmp_path / f"{file_net}.pth"
    torch.save(_torchvision_state_dict(network=file_net), path)
    with pytest.raises(VGGWeightsError) as info:
        VGGFeatures(["relu1_1"], weights=str(path), network=network)
    message = str(info.value)
    assert f"holds {file_net.upper()} weights" in message
    assert f"loss network is {network}" in message and f"loss.network={file_net}" in message
    assert "\n" not in message


@pytest.mark.shared_models
def test_shared_imagenet_vgg16_file_loads_as_vgg16_only():
    vgg = VGGFeatures(["relu4_3"], weights=str(SHARED_MODELS_VGG16), network="vgg16")
    state = torch.load(SHARED_MODELS_VGG16, map_location="cpu", weights_only=True)
    convs = [i for i, m in enumerate(vgg.features) if isinstance(m, nn.Conv2d)]
    assert convs == [0, 2, 5, 7, 10, 12, 14, 17, 19, 21]  # conv1_1 ... conv4_3
    for i in convs:
        assert torch.equal(vgg.features[i].weight, state[f"{i}.weight"])
        assert torch.equal(vgg.features[i].bias, state[f"{i}.bias"])
    with pytest.raises(VGGWeightsError, match="holds VGG16 weights"):
        VGGFeatures(["relu1_1"], weights=str(SHARED_MODELS_VGG16), network="vgg19")


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_imagenet_offline_gives_one_clear_error(tmp_path, monkeypatch, network):
    # No cached file, and every HTTPS request goes to a closed port on loopback.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for var in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(VGGWeightsError) as info:
        VGGFeatures(["relu1_1"], weights="imagenet", network=network)
    message = str(info.value)
    assert WEIGHTS_FILES[network] in message
    assert str(Path(tmp_path) / "hub" / "checkpoints" / WEIGHTS_FILES[network]) in message
    assert "\n" not in message
    assert not list((tmp_path / "hub" / "checkpoints").glob("*")), "a partial file was left"
