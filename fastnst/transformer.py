"""The feed-forward style network of Johnson, Alahi & Fei-Fei (2016).

Read top to bottom it is the paper's figure: a 9x9 conv, two stride-2 convs down, a stack of
residual blocks, two upsampling stages back, and a 9x9 conv to RGB. Two changes from the paper,
both standard since: instance norm instead of batch norm (Ulyanov et al. 2016), and
nearest-neighbour resize followed by a conv instead of transposed convs, which paint
checkerboards (Odena et al. 2016, "Deconvolution and Checkerboard Artifacts").
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from fastnst.errors import check_number

Moments = tuple[torch.Tensor, torch.Tensor]  # per-channel mean and (biased) variance


class InstanceNorm(nn.Module):
    """Instance norm with a learned per-channel scale and shift.

    The arithmetic and the state_dict keys (``weight``, ``bias``) of
    ``nn.InstanceNorm2d(c, affine=True)``, plus one ability: :meth:`fixed_to` makes it use
    given statistics instead of the input's own, which is how tiled inference
    (:mod:`fastnst.tiling`) applies whole-image statistics to one tile at a time.
    """

    __constants__ = ["eps"]
    # Set only within fixed_to(). TorchScript reads these annotations (so this module does
    # not use `from __future__ import annotations`, which would turn them into strings).
    fixed_mean: Optional[torch.Tensor]  # noqa: UP045
    fixed_var: Optional[torch.Tensor]  # noqa: UP045

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.fixed_mean = None
        self.fixed_var = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, var = self.fixed_mean, self.fixed_var
        if mean is None or var is None:
            return F.instance_norm(x, None, None, self.weight, self.bias, True, 0.1, self.eps)
        # Statistics in fp32 whatever the autocast dtype, as the moments were accumulated.
        y = F.batch_norm(
            x.float(),
            mean.to(x.device, torch.float32),
            var.to(x.device, torch.float32),
            self.weight,
            self.bias,
            False,
            0.0,
            self.eps,
        )
        return y.to(x.dtype)

    @contextmanager
    def fixed_to(self, moments: Moments) -> Iterator[None]:
        """Within the block, normalise with these (mean, variance) instead of the input's."""
        self.fixed_mean, self.fixed_var = moments
        try:
            yield
        finally:
            self.fixed_mean = self.fixed_var = None

    def extra_repr(self) -> str:
        return f"{self.channels}, eps={self.eps}"


class ConvNormAct(nn.Sequential):
    """Reflection-padded conv, then instance norm and ReLU (both optional).

    Besides running as a whole, it splits at its norm for tiled inference: :meth:`to_norm`
    (padding and conv) and :meth:`from_norm` (norm and activation).
    """

    __jit_unused_properties__ = ["norm"]  # for tiling only; TorchScript need not compile it

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int,
        stride: int = 1,
        norm: bool = True,
        act: bool = True,
    ) -> None:
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(kernel // 2),
            nn.Conv2d(c_in, c_out, kernel, stride=stride),
        ]
        if norm:
            layers.append(InstanceNorm(c_out))
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)
        self.out_channels = c_out
        # Input pixels a pixel of the output depends on, on each side.
        self.reach = kernel // 2
        self.scale = 1 / stride

    @property
    def norm(self) -> InstanceNorm | None:
        return self[2] if len(self) > 2 and isinstance(self[2], InstanceNorm) else None

    def to_norm(self, x: torch.Tensor) -> torch.Tensor:
        """Padding and convolution: the input of the norm."""
        return self[1](self[0](x))

    def from_norm(self, x: torch.Tensor) -> torch.Tensor:
        """Norm and activation, applied to :meth:`to_norm`'s output."""
        for layer in list(self)[2:]:
            x = layer(x)
        return x

    def out_size(self, height: int, width: int) -> tuple[int, int]:
        # Reflection padding by kernel // 2: a stride-s conv gives ceil(size / s).
        s = round(1 / self.scale)
        return -(-height // s), -(-width // s)


class ResidualBlock(nn.Module):
    __jit_unused_properties__ = ["layers"]

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvNormAct(channels, channels, 3),
            ConvNormAct(channels, channels, 3, act=False),
        )

    @property
    def layers(self) -> tuple["ConvNormAct", ...]:
        """The block's layers in order; their result is added to the block's input."""
        return tuple(self.body)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Upsample(nn.Sequential):
    """2x nearest-neighbour resize, then a conv: no checkerboard artefacts."""

    __jit_unused_properties__ = ["norm"]

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(nn.Upsample(scale_factor=2, mode="nearest"), ConvNormAct(c_in, c_out, 3))
        self.out_channels = c_out
        self.reach = 1  # the 3x3 conv's one pixel at the doubled size is within one input pixel
        self.scale = 2.0

    @property
    def norm(self) -> InstanceNorm | None:
        return self[1].norm

    def to_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self[1].to_norm(self[0](x))

    def from_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self[1].from_norm(x)

    def out_size(self, height: int, width: int) -> tuple[int, int]:
        return 2 * height, 2 * width


