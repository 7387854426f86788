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

from fastnst.checks import check_number

Moments = tuple[torch.Tensor, torch.Tensor]  # per-channel mean and (biased) variance


def _one_style_as_1d(module: nn.Module, state: dict, prefix: str, local_metadata: dict) -> None:
    """state_dict hook: a one-style norm's 1 x C rows are written as C values."""
    for name in ("weight", "bias"):
        value = state.get(prefix + name)
        if value is not None and value.dim() == 2 and value.shape[0] == 1:
            state[prefix + name] = value[0]


def _1d_as_one_style(state: dict, prefix: str, *args: object) -> None:
    """load_state_dict pre-hook: C values (a one-style checkpoint) become the one row."""
    for name in ("weight", "bias"):
        value = state.get(prefix + name)
        if value is not None and value.dim() == 1:
            state[prefix + name] = value[None]


class InstanceNorm(nn.Module):
    """Instance norm with a learned per-channel scale and shift, one pair per style.

    Conditional instance norm (Dumoulin, Shlens & Kudlur 2017): ``weight`` and ``bias`` hold one
    row per style (num_styles x channels), and each image is scaled and shifted by the rows
    mixed by its style weights (``mix``: N x num_styles or 1 x num_styles, rows summing to 1);
    a blend of styles is a blend of these rows. One style is the case of one row: the
    arithmetic of ``nn.InstanceNorm2d(c, affine=True)``, and in the state_dict (checkpoints,
    exports) its 1-D ``weight`` and ``bias``, converted where the state_dict is written and
    read, so one-style checkpoints of every release load and are written as they were.

    Two abilities for code that runs the network piecewise:
    :meth:`fixed_to` makes it use given statistics instead of the input's own (tiled
    inference, :mod:`fastnst.tiling`), and ``fixed_mix`` (set by
    :meth:`TransformerNet.styled`) is the mix used when none is passed.
    """

    __constants__ = ["eps"]
    # Set only within fixed_to() and TransformerNet.styled(). TorchScript reads these
    # annotations (so this module does not use `from __future__ import annotations`, which
    # would turn them into strings).
    fixed_mean: Optional[torch.Tensor]  # noqa: UP045
    fixed_var: Optional[torch.Tensor]  # noqa: UP045
    fixed_mix: Optional[torch.Tensor]  # noqa: UP045

    def __init__(self, channels: int, eps: float = 1e-5, num_styles: int = 1) -> None:
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_styles, channels))
        self.bias = nn.Parameter(torch.zeros(num_styles, channels))
        self._register_state_dict_hook(_one_style_as_1d)
        self._register_load_state_dict_pre_hook(_1d_as_one_style)
        self.fixed_mean = None
        self.fixed_var = None
        self.fixed_mix = None

    @property
    def num_styles(self) -> int:
        return self.weight.shape[0]

    def forward(self, x: torch.Tensor, mix: Optional[torch.Tensor] = None) -> torch.Tensor:  # noqa: UP045
        mean, var = self.fixed_mean, self.fixed_var
        if self.weight.shape[0] == 1:  # one style: its row, whatever the mix
            weight, bias = self.weight[0], self.bias[0]
            mix = None
        else:
            if mix is None:
                mix = self.fixed_mix
            if mix is None:
                raise RuntimeError("this network holds several styles: give it a style mix")
            weight, bias = None, None
        if mean is None or var is None:
            y = F.instance_norm(x, None, None, weight, bias, True, 0.1, self.eps)
        else:
            # Statistics in fp32 whatever the autocast dtype, as the moments were accumulated.
            y = F.batch_norm(
                x.float(),
                mean.to(x.device, torch.float32),
                var.to(x.device, torch.float32),
                weight,
                bias,
                False,
                0.0,
                self.eps,
            ).to(x.dtype)
        if mix is not None:
            # Each image's scale and shift: its style weights times the styles' rows.
            mix = mix.to(self.weight)
            scale = (mix @ self.weight)[:, :, None, None]
            shift = (mix @ self.bias)[:, :, None, None]
            y = (y * scale + shift).to(x.dtype)
        return y

    @contextmanager
    def fixed_to(self, moments: Moments) -> Iterator[None]:
        """Within the block, normalise with these (mean, variance) instead of the input's."""
        self.fixed_mean, self.fixed_var = moments
        try:
            yield
        finally:
            self.fixed_mean = self.fixed_var = None

    def add_styles(self, count: int) -> None:
        """Append ``count`` style rows, each starting as the mean of the existing ones."""
        weight, bias = self.weight.data, self.bias.data
        self.weight = nn.Parameter(torch.cat([weight, weight.mean(0).expand(count, -1)]))
        self.bias = nn.Parameter(torch.cat([bias, bias.mean(0).expand(count, -1)]))

    def extra_repr(self) -> str:
        styles = f", num_styles={self.num_styles}" if self.num_styles > 1 else ""
        return f"{self.channels}, eps={self.eps}{styles}"


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
        num_styles: int = 1,
    ) -> None:
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(kernel // 2),
            nn.Conv2d(c_in, c_out, kernel, stride=stride),
        ]
        if norm:
            layers.append(InstanceNorm(c_out, num_styles=num_styles))
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)
        self.out_channels = c_out
        # Input pixels a pixel of the output depends on, on each side.
        self.reach = kernel // 2
        self.scale = 1 / stride

    def forward(self, x: torch.Tensor, mix: Optional[torch.Tensor] = None) -> torch.Tensor:  # noqa: UP045
        for layer in self:
            x = layer(x, mix) if isinstance(layer, InstanceNorm) else layer(x)
        return x

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

    def __init__(self, channels: int, num_styles: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvNormAct(channels, channels, 3, num_styles=num_styles),
            ConvNormAct(channels, channels, 3, act=False, num_styles=num_styles),
        )

    @property
    def layers(self) -> tuple["ConvNormAct", ...]:
        """The block's layers in order; their result is added to the block's input."""
        return tuple(self.body)

    def forward(self, x: torch.Tensor, mix: Optional[torch.Tensor] = None) -> torch.Tensor:  # noqa: UP045
        y = x
        for layer in self.body:
            y = layer(y, mix)
        return x + y


