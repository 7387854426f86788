"""A frozen VGG19 that returns the activations of named layers.

The layer table below is the only place where VGG19 layer names exist. Everything else (configs,
losses, experiments) refers to layers by these names; the extractor validates them, runs the
network only as deep as the deepest requested layer, and normalises its [0, 1] RGB input with
the ImageNet statistics itself.
"""

from __future__ import annotations

import urllib.error
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision.models import VGG19_Weights

# ImageNet statistics the torchvision VGG19 weights were trained with (RGB, [0, 1] inputs).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Layer:
    """One entry of torchvision's ``vgg19().features``."""

    name: str  # canonical name: conv3_1, relu3_1, pool3, ...
    index: int  # position in vgg19().features
    kind: str  # "conv", "relu" or "pool"
    channels: int  # channels of this layer's output
    stride: int  # spatial downsampling of this layer's output w.r.t. the input image


def _vgg19_table() -> tuple[Layer, ...]:
    # VGG19 is five blocks of 3x3 convs (2, 2, 4, 4, 4 of them; 64..512 channels), each conv
    # followed by a ReLU and each block closed by a 2x2 max-pool.
    layers: list[Layer] = []
    stride = 1
    for block, (convs, channels) in enumerate(
        zip((2, 2, 4, 4, 4), (64, 128, 256, 512, 512), strict=True), start=1
    ):
        for i in range(1, convs + 1):
            layers.append(Layer(f"conv{block}_{i}", len(layers), "conv", channels, stride))
            layers.append(Layer(f"relu{block}_{i}", len(layers), "relu", channels, stride))
        stride *= 2
        layers.append(Layer(f"pool{block}", len(layers), "pool", channels, stride))
    return tuple(layers)


VGG19_LAYERS: tuple[Layer, ...] = _vgg19_table()
LAYERS_BY_NAME: dict[str, Layer] = {layer.name: layer for layer in VGG19_LAYERS}

TAPS = ("relu", "conv")
WEIGHTS_FILE = Path(VGG19_Weights.IMAGENET1K_V1.url).name  # vgg19-dcbb9e9d.pth


class VGGWeightsError(Exception):
    """VGG19 weights could not be obtained; the message says what to do."""


def layer_for_tap(name: str, tap: str) -> str:
    """Name of the layer actually read when ``name`` is tapped after ``tap``.

    Configs name layers canonically (``relu4_2``); ``tap="conv"`` reads the same position
    before its ReLU (``conv4_2``). Pool layers are read as they are.
    """
    check_layer_names([name])
    if tap not in TAPS:
        raise ValueError(f"tap must be one of {TAPS}, got {tap!r}")
    kind = LAYERS_BY_NAME[name].kind
    if kind == "pool" or kind == tap:
        return name
    return tap + name[len(kind) :]


def check_layer_names(names: Iterable[str]) -> None:
    unknown = [n for n in names if n not in LAYERS_BY_NAME]
    if unknown:
        raise ValueError(
            f"unknown VGG19 layer name(s) {unknown}; valid names are conv1_1 ... relu5_4 "
            "and pool1 ... pool5"
        )


def imagenet_state_dict() -> dict[str, torch.Tensor]:
    """torchvision's ImageNet VGG19 weights, through torchvision's own download cache."""
    cache = Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE
    try:
        return VGG19_Weights.IMAGENET1K_V1.get_state_dict(
            progress=True, check_hash=True, map_location="cpu", weights_only=True
        )
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        raise VGGWeightsError(
            f"could not get the ImageNet VGG19 weights ({exc}). Put the file "
            f"{WEIGHTS_FILE} from {VGG19_Weights.IMAGENET1K_V1.url} at {cache}, pass "
            "loss.vgg_weights=/path/to/vgg19.pth, or use loss.vgg_weights=random for an "
            "offline demo"
        ) from None


