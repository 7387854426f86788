"""Perceptual loss: content, style and total-variation terms on a frozen VGG.

Shared by the feed-forward trainer and the per-image optimisation. All arithmetic after the
VGG features (Gram matrices, mean-squared errors) runs in fp32, even under autocast: a Gram
matrix sums H*W products per entry and loses most of its precision in bf16/fp16.

Scale. VGG activations differ in scale between networks and weight files by tens of times (the
original Caffe VGGs took 0-255 pixels; torchvision's take normalised ones), and a Gram term
grows with the 4th power of that scale, a content term with the 2nd. By default
(``normalize=True``) each term is therefore relative to its target: every style layer's squared
statistic difference is divided by the squared norm of the painting's statistic and the layers
are averaged, and the content term is the squared feature difference divided by the squared
norm of the photo's features. Both are invariant to the activation scale, so one style weight
means the same on every network. ``normalize=False`` is the origin document's formulation
(plain mean squared errors, summed over layers), whose weights depend on the network.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fastnst.checks import check_number, require
from fastnst.vgg import (
    MIN_IMAGE_SIZE,
    TAPS,
    VGGFeatures,
    check_layer_names,
    check_network,
    check_weights,
    layer_for_tap,
)

# The origin document's layers: style after "ReLU 1, 3, 5, 9, 13", content after "ReLU 10"
# (counting convs), i.e. the first ReLU of every block for style and relu4_2 for content.
DEFAULT_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
DEFAULT_CONTENT_LAYERS = ("relu4_2",)
# Below this a target's energy is treated as zero (an all-black photo at a deep layer).
_EPS = 1e-12


def _fp32(x: torch.Tensor) -> torch.autocast:
    return torch.autocast(device_type=x.device.type, enabled=False)


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Gram matrix of NCHW features, normalised by C*H*W; returns N x C x C in fp32."""
    n, c, h, w = features.shape
    with _fp32(features):
        f = features.float().reshape(n, c, h * w)
        return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


def covariance_matrix(features: torch.Tensor) -> torch.Tensor:
    """Like :func:`gram_matrix` but of the features minus their per-channel spatial mean."""
    with _fp32(features):
        f = features.float()
        return gram_matrix(f - f.mean(dim=(2, 3), keepdim=True))


def mean_std(features: torch.Tensor) -> torch.Tensor:
    """Per-channel spatial mean and standard deviation of NCHW features: N x 2 x C, fp32.

    The first-order statistics that AdaIN (Huang & Belongie 2017) matches: a third style
    statistic, used to score images made with Gram or covariance losses by a number neither
    of them optimises.
    """
    with _fp32(features):
        f = features.float().flatten(2)
        # The epsilon keeps the gradient finite on channels that are constant (dead ReLUs).
        std = (f.var(dim=2, unbiased=False) + _EPS).sqrt()
        return torch.stack((f.mean(dim=2), std), dim=1)


STYLE_STATS = {"gram": gram_matrix, "covariance": covariance_matrix, "meanstd": mean_std}


def total_variation(images: torch.Tensor, per_sample: bool = False) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels (anisotropic TV), in fp32; with
    ``per_sample``, one value per image."""
    with _fp32(images):
        x = images.float()
        dh = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs()
        dw = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs()
        if per_sample:
            return dh.flatten(1).mean(1) + dw.flatten(1).mean(1)
        return dh.mean() + dw.mean()


def relative_sq_error(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``||x_i - target_i||^2 / ||target_i||^2`` (fp32).

    ``target`` broadcasts against ``x`` (one painting's statistic for a batch of outputs).
    """
    return relative_sq_errors(x, target).mean()


