"""A frozen VGG (VGG19 or VGG16) that returns the activations of named layers.

The layer tables below are the only place where VGG layer names exist. Everything else
(configs, losses, experiments) refers to layers by these names; the extractor validates them,
runs the network only as deep as the deepest requested layer, and normalises its [0, 1] RGB
input with the ImageNet statistics itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision.models import VGG16_Weights, VGG19_Weights

from fastnst.checks import require
from fastnst.errors import ConfigError, VGGWeightsError, first_line

# ImageNet statistics the torchvision VGG weights were trained with (RGB, [0, 1] inputs).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Layer:
    """One entry of torchvision's ``vgg19().features`` (or ``vgg16().features``)."""

    name: str  # canonical name: conv3_1, relu3_1, pool3, ...
    index: int  # position in the network's .features
    kind: str  # "conv", "relu" or "pool"
    channels: int  # channels of this layer's output
    stride: int  # spatial downsampling of this layer's output w.r.t. the input image


def _vgg_table(convs_per_block: Sequence[int]) -> tuple[Layer, ...]:
    # A VGG is five blocks of 3x3 convs (64..512 channels), each conv followed by a ReLU and
    # each block closed by a 2x2 max-pool. VGG16 and VGG19 differ only in convs per block.
    layers: list[Layer] = []
    stride = 1
    for block, (convs, channels) in enumerate(
        zip(convs_per_block, (64, 128, 256, 512, 512), strict=True), start=1
    ):
        for i in range(1, convs + 1):
            layers.append(Layer(f"conv{block}_{i}", len(layers), "conv", channels, stride))
            layers.append(Layer(f"relu{block}_{i}", len(layers), "relu", channels, stride))
        stride *= 2
        layers.append(Layer(f"pool{block}", len(layers), "pool", channels, stride))
    return tuple(layers)


# network name -> its layers, in the order of torchvision's .features
NETWORKS: dict[str, tuple[Layer, ...]] = {
    "vgg19": _vgg_table((2, 2, 4, 4, 4)),
    "vgg16": _vgg_table((2, 2, 3, 3, 3)),
}
VGG19_LAYERS = NETWORKS["vgg19"]
VGG16_LAYERS = NETWORKS["vgg16"]
_BY_NAME: dict[str, dict[str, Layer]] = {
    net: {layer.name: layer for layer in table} for net, table in NETWORKS.items()
}
LAYERS_BY_NAME = _BY_NAME["vgg19"]

# torchvision's ImageNet weights of each network (downloaded through torch's hub cache).
IMAGENET_WEIGHTS = {"vgg19": VGG19_Weights.IMAGENET1K_V1, "vgg16": VGG16_Weights.IMAGENET1K_V1}
WEIGHTS_FILES = {net: Path(w.url).name for net, w in IMAGENET_WEIGHTS.items()}
WEIGHTS_FILE = WEIGHTS_FILES["vgg19"]  # vgg19-dcbb9e9d.pth
# What a downloaded file is checked against: the sha256 prefix its name carries (torch hub's
# convention, vgg16-397923af.pth -> 397923af).
WEIGHTS_DIGESTS = {net: Path(name).stem.rsplit("-", 1)[-1] for net, name in WEIGHTS_FILES.items()}

TAPS = ("relu", "conv")
# Below this many pixels a side, the five 2x2 pools of a VGG leave nothing of an image.
MIN_IMAGE_SIZE = 16


def check_network(network: str) -> None:
    if network not in NETWORKS:
        raise ConfigError("network", f"must be one of {tuple(NETWORKS)}, got {network!r}")


def layers_of(network: str = "vgg19") -> dict[str, Layer]:
    """The layer table of ``network`` by canonical name."""
    check_network(network)
    return _BY_NAME[network]


def _name_range(network: str) -> str:
    table = NETWORKS[network]
    last = {kind: [n.name for n in table if n.kind == kind][-1] for kind in ("conv", "relu")}
    return f"conv1_1 ... {last['conv']}, relu1_1 ... {last['relu']}, pool1 ... pool5"


def check_layer_names(names: Iterable[str], network: str = "vgg19", key: str = "layers") -> None:
    """A :class:`ConfigError` about ``key`` naming every layer that ``network`` lacks (and
    the network), or no layer at all."""
    table = layers_of(network)
    names = list(names)
    require(bool(names), key, "must name at least one layer")
    unknown = [n for n in names if n not in table]
    if not unknown:
        return
    elsewhere = [
        f"{n} is a layer of {other}"
        for n in unknown
        for other in NETWORKS
        if other != network and n in _BY_NAME[other]
    ]
    hint = f" ({'; '.join(elsewhere)})" if elsewhere else ""
    raise ConfigError(
        key, f"{network} has no layer(s) {unknown}{hint}; its layers are {_name_range(network)}"
    )