@dataclass(frozen=True)
class Stage:
    """A part of the network as tiled inference walks it.

    ``chain``: blocks applied one after another, each with ``to_norm``/``from_norm``,
    ``norm``, ``scale``, ``reach``, ``out_channels`` and ``out_size``. ``residual``: blocks at
    one resolution, each adding its ``layers`` (chain-like blocks, ``reach`` rows of context
    each) to its input.
    """

    kind: str
    blocks: tuple[nn.Module, ...]


class TransformerNet(nn.Module):
    """Image-to-image style network. Input and output: float RGB in [0, 1], NCHW, same size.

    Args:
        base_channels: width of the first stage; the two downsampled stages have 2x and 4x.
            The paper uses 32.
        num_residual_blocks: residual blocks at 1/4 resolution; the paper uses 5.

    Code that walks the network (tiling, memory planning) uses :meth:`stages`,
    :meth:`norm_layers` and :meth:`finish`, never its attributes.
    """

    # Below this the reflection padding of the 1/4-resolution stage has nothing to reflect.
    min_size = 8
    __constants__ = ["min_size"]  # lets torch.jit.script read it

    def __init__(self, base_channels: int = 32, num_residual_blocks: int = 5) -> None:
        super().__init__()
        check_number(base_channels, "base_channels", 1, integer=True)
        check_number(num_residual_blocks, "num_residual_blocks", 0, integer=True)
        c = base_channels
        self.encoder = nn.Sequential(
            ConvNormAct(3, c, 9),
            ConvNormAct(c, 2 * c, 3, stride=2),
            ConvNormAct(2 * c, 4 * c, 3, stride=2),
        )
        self.residuals = nn.Sequential(*(ResidualBlock(4 * c) for _ in range(num_residual_blocks)))
        self.decoder = nn.Sequential(
            Upsample(4 * c, 2 * c),
            Upsample(2 * c, c),
            ConvNormAct(c, 3, 9, norm=False, act=False),
        )

    def stages(self) -> list[Stage]:
        """The network in the order it runs: ``forward`` is :meth:`finish` of the stages."""
        return [
            Stage("chain", tuple(self.encoder)),
            Stage("residual", tuple(self.residuals)),
            Stage("chain", tuple(self.decoder)),
        ]

    def norm_layers(self) -> list[InstanceNorm]:
        """Every norm of the network, in the order the forward pass runs them."""
        norms: list[InstanceNorm] = []
        for stage in self.stages():
            for block in stage.blocks:
                for layer in block.layers if stage.kind == "residual" else (block,):
                    if layer.norm is not None:
                        norms.append(layer.norm)
        return norms

    def finish(self, y: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """The last stage's output -> the image: cropped to the input size, in [0, 1]."""
        # A sigmoid keeps the output inside the pixel contract's [0, 1] without clipping
        # gradients away (a clamp would zero them for out-of-range pixels).
        return torch.sigmoid(y[:, :, :height, :width])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        if h < self.min_size or w < self.min_size:
            # Tiny images: replicate up to the minimum, cropped off again below.
            pad = [0, max(self.min_size - w, 0), 0, max(self.min_size - h, 0)]
            x = F.pad(x, pad, mode="replicate")
        # Any other size goes straight in: a stride-2 conv of an odd size rounds up, the 2x
        # upsampling then overshoots by at most 3 pixels, and the crop restores the input size.
        # No shape arithmetic precedes the network, so exported graphs (ONNX, TorchScript)
        # keep height and width dynamic.
        y = self.decoder(self.residuals(self.encoder(x)))
        return self.finish(y, h, w)