def relative_sq_errors(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """:func:`relative_sq_error` of each image: a vector of N values."""
    x, target = x.float(), target.float().expand_as(x)
    err = (x - target).pow(2).flatten(1).sum(1)
    energy = target.pow(2).flatten(1).sum(1).clamp_min(_EPS)
    return err / energy


class PerceptualLoss(nn.Module):
    """Johnson et al.'s perceptual loss against one style image.

    The style statistics of the painting are computed once, by :meth:`set_style` (called by
    the constructor when ``style_image`` is given), and kept as detached buffers; the VGG is
    built then too, so that every setting is checked before anything heavy happens.
    :meth:`forward` returns the weighted terms named in :attr:`TERMS` and their sum, ``total``.
    A new term is a method ``_<name>_term(output, feats, content_targets, style_ids,
    per_sample)`` returning its unweighted value (a vector of one value per image when
    ``per_sample``), its name in :attr:`TERMS` and its weight (a constructor argument
    ``<name>_weight``). Several paintings (one network holding several styles):
    :meth:`set_styles`.

    Args:
        style_image: the painting, float RGB in [0, 1], CHW or 1xCHW (or a list of them: the
            painting at several sizes, see :meth:`set_style`); or None, to give it
            later with :meth:`set_style`.
        style_layers: canonical layer names of ``network`` for the style term.
        content_layers: canonical layer names of ``network`` for the content term.
        style_layer_weights: one weight per style layer (default: all 1).
        style_weight, content_weight, tv_weight: weights of the three terms.
        tap: ``"relu"`` reads each named position after its ReLU, ``"conv"`` before it.
        style_stat: ``"gram"``, ``"covariance"`` or ``"meanstd"`` (per-channel mean and
            standard deviation).
        network: the loss network, ``"vgg19"`` or ``"vgg16"``.
        vgg_weights: ``"imagenet"``, ``"random"`` or a state_dict path (see ``vgg.py``).
        vgg_seed: seed for ``vgg_weights="random"``.
        normalize: each term relative to its target's energy (scale-free, see the module
            docstring); ``False``: the origin document's raw mean squared errors.

    Raises:
        ConfigError: a setting that cannot work, named by its argument; checked before the
            VGG is built.
    """

    # The terms, in the order they are computed, logged and summed.
    TERMS = ("content", "style", "tv")

    def __init__(
        self,
        style_image: torch.Tensor | Sequence[torch.Tensor] | None = None,
        style_layers: Sequence[str] = DEFAULT_STYLE_LAYERS,
        content_layers: Sequence[str] = DEFAULT_CONTENT_LAYERS,
        style_layer_weights: Sequence[float] | None = None,
        style_weight: float = 3.0,
        content_weight: float = 1.0,
        tv_weight: float = 0.0,
        tap: str = "relu",
        style_stat: str = "gram",
        network: str = "vgg19",
        vgg_weights: str = "imagenet",
        vgg_seed: int = 0,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        check_network(network)
        style_layers, content_layers = list(style_layers), list(content_layers)
        check_layer_names(style_layers, network, "style_layers")
        check_layer_names(content_layers, network, "content_layers")
        require(tap in TAPS, "tap", f"must be one of {TAPS}, got {tap!r}")
        require(
            style_stat in STYLE_STATS,
            "style_stat",
            f"must be one of {tuple(STYLE_STATS)}, got {style_stat!r}",
        )
        require(
            isinstance(normalize, bool), "normalize", f"must be true or false, got {normalize!r}"
        )
        if style_layer_weights is None:
            style_layer_weights = [1.0] * len(style_layers)
        style_layer_weights = list(style_layer_weights)
        require(
            len(style_layer_weights) == len(style_layers),
            "style_layer_weights",
            f"has {len(style_layer_weights)} entries for {len(style_layers)} style layers",
        )
        require(
            all(isinstance(w, int | float) and w >= 0 for w in style_layer_weights),
            "style_layer_weights",
            f"must be numbers >= 0, got {style_layer_weights}",
        )
        self.weights = {"content": content_weight, "style": style_weight, "tv": tv_weight}
        for name, weight in self.weights.items():
            check_number(weight, f"{name}_weight", 0)
        self.weights = {name: float(w) for name, w in self.weights.items()}
        require(
            any(w > 0 for w in self.weights.values()),
            "style_weight",
            "and every other term's weight are 0: there is nothing to optimise",
        )

        self.style_layers = [layer_for_tap(n, tap, network) for n in style_layers]
        self.content_layers = [layer_for_tap(n, tap, network) for n in content_layers]
        self.style_layer_weights = [float(w) for w in style_layer_weights]
        self.style_stat = STYLE_STATS[style_stat]
        self.normalize = normalize
        self.network, self.vgg_weights, self.vgg_seed = network, vgg_weights, vgg_seed
        check_weights(vgg_weights)
        self.vgg: VGGFeatures | None = None
        if style_image is not None:
            self.set_style(style_image)

    def set_style(self, style_image: torch.Tensor | Sequence[torch.Tensor]) -> None:
        """Compute the painting's style statistics (building the VGG the first time).

        Given several images (the painting at several sizes), each layer's target is the mean
        of their statistics: strokes of every one of those scales count.
        """
        self.set_styles([style_image])

    def set_styles(
        self,
        paintings: Sequence[torch.Tensor | Sequence[torch.Tensor]],
        weights: Sequence[float] | None = None,
    ) -> None:
        """Several paintings (each as :meth:`set_style` takes one), for a network that holds
        several styles: each layer's targets get one row per painting, and
        :meth:`terms` takes which painting each output image is meant to match
        (``style_ids``). ``weights``: each painting's style weight, instead of
        ``style_weight``, for those calls."""
        require(len(paintings) > 0, "style_image", "is an empty list")
        per_painting = [self._statistics(p) for p in paintings]
        for i in range(len(self.style_layers)):
            target = torch.cat([stats[i] for stats in per_painting])
            self.register_buffer(f"style_target_{i}", target, persistent=False)
        if weights is not None:
            require(len(weights) == len(paintings), "style_weights", "needs one per painting")
            for w in weights:
                check_number(w, "style.weight", 0)
            weights_t = torch.tensor([float(w) for w in weights])
            # The style term is computed when any painting has a weight (active_terms).
            self.weights["style"] = max(float(w) for w in weights)
        else:
            weights_t = torch.full((len(paintings),), self.weights["style"])
        device = next(self.vgg.buffers()).device  # type: ignore[union-attr]
        self.register_buffer("style_weights", weights_t.to(device), persistent=False)

    def _statistics(self, style_image: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """One painting's style targets (1 x ... per style layer), building the VGG the
        first time."""
        images = [style_image] if isinstance(style_image, torch.Tensor) else list(style_image)
        require(len(images) > 0, "style_image", "is an empty list")
        for image in images:
            height, width = image.shape[-2:]
            require(
                min(height, width) >= MIN_IMAGE_SIZE,
                "style_image",
                f"is {width}x{height} px; the loss network needs at least {MIN_IMAGE_SIZE} px "
                "a side (set style.size to scale it up)",
            )
        if self.vgg is None:
            self.vgg = VGGFeatures(
                self.style_layers + self.content_layers,
                self.vgg_weights,
                self.vgg_seed,
                network=self.network,
            )
        device = next(self.vgg.buffers()).device
        targets: list[torch.Tensor] = [0] * len(self.style_layers)  # type: ignore[list-item]
        with torch.no_grad():
            for image in images:
                style = (image if image.dim() == 4 else image.unsqueeze(0)).to(device)
                feats = self.vgg(style, self.style_layers)
                for i, name in enumerate(self.style_layers):
                    targets[i] = targets[i] + self.style_stat(feats[name]) / len(images)
        return [t.detach() for t in targets]

    @property
    def num_styles(self) -> int:
        """Paintings whose targets are set (0 before :meth:`set_style`)."""
        return 0 if self.vgg is None else int(self.style_target_0.shape[0])

    @property
    def style_weight(self) -> float:
        return self.weights["style"]

    @property
    def content_weight(self) -> float:
        return self.weights["content"]

    @property
    def tv_weight(self) -> float:
        return self.weights["tv"]

    def style_targets(self) -> list[torch.Tensor]:
        return [getattr(self, f"style_target_{i}") for i in range(len(self.style_layers))]

    def _features(self) -> VGGFeatures:
        if self.vgg is None:
            raise RuntimeError("PerceptualLoss has no painting yet: call set_style() first")
        return self.vgg

    @torch.no_grad()
    def content_targets(self, content: torch.Tensor) -> dict[str, torch.Tensor]:
        """VGG features of the content images at the content layers, without a graph."""
        return {k: v.detach() for k, v in self._features()(content, self.content_layers).items()}

    @property
    def active_terms(self) -> tuple[str, ...]:
        """The terms with a weight above zero: the only ones computed and logged."""
        return tuple(name for name in self.TERMS if self.weights[name] > 0)

    def terms(
        self,
        output: torch.Tensor,
        content_targets: dict[str, torch.Tensor],
        style_ids: torch.Tensor | None = None,
        per_sample: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Weighted loss terms of ``output`` against precomputed content targets and the
        style (those of :attr:`active_terms`, in :attr:`TERMS` order), and their sum
        ``total``.

        ``style_ids``: for each output image, the painting (of :meth:`set_styles`) it is
        scored against, with that painting's weight; None: the only painting. With
        ``per_sample`` each term is a vector, one value per image (their mean is the
        batch's term).
        """
        feats = self._features()(output)
        per_sample = per_sample or style_ids is not None
        with _fp32(output):
            terms = {}
            for name in self.active_terms:
                term = getattr(self, f"_{name}_term")
                value = term(output, feats, content_targets, style_ids, per_sample)
                if name == "style" and style_ids is not None:
                    terms[name] = self.style_weights[style_ids] * value
                else:
                    terms[name] = self.weights[name] * value
            terms["total"] = sum_of_terms(terms)
        return terms

    def _content_term(
        self,
        output: torch.Tensor,
        feats: dict[str, torch.Tensor],
        targets: dict[str, torch.Tensor],
        style_ids: torch.Tensor | None,
        per_sample: bool,
    ) -> torch.Tensor:
        content = sum(
            self._difference(feats[name], targets[name], per_sample) for name in self.content_layers
        )
        # Normalised terms average over layers, so that adding a layer keeps the balance.
        return content / len(self.content_layers) if self.normalize else content

    def _style_term(
        self,
        output: torch.Tensor,
        feats: dict[str, torch.Tensor],
        targets: dict[str, torch.Tensor],
        style_ids: torch.Tensor | None,
        per_sample: bool,
    ) -> torch.Tensor:
        style_targets = self.style_targets()
        if style_ids is not None:
            style_targets = [t[style_ids] for t in style_targets]
        style = sum(
            w * self._difference(self.style_stat(feats[name]), target, per_sample)
            for w, name, target in zip(
                self.style_layer_weights, self.style_layers, style_targets, strict=True
            )
        )
        return style / len(self.style_layers) if self.normalize else style

    def _tv_term(
        self,
        output: torch.Tensor,
        feats: dict[str, torch.Tensor],
        targets: dict[str, torch.Tensor],
        style_ids: torch.Tensor | None,
        per_sample: bool,
    ) -> torch.Tensor:
        return total_variation(output, per_sample)

    def _difference(self, x: torch.Tensor, target: torch.Tensor, per_sample: bool) -> torch.Tensor:
        if self.normalize:
            errors = relative_sq_errors(x, target)
            return errors if per_sample else errors.mean()
        if per_sample:
            x, target = x.float(), target.float().expand_as(x)
            return (x - target).pow(2).flatten(1).mean(1)
        return F.mse_loss(x.float(), target.float().expand_as(x))

    def forward(self, output: torch.Tensor, content: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss terms of stylized ``output`` for the content images it was made from."""
        return self.terms(output, self.content_targets(content))


def sum_of_terms(terms: dict[str, torch.Tensor]) -> torch.Tensor:
    """The total of weighted terms, added in their order (``total`` itself excluded)."""
    values = [v for k, v in terms.items() if k != "total"]
    total = values[0]
    for value in values[1:]:
        total = total + value
    return total