def layer_for_tap(name: str, tap: str, network: str = "vgg19") -> str:
    """Name of the layer actually read when ``name`` is tapped after ``tap``.

    Configs name layers canonically (``relu4_2``); ``tap="conv"`` reads the same position
    before its ReLU (``conv4_2``). Pool layers are read as they are.
    """
    check_layer_names([name], network)
    require(tap in TAPS, "tap", f"must be one of {TAPS}, got {tap!r}")
    kind = _BY_NAME[network][name].kind
    if kind == "pool" or kind == tap:
        return name
    return tap + name[len(kind) :]


def check_weights(weights: str) -> None:
    """``weights`` must be ``imagenet``, ``random`` or an existing file."""
    if weights not in ("imagenet", "random"):
        require(
            Path(weights).expanduser().is_file(),
            "vgg_weights",
            f"{weights} is neither 'imagenet', 'random' nor a file",
        )


def imagenet_weights_file(network: str = "vgg19") -> Path:
    """torchvision's ImageNet weights file of ``network`` in torch's hub cache (where
    torchvision keeps it too), downloaded there first if missing: with a progress bar,
    resumably, checked against :data:`WEIGHTS_DIGESTS`, from ``$FASTNST_MIRROR`` where set.

    Raises:
        VGGWeightsError: it could not be downloaded; the message says what to do instead.
    """
    from fastnst.download import DownloadError, download

    weights = IMAGENET_WEIGHTS[network]
    cache = Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILES[network]
    if not cache.is_file():
        try:
            download(weights.url, cache, WEIGHTS_DIGESTS[network])
        except DownloadError as exc:
            raise VGGWeightsError(
                f"the ImageNet {network.upper()} weights: {exc}; or pass "
                "loss.vgg_weights=/path/to/state_dict.pth, or use loss.vgg_weights=random for an "
                "offline demo"
            ) from None
    return cache


def imagenet_state_dict(network: str = "vgg19") -> dict[str, torch.Tensor]:
    """torchvision's ImageNet weights of ``network`` (:func:`imagenet_weights_file`)."""
    return _load_state_dict_file(imagenet_weights_file(network))


def _load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise VGGWeightsError(
            f"{path} is not a readable VGG state_dict ({first_line(exc)})"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise VGGWeightsError(f"{path} does not hold a state_dict")
    return state


def _conv_keys(network: str) -> set[str]:
    return {
        f"{layer.index}.{p}"
        for layer in NETWORKS[network]
        if layer.kind == "conv"
        for p in ("weight", "bias")
    }


def _conv_shapes(network: str) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    channels = 3
    for layer in NETWORKS[network]:
        if layer.kind == "conv":
            shapes[f"{layer.index}.weight"] = (layer.channels, channels, 3, 3)
            shapes[f"{layer.index}.bias"] = (layer.channels,)
            channels = layer.channels
    return shapes


def _features_state(
    state: dict[str, torch.Tensor], source: str, network: str
) -> dict[str, torch.Tensor]:
    # Accept a whole torchvision VGG state_dict ("features.0.weight", "classifier...") or one
    # of just its features ("0.weight").
    if any(str(k).startswith("features.") for k in state):
        state = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    keys = {k for k in state if isinstance(k, str) and k.split(".")[-1] in ("weight", "bias")}
    if keys != _conv_keys(network):
        # Say which network the file does hold, when it is one of ours.
        for other in NETWORKS:
            if other != network and keys == _conv_keys(other):
                raise VGGWeightsError(
                    f"{source} holds {other.upper()} weights, but the loss network is "
                    f"{network} (set loss.network={other}, or give a {network.upper()} file)"
                )
        missing = sorted(_conv_keys(network) - keys, key=lambda k: int(k.split(".")[0]))
        if missing:
            raise VGGWeightsError(
                f"{source} is not a torchvision {network.upper()} state_dict "
                f"(missing {missing[:3]}...)"
            )
    for key, shape in _conv_shapes(network).items():
        value = state[key]
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise VGGWeightsError(
                f"{source} is not a torchvision {network.upper()} state_dict "
                f"({key} is {got}, expected {shape})"
            )
        if not value.is_floating_point() or not torch.isfinite(value).all():
            raise VGGWeightsError(f"{source}: {key} holds non-finite or non-float values")
    return {k: state[k] for k in _conv_keys(network)}


def _features_from_table(network: str) -> nn.Sequential:
    # Same modules, hyper-parameters and state_dict keys as torchvision's vgg19().features or
    # vgg16().features (a test compares them), without allocating the 120M-parameter classifier.
    modules: list[nn.Module] = []
    channels = 3
    for layer in NETWORKS[network]:
        if layer.kind == "conv":
            modules.append(nn.Conv2d(channels, layer.channels, kernel_size=3, padding=1))
            channels = layer.channels
        elif layer.kind == "relu":
            modules.append(nn.ReLU(inplace=True))
        else:
            modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*modules)


