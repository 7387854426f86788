"""The feed-forward style network of Johnson, Alahi & Fei-Fei (2016).

Read top to bottom it is the paper's figure: a 9x9 conv, two stride-2 convs down, a stack of
residual blocks, two upsampling stages back, and a 9x9 conv to RGB. Two changes from the paper,
both standard since: instance norm instead of batch norm (Ulyanov et al. 2016), and
nearest-neighbour resize followed by a conv instead of transposed convs, which paint
checkerboards (Odena et al. 2016, "Deconvolution and Checkerboard Artifacts").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvNormAct(nn.Sequential):
    """Reflection-padded conv, then instance norm and ReLU (both optional)."""

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
            layers.append(nn.InstanceNorm2d(c_out, affine=True))
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvNormAct(channels, channels, 3),
            ConvNormAct(channels, channels, 3, act=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Upsample(nn.Sequential):
    """2x nearest-neighbour resize, then a conv: no checkerboard artefacts."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(nn.Upsample(scale_factor=2, mode="nearest"), ConvNormAct(c_in, c_out, 3))


class TransformerNet(nn.Module):
    """Image-to-image style network. Input and output: float RGB in [0, 1], NCHW, same size.

    Args:
        base_channels: width of the first stage; the two downsampled stages have 2x and 4x.
            The paper uses 32.
        num_residual_blocks: residual blocks at 1/4 resolution; the paper uses 5.
    """

    # Below this the reflection padding of the 1/4-resolution stage has nothing to reflect.
    min_size = 8
    __constants__ = ["min_size"]  # lets torch.jit.script read it

    def __init__(self, base_channels: int = 32, num_residual_blocks: int = 5) -> None:
        super().__init__()
        if base_channels < 1 or num_residual_blocks < 0:
            raise ValueError("base_channels must be >= 1 and num_residual_blocks >= 0")
        self.base_channels = base_channels  # read by fastnst.inference's memory estimate
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
        # A sigmoid keeps the output inside the pixel contract's [0, 1] without clipping
        # gradients away (a clamp would zero them for out-of-range pixels).
        return torch.sigmoid(y[:, :, :h, :w])