def _load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise VGGWeightsError(
            f"VGG19 weights file {path} does not exist (loss.vgg_weights takes 'imagenet', "
            "'random' or a path to a state_dict file)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise VGGWeightsError(f"{path} is not a readable VGG19 state_dict ({exc})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise VGGWeightsError(f"{path} does not hold a state_dict")
    return state


def _features_state(state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    # Accept a whole torchvision VGG19 state_dict ("features.0.weight", "classifier...") or
    # one of just its features ("0.weight").
    if any(k.startswith("features.") for k in state):
        state = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    expected = {
        f"{layer.index}.{p}"
        for layer in VGG19_LAYERS
        if layer.kind == "conv"
        for p in ("weight", "bias")
    }
    missing = sorted(expected - state.keys(), key=lambda k: int(k.split(".")[0]))
    if missing:
        raise VGGWeightsError(
            f"{source} is not a torchvision VGG19 state_dict (missing {missing[:3]}...)"
        )
    return {k: state[k] for k in expected}


def _vgg19_features_from_table() -> nn.Sequential:
    # Same modules, hyper-parameters and state_dict keys as torchvision's vgg19().features
    # (a test compares them), without allocating the 120M-parameter classifier.
    modules: list[nn.Module] = []
    channels = 3
    for layer in VGG19_LAYERS:
        if layer.kind == "conv":
            modules.append(nn.Conv2d(channels, layer.channels, kernel_size=3, padding=1))
            channels = layer.channels
        elif layer.kind == "relu":
            modules.append(nn.ReLU(inplace=True))
        else:
            modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*modules)


def build_vgg19_features(weights: str = "imagenet", seed: int = 0) -> nn.Sequential:
    """VGG19's convolutional part, as torchvision's ``vgg19().features``, with weights.

    Args:
        weights: ``"imagenet"`` (torchvision's IMAGENET1K_V1, downloaded once into torch's hub
            cache), ``"random"`` (seeded He initialisation as torchvision uses: for tests and
            offline demos), or a path to a state_dict file with torchvision's keys.
        seed: the seed for ``"random"``.
    """
    features = _vgg19_features_from_table()
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
        state, source = imagenet_state_dict(), "the ImageNet weights"
    else:
        path = Path(weights).expanduser()
        state, source = _load_state_dict_file(path), str(path)
    features.load_state_dict(_features_state(state, source))
    return features


class VGGFeatures(nn.Module):
    """Frozen VGG19 returning ``{layer name: activation}`` for the requested layers.

    Input: float RGB in [0, 1], NCHW. The ImageNet normalisation happens here and only here.
    The network is truncated after the deepest requested layer; the VGG parameters never
    require grad and the module stays in eval mode even under ``.train()``.
    """

    def __init__(self, layers: Sequence[str], weights: str = "imagenet", seed: int = 0) -> None:
        super().__init__()
        if not layers:
            raise ValueError("VGGFeatures needs at least one layer name")
        check_layer_names(layers)
        self.layers = tuple(dict.fromkeys(layers))  # de-duplicated, order kept
        deepest = max(LAYERS_BY_NAME[n].index for n in self.layers)
        features = build_vgg19_features(weights, seed)[: deepest + 1]
        for layer in VGG19_LAYERS[: deepest + 1]:
            # torchvision's ReLUs work in place, which would overwrite a tapped conv output.
            if layer.kind == "relu" and f"conv{layer.name[4:]}" in self.layers:
                features[layer.index] = nn.ReLU(inplace=False)
        self.features = features
        self._taps = {LAYERS_BY_NAME[n].index: n for n in self.layers}
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGGFeatures:
        # Always eval: VGG19 has no dropout/batch-norm in .features, but keep the promise.
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
            taps = {LAYERS_BY_NAME[n].index: n for n in layers}
            last = max(taps)
        h = (x - self.mean) / self.std
        out: dict[str, torch.Tensor] = {}
        for i, module in enumerate(self.features[: last + 1]):
            h = module(h)
            if i in taps:
                out[taps[i]] = h
        return out