def build_vgg_features(
    network: str = "vgg19", weights: str = "imagenet", seed: int = 0
) -> nn.Sequential:
    """The convolutional part of a VGG, as torchvision's ``vgg19().features``, with weights.

    Args:
        network: ``"vgg19"`` or ``"vgg16"``.
        weights: ``"imagenet"`` (torchvision's IMAGENET1K_V1, downloaded once into torch's hub
            cache), ``"random"`` (seeded He initialisation as torchvision uses: for tests and
            offline plumbing), or a path to a state_dict file with torchvision's keys.
        seed: the seed for ``"random"``.
    """
    check_network(network)
    check_weights(weights)
    features = _features_from_table(network)
    if weights == "random":
        generator = torch.Generator().manual_seed(seed)
        for m in features:
            if isinstance(m, nn.Conv2d):
                fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1]
                with torch.no_grad():
                    m.weight.normal_(0.0, (2.0 / fan_out) ** 0.5, generator=generator)
                    m.bias.zero_()
        return features
    if weights == "imagenet":
        state, source = imagenet_state_dict(network), f"the ImageNet {network.upper()} weights"
    else:
        path = Path(weights).expanduser()
        state, source = _load_state_dict_file(path), str(path)
    features.load_state_dict(_features_state(state, source, network))
    return features


def build_vgg19_features(weights: str = "imagenet", seed: int = 0) -> nn.Sequential:
    """:func:`build_vgg_features` for VGG19."""
    return build_vgg_features("vgg19", weights, seed)


class VGGFeatures(nn.Module):
    """Frozen VGG returning ``{layer name: activation}`` for the requested layers.

    Input: float RGB in [0, 1], NCHW. The ImageNet normalisation happens here and only here.
    The network is truncated after the deepest requested layer; the VGG parameters never
    require grad and the module stays in eval mode even under ``.train()``.

    Args:
        layers: canonical layer names of ``network``.
        weights, seed: see :func:`build_vgg_features`.
        network: ``"vgg19"`` or ``"vgg16"``.
    """

    def __init__(
        self,
        layers: Sequence[str],
        weights: str = "imagenet",
        seed: int = 0,
        network: str = "vgg19",
    ) -> None:
        super().__init__()
        table = layers_of(network)
        check_layer_names(layers, network)
        self.network = network
        self.layers = tuple(dict.fromkeys(layers))  # de-duplicated, order kept
        deepest = max(table[n].index for n in self.layers)
        features = build_vgg_features(network, weights, seed)[: deepest + 1]
        for layer in NETWORKS[network][: deepest + 1]:
            # torchvision's ReLUs work in place, which would overwrite a tapped conv output.
            if layer.kind == "relu" and f"conv{layer.name[4:]}" in self.layers:
                features[layer.index] = nn.ReLU(inplace=False)
        self.features = features
        self._index = {n: table[n].index for n in self.layers}
        self._taps = {i: n for n, i in self._index.items()}
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGGFeatures:
        # Always eval: a VGG has no dropout/batch-norm in .features, but keep the promise.
        return super().train(False)

    def forward(
        self, x: torch.Tensor, layers: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Activations of ``layers`` (default: all taps); stops after the deepest of them."""
        if layers is None:
            taps, last = self._taps, len(self.features) - 1
        else:
            missing = [n for n in layers if n not in self.layers]
            if missing:
                raise KeyError(f"layers {missing} were not requested when building VGGFeatures")
            taps = {self._index[n]: n for n in layers}
            last = max(taps)
        h = (x - self.mean) / self.std
        out: dict[str, torch.Tensor] = {}
        for i, module in enumerate(self.features[: last + 1]):
            h = module(h)
            if i in taps:
                out[taps[i]] = h
        return out
