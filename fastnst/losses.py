"""Perceptual loss: content, style and total-variation terms on a frozen VGG19.

Shared by the feed-forward trainer and the per-image optimisation. All arithmetic after the
VGG features (Gram matrices, mean-squared errors) runs in fp32, even under autocast: a Gram
matrix sums H*W products per entry and loses most of its precision in bf16/fp16.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fastnst.vgg import VGGFeatures, layer_for_tap

# The origin document's layers: style after "ReLU 1, 3, 5, 9, 13", content after "ReLU 10"
# (counting convs), i.e. the first ReLU of every block for style and relu4_2 for content.
DEFAULT_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
DEFAULT_CONTENT_LAYERS = ("relu4_2",)


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


STYLE_STATS = {"gram": gram_matrix, "covariance": covariance_matrix}


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels (anisotropic TV), in fp32."""
    with _fp32(images):
        x = images.float()
        dh = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().mean()
        dw = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().mean()
        return dh + dw


class PerceptualLoss(nn.Module):
    """Johnson et al.'s perceptual loss against one style image.

    The style statistics of the style image are computed once, here, and kept as detached
    buffers. :meth:`forward` returns the weighted terms ``content``, ``style``, ``tv`` and
    their sum ``total``.

    Args:
        style_image: the painting, float RGB in [0, 1], CHW or 1xCHW.
        style_layers: canonical VGG19 layer names for the style term.
        content_layers: canonical VGG19 layer names for the content term.
        style_layer_weights: one weight per style layer (default: all 1).
        style_weight, content_weight, tv_weight: weights of the three terms.
        tap: ``"relu"`` reads each named position after its ReLU, ``"conv"`` before it.
        style_stat: ``"gram"`` or ``"covariance"``.
        vgg_weights: ``"imagenet"``, ``"random"`` or a state_dict path (see ``vgg.py``).
        vgg_seed: seed for ``vgg_weights="random"``.
    """

    def __init__(
        self,
        style_image: torch.Tensor,
        style_layers: Sequence[str] = DEFAULT_STYLE_LAYERS,
        content_layers: Sequence[str] = DEFAULT_CONTENT_LAYERS,
        style_layer_weights: Sequence[float] | None = None,
        style_weight: float = 1e5,
        content_weight: float = 1.0,
        tv_weight: float = 0.0,
        tap: str = "relu",
        style_stat: str = "gram",
        vgg_weights: str = "imagenet",
        vgg_seed: int = 0,
    ) -> None:
        super().__init__()
        if style_stat not in STYLE_STATS:
            raise ValueError(f"style_stat must be one of {sorted(STYLE_STATS)}, got {style_stat!r}")
        if style_layer_weights is None:
            style_layer_weights = [1.0] * len(style_layers)
        if len(style_layer_weights) != len(style_layers):
            raise ValueError(
                f"{len(style_layer_weights)} style_layer_weights for {len(style_layers)} "
                "style_layers"
            )
        self.style_layers = [layer_for_tap(n, tap) for n in style_layers]
        self.content_layers = [layer_for_tap(n, tap) for n in content_layers]
        self.style_layer_weights = [float(w) for w in style_layer_weights]
        self.style_weight = float(style_weight)
        self.content_weight = float(content_weight)
        self.tv_weight = float(tv_weight)
        self.style_stat = STYLE_STATS[style_stat]
        self.vgg = VGGFeatures(self.style_layers + self.content_layers, vgg_weights, vgg_seed)

        style = style_image if style_image.dim() == 4 else style_image.unsqueeze(0)
        with torch.no_grad():
            feats = self.vgg(style, self.style_layers)
            for i, name in enumerate(self.style_layers):
                self.register_buffer(
                    f"style_target_{i}", self.style_stat(feats[name]).detach(), persistent=False
                )

    def style_targets(self) -> list[torch.Tensor]:
        return [getattr(self, f"style_target_{i}") for i in range(len(self.style_layers))]

    @torch.no_grad()
    def content_targets(self, content: torch.Tensor) -> dict[str, torch.Tensor]:
        """VGG features of the content images at the content layers, without a graph."""
        return {k: v.detach() for k, v in self.vgg(content, self.content_layers).items()}

    def terms(
        self, output: torch.Tensor, content_targets: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Loss terms of ``output`` against precomputed content targets and the style."""
        feats = self.vgg(output)
        with _fp32(output):
            content = sum(
                F.mse_loss(feats[name].float(), content_targets[name].float())
                for name in self.content_layers
            )
            style = sum(
                w * F.mse_loss(stat, target.expand_as(stat))
                for w, stat, target in zip(
                    self.style_layer_weights,
                    (self.style_stat(feats[name]) for name in self.style_layers),
                    self.style_targets(),
                    strict=True,
                )
            )
            terms = {
                "content": self.content_weight * content,
                "style": self.style_weight * style,
                "tv": self.tv_weight * total_variation(output),
            }
            terms["total"] = terms["content"] + terms["style"] + terms["tv"]
        return terms

    def forward(self, output: torch.Tensor, content: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss terms of stylized ``output`` for the content images it was made from."""
        return self.terms(output, self.content_targets(content))