class Upsample(nn.Sequential):
    """2x nearest-neighbour resize, then a conv: no checkerboard artefacts."""

    __jit_unused_properties__ = ["norm"]

    def __init__(self, c_in: int, c_out: int, num_styles: int = 1) -> None:
        super().__init__(
            nn.Upsample(scale_factor=2, mode="nearest"),
            ConvNormAct(c_in, c_out, 3, num_styles=num_styles),
        )
        self.out_channels = c_out
        self.reach = 1  # the 3x3 conv's one pixel at the doubled size is within one input pixel
        self.scale = 2.0

    def forward(self, x: torch.Tensor, mix: Optional[torch.Tensor] = None) -> torch.Tensor:  # noqa: UP045
        return self[1](self[0](x), mix)

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
        num_styles: paintings the network holds. Above 1 every norm is a conditional
            instance norm (one scale and shift per style) and each forward pass takes a
            style mix: ``net(x, style)`` with ``style`` a vector of ``num_styles`` weights
            (or one row per image), >= 0 and not all 0; they are divided by their sum, so
            ``[1, 0, ...]`` is the first style and ``[0.7, 0.3, ...]`` a blend. Or set it
            for a block of code with :meth:`styled`.

    Code that walks the network (tiling, memory planning) uses :meth:`stages`,
    :meth:`norm_layers` and :meth:`finish`, never its attributes.
    """

    # Below this the reflection padding of the 1/4-resolution stage has nothing to reflect.
    min_size = 8
    __constants__ = ["min_size"]  # lets torch.jit.script read it

    def __init__(
        self, base_channels: int = 32, num_residual_blocks: int = 5, num_styles: int = 1
    ) -> None:
        super().__init__()
        check_number(base_channels, "base_channels", 1, integer=True)
        check_number(num_residual_blocks, "num_residual_blocks", 0, integer=True)
        check_number(num_styles, "num_styles", 1, integer=True)
        c, s = base_channels, num_styles
        self.base_channels = base_channels
        self.num_residual_blocks = num_residual_blocks
        self.num_styles = num_styles
        self.encoder = nn.Sequential(
            ConvNormAct(3, c, 9, num_styles=s),
            ConvNormAct(c, 2 * c, 3, stride=2, num_styles=s),
            ConvNormAct(2 * c, 4 * c, 3, stride=2, num_styles=s),
        )
        self.residuals = nn.Sequential(
            *(ResidualBlock(4 * c, num_styles=s) for _ in range(num_residual_blocks))
        )
        self.decoder = nn.Sequential(
            Upsample(4 * c, 2 * c, num_styles=s),
            Upsample(2 * c, c, num_styles=s),
            ConvNormAct(c, 3, 9, norm=False, act=False),
        )

    def settings(self) -> dict[str, int]:
        """The constructor's arguments (what a checkpoint stores to rebuild the network)."""
        settings = {
            "base_channels": self.base_channels,
            "num_residual_blocks": self.num_residual_blocks,
        }
        return {**settings, "num_styles": self.num_styles} if self.num_styles > 1 else settings

    def add_styles(self, count: int) -> None:
        """Make room for ``count`` more styles: a row of scale and shift in every norm, each
        starting as the mean of the existing styles' rows. Nothing else changes."""
        check_number(count, "count", 1, integer=True)
        for norm in self.norm_layers():
            norm.add_styles(count)
        self.num_styles += count

    def style_parameters(self) -> list[nn.Parameter]:
        """The norms' scales and shifts: the only per-style parameters."""
        return [p for norm in self.norm_layers() for p in (norm.weight, norm.bias)]

    def check_mix(self, style: torch.Tensor) -> torch.Tensor:
        """A style mix as the norms take it: N x num_styles (or 1 x), rows summing to 1."""
        if style.dim() == 1:
            style = style.unsqueeze(0)
        if style.dim() != 2 or style.shape[1] != self.num_styles:
            raise ValueError(
                f"a style mix must have {self.num_styles} weights, got shape {style.shape}"
            )
        return style / style.sum(dim=1, keepdim=True)

    @contextmanager
    def styled(self, style: torch.Tensor | None) -> Iterator[None]:
        """Within the block, calls without a style mix use ``style`` (see the class).
        Piecewise runs (tiling) go through this. ``None``, or a one-style network: no change."""
        if style is None or self.num_styles == 1:
            yield
            return
        mix = self.check_mix(style)
        norms = self.norm_layers()
        for norm in norms:
            norm.fixed_mix = mix
        try:
            yield
        finally:
            for norm in norms:
                norm.fixed_mix = None

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

    def forward(self, x: torch.Tensor, style: Optional[torch.Tensor] = None) -> torch.Tensor:  # noqa: UP045
        h, w = x.shape[-2], x.shape[-1]
        if h < self.min_size or w < self.min_size:
            # Tiny images: replicate up to the minimum, cropped off again below.
            pad = [0, max(self.min_size - w, 0), 0, max(self.min_size - h, 0)]
            x = F.pad(x, pad, mode="replicate")
        # Any other size goes straight in: a stride-2 conv of an odd size rounds up, the 2x
        # upsampling then overshoots by at most 3 pixels, and the crop restores the input size.
        # No shape arithmetic precedes the network, so exported graphs (ONNX, TorchScript)
        # keep height and width dynamic.
        mix: Optional[torch.Tensor] = None  # noqa: UP045
        if style is not None and self.num_styles > 1:
            mix = self.check_mix(style)
        for layer in self.encoder:
            x = layer(x, mix)
        for block in self.residuals:
            x = block(x, mix)
        for layer in self.decoder:
            x = layer(x, mix)
        return self.finish(x, h, w)
