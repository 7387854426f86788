"""Exact tiled inference of TransformerNet: whole-image instance-norm statistics, tile by tile.

Every instance norm of the network normalises each channel by its mean and variance over the
whole image; tiles that normalise themselves disagree and the seams show. Here each norm's
statistics are accumulated over the whole image before any later layer runs, so the result
equals the untiled forward pass up to float rounding, while only one tile (or band) of
full-resolution activations exists at a time:

1. Encoder (full resolution -> 1/4): for each of its three norms, one pass over the image in
   tiles computes the layers up to that norm (earlier norms fixed) and sums the channel
   moments over each tile's own region; then a last pass stores the encoder's output, a map at
   1/4 resolution (4c channels: 8 floats per input pixel for the default c = 32).
2. Residual blocks work on that stored map in horizontal bands (one row of context per 3x3
   conv): conv, whole-map moments, normalise; exactly one pass, no recomputation.
3. Decoder (1/4 -> full resolution): two moment passes for its two norms, then the output
   pass, again in tiles.

Cost: about 1.6 untiled forward passes of arithmetic (the encoder and decoder prefixes are
recomputed per norm; the residual stack, most of the work, runs once). Memory: three 1/4-res
maps (``EXACT_BYTES_PER_PIXEL``) plus one tile's pass.

When even those maps do not fit, :func:`stylize_tiled` (end of this module) approximates:
statistics from one pass over a downscaled copy of the image (the "thumbnail instance
normalisation" of Chen et al. 2022, URST), tiles with context thrown away and cross-faded.

Each tile carries ``CONTEXT`` input pixels on every inner side, more than the reach of the
layers it runs, so its own region is computed exactly as in the whole image; tile starts are
multiples of 4 so the stride-2 convolutions sample the same grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from fastnst.transformer import ConvNormAct, TransformerNet

# Bytes per input pixel of the three stored 1/4-resolution maps, per base channel
# (3 maps x 4c channels / 16 pixels x 4 bytes = 3c bytes).
EXACT_BYTES_PER_PIXEL_PER_CHANNEL = 3
# Input pixels of context per inner tile side, in the tile's own map: more than the encoder's
# reach (4 + 1 + 2 = 7 px) and the decoder's (about 2 px at 1/4 resolution); a multiple of 4.
CONTEXT = 16

Moments = tuple[torch.Tensor, torch.Tensor]  # per-channel mean, biased variance


@contextmanager
def fixed(norms: dict[nn.InstanceNorm2d, Moments]) -> Iterator[None]:
    """Within the block, each given instance norm uses the given mean and variance."""

    def forward_for(layer: nn.InstanceNorm2d, mean: torch.Tensor, var: torch.Tensor) -> Callable:
        def forward(x: torch.Tensor) -> torch.Tensor:
            y = F.batch_norm(
                x.float(),
                mean.to(x.device, torch.float32),
                var.to(x.device, torch.float32),
                layer.weight,
                layer.bias,
                training=False,
                eps=layer.eps,
            )
            return y.to(x.dtype)

        return forward

    for layer, (mean, var) in norms.items():
        layer.forward = forward_for(layer, mean, var)  # an instance attribute shadows the method
    try:
        yield
    finally:
        for layer in norms:
            del layer.forward


def _spans(size: int, tile: int, align: int) -> list[tuple[int, int]]:
    """A partition of [0, size) into spans of about ``tile``, starts multiples of ``align``."""
    step = max(align, tile // align * align)
    return [(a, min(a + step, size)) for a in range(0, size, step)]


class _Moments:
    """Per-channel sums of x and x^2 (float64) over the regions it is given."""

    def __init__(self) -> None:
        self.sum: torch.Tensor | None = None
        self.sq: torch.Tensor | None = None
        self.count = 0

    def add(self, x: torch.Tensor) -> None:
        x = x.double()
        s, q = x.sum(dim=(0, 2, 3)).cpu(), x.square().sum(dim=(0, 2, 3)).cpu()
        self.sum = s if self.sum is None else self.sum + s
        self.sq = q if self.sq is None else self.sq + q
        self.count += x.shape[0] * x.shape[2] * x.shape[3]

    def result(self) -> Moments:
        assert self.sum is not None and self.sq is not None
        mean = self.sum / self.count
        var = (self.sq / self.count - mean.square()).clamp_(min=0)
        return mean.float(), var.float()


def _over_tiles(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    tile: int,
    scale: float,
    align: int,
    sink: Callable[[torch.Tensor, slice, slice], None],
    device: torch.device,
) -> None:
    """Run ``fn`` (a map to a map ``scale`` times the size) over ``x`` in tiles; hand each
    tile's own output region, with its place in the output, to ``sink``."""
    height, width = x.shape[-2:]
    for y0, y1 in _spans(height, tile, align):
        for x0, x1 in _spans(width, tile, align):
            cy0, cx0 = max(0, y0 - CONTEXT), max(0, x0 - CONTEXT)
            cy1, cx1 = min(height, y1 + CONTEXT), min(width, x1 + CONTEXT)
            out = fn(x[:, :, cy0:cy1, cx0:cx1].to(device))
            oy0, ox0 = round((y0 - cy0) * scale), round((x0 - cx0) * scale)
            # The last span of an axis keeps everything to the end (stride-2 convs round up).
            oy1 = out.shape[2] if y1 == height else oy0 + round((y1 - y0) * scale)
            ox1 = out.shape[3] if x1 == width else ox0 + round((x1 - x0) * scale)
            ty0, tx0 = round(y0 * scale), round(x0 * scale)
            sink(
                out[:, :, oy0:oy1, ox0:ox1],
                slice(ty0, ty0 + oy1 - oy0),
                slice(tx0, tx0 + ox1 - ox0),
            )


def _conv(block: ConvNormAct, x: torch.Tensor) -> torch.Tensor:
    """A ConvNormAct's padding and convolution only (the input of its norm)."""
    return block[1](block[0](x))


def _after_norm(block: ConvNormAct, x: torch.Tensor) -> torch.Tensor:
    """A ConvNormAct's norm and activation, applied to its convolution's output."""
    for layer in list(block)[2:]:
        x = layer(x)
    return x


@torch.inference_mode()
def stylize_exact(
    net: TransformerNet,
    image: torch.Tensor,
    tile: int,
    device: torch.device,
    autocast: Callable[[], AbstractContextManager] = nullcontext,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """The untiled ``net(image)`` for a 1x3xHxW CPU image, computed tile by tile.

    Args:
        net: the network (its modules are only called, never changed for good).
        image: float RGB in [0, 1] on the CPU.
        tile: tile side in input pixels for the full-resolution passes.
        device: where the tiles run; the stored maps stay on the CPU.
        autocast: a context manager factory for reduced precision (moments stay fp32/fp64).
        progress: called with 1 after each pass over the image.
    """
    if image.shape[0] != 1:
        raise ValueError("stylize_exact takes one image")
    height, width = image.shape[-2:]
    tile = max(64, tile // 4 * 4)
    stats: dict[nn.InstanceNorm2d, Moments] = {}
    step = progress or (lambda n: None)

    def moments_of(fn: Callable, x: torch.Tensor, tile_: int, scale: float, align: int) -> Moments:
        acc = _Moments()
        with autocast(), fixed(stats):
            _over_tiles(fn, x, tile_, scale, align, lambda o, *_: acc.add(o), device)
        step(1)
        return acc.result()

    def stored(fn: Callable, x: torch.Tensor, tile_: int, scale: float, align: int, shape):
        out = torch.empty(shape)

        def sink(o: torch.Tensor, ys: slice, xs: slice) -> None:
            out[:, :, ys, xs] = o.float().cpu()

        with autocast(), fixed(stats):
            _over_tiles(fn, x, tile_, scale, align, sink, device)
        step(1)
        return out

    # 1. Encoder: a moment pass per norm, then its output map at 1/4 resolution.
    encoder = list(net.encoder)
    for k, block in enumerate(encoder):

        def prefix(x: torch.Tensor, k: int = k, block: ConvNormAct = block) -> torch.Tensor:
            for earlier in encoder[:k]:
                x = earlier(x)
            return _conv(block, x)

        stats[block[2]] = moments_of(prefix, image, tile, 1 / 2 ** min(k, 2), 4)
    quarter = (math.ceil(math.ceil(height / 2) / 2), math.ceil(math.ceil(width / 2) / 2))
    x = stored(net.encoder, image, tile, 1 / 4, 4, (1, 4 * net.base_channels, *quarter))

    # 2. Residual blocks on the stored map, in full-width bands with one row of context.
    band = max(16, tile // 4)

    def banded(block: ConvNormAct, src: torch.Tensor) -> torch.Tensor:
        """The block's convolution over the whole map, band by band."""
        out = torch.empty(src.shape[0], block[1].out_channels, *src.shape[2:])
        rows = src.shape[2]
        with autocast():
            for r0, r1 in _spans(rows, band, 1):
                c0, c1 = max(0, r0 - 1), min(rows, r1 + 1)
                o = _conv(block, src[:, :, c0:c1].to(device)).float().cpu()
                out[:, :, r0:r1] = o[:, :, r0 - c0 : r1 - c0]
        return out

    def normalise(block: ConvNormAct, m: torch.Tensor, into: torch.Tensor | None) -> None:
        """Whole-map moments of the block's conv output ``m``, then its norm (and ReLU),
        written back into ``m`` or added onto ``into`` (the residual connection)."""
        acc = _Moments()
        for r0, r1 in _spans(m.shape[2], band, 1):
            acc.add(m[:, :, r0:r1])
        stats[block[2]] = acc.result()
        with autocast(), fixed(stats):
            for r0, r1 in _spans(m.shape[2], band, 1):  # norm and ReLU are pointwise
                o = _after_norm(block, m[:, :, r0:r1].to(device)).float().cpu()
                if into is None:
                    m[:, :, r0:r1] = o
                else:
                    into[:, :, r0:r1] += o

    for residual in net.residuals:
        first, second = residual.body
        h = banded(first, x)
        normalise(first, h, None)
        g = banded(second, h)
        del h
        normalise(second, g, x)
        del g
        step(1)

    # 3. Decoder: a moment pass per norm (two upsampling stages), then the output.
    up1, up2, last = net.decoder
    small_tile = max(16, tile // 4)
    stats[up1[1][2]] = moments_of(lambda t: _conv(up1[1], up1[0](t)), x, small_tile, 2, 1)
    stats[up2[1][2]] = moments_of(lambda t: _conv(up2[1], up2[0](up1(t))), x, small_tile, 4, 1)
    y = stored(net.decoder, x, small_tile, 4, 1, (1, 3, 4 * quarter[0], 4 * quarter[1]))
    return y.sigmoid_()[:, :, :height, :width]


def exact_memory(net: TransformerNet, height: int, width: int) -> int:
    """Bytes of the maps :func:`stylize_exact` keeps on the CPU for a height x width image."""
    return height * width * net.base_channels * EXACT_BYTES_PER_PIXEL_PER_CHANNEL


def count_passes(net: TransformerNet) -> int:
    """How many times :func:`stylize_exact` calls ``progress``."""
    return 3 + 1 + len(net.residuals) + 2 + 1


# --- approximate tiling: thumbnail statistics, cross-faded tiles ---------------------------

# Tile sides are multiples of this so the stride-2 stages of a tile sample the same grid as
# the whole image would.
TILE_ALIGN = 4
# Extra context computed around each tile and thrown away: the network's reach from a pixel is
# about 55 px (two 9x9 convs, ten 3x3 convs at 1/4 resolution), so errors from the tile's own
# border padding fade out before the kept part.
TILE_CONTEXT = 32
# Width of the smooth cross-fade between neighbouring tiles.
TILE_BLEND = 32


def _norm_layers(net: nn.Module) -> list[nn.InstanceNorm2d]:
    return [m for m in net.modules() if isinstance(m, nn.InstanceNorm2d)]


@torch.inference_mode()
def norm_statistics(net: nn.Module, image: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
    """Per-channel (mean, variance) at the input of every instance norm, for a 1xCxHxW image."""
    if image.shape[0] != 1:
        raise ValueError("norm_statistics takes one image")
    stats: list[tuple[torch.Tensor, ...]] = []

    def record(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0].float()
        stats.append((x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False)))

    handles = [m.register_forward_pre_hook(record) for m in _norm_layers(net)]
    try:
        net(image)
    finally:
        for h in handles:
            h.remove()
    return stats


def fixed_norm_statistics(
    net: nn.Module, stats: list[tuple[torch.Tensor, ...]]
) -> AbstractContextManager[None]:
    """Within the block, every instance norm of ``net`` uses the given statistics."""
    layers = _norm_layers(net)
    if len(layers) != len(stats):
        raise ValueError(f"{len(stats)} statistics for {len(layers)} instance-norm layers")
    return fixed({layer: (s[0], s[1]) for layer, s in zip(layers, stats, strict=True)})


def _blend_spans(size: int, tile: int) -> list[tuple[int, int]]:
    """Kept spans [start, end) along one axis: aligned starts, neighbours overlap by TILE_BLEND."""
    if size <= tile:
        return [(0, size)]
    step = max(TILE_ALIGN, (tile - TILE_BLEND) // TILE_ALIGN * TILE_ALIGN)
    spans, start = [], 0
    while start + tile < size:
        spans.append((start, start + tile))
        start += step
    spans.append((start, size))
    return spans


def _ramp(length: int, start: int, end: int, size: int) -> torch.Tensor:
    """1-D weights of a kept span: raised-cosine ramps over TILE_BLEND at inner edges."""
    w = torch.ones(length)
    fade = min(TILE_BLEND, length // 2)
    if fade:
        up = 0.5 - 0.5 * torch.cos(math.pi * (torch.arange(fade) + 0.5) / fade)
        if start > 0:
            w[:fade] = up
        if end < size:
            w[-fade:] = torch.minimum(w[-fade:], up.flip(0))
    return w


def stylize_tiled(
    forward: Callable[[torch.Tensor], torch.Tensor],
    net: nn.Module,
    image: torch.Tensor,
    tile: int,
    stats: list[tuple[torch.Tensor, ...]],
    device: torch.device,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Stylize a 1x3xHxW CPU image tile by tile with fixed instance-norm statistics.

    Each tile is computed with TILE_CONTEXT extra pixels on every inner side (thrown away) and
    cross-faded with its neighbours over TILE_BLEND pixels. Only one tile is on ``device`` at a
    time; the result is assembled on the CPU.
    """
    _, _, height, width = image.shape
    tile = max(TILE_ALIGN * 16, tile // TILE_ALIGN * TILE_ALIGN)
    out = torch.zeros(1, 3, height, width)
    weight = torch.zeros(1, 1, height, width)
    rows, cols = _blend_spans(height, tile), _blend_spans(width, tile)
    with fixed_norm_statistics(net, stats):
        for y0, y1 in rows:
            wy = _ramp(y1 - y0, y0, y1, height)
            for x0, x1 in cols:
                wx = _ramp(x1 - x0, x0, x1, width)
                # Context rounded to the alignment so the tile's grid matches the image's.
                cy0, cx0 = max(0, y0 - TILE_CONTEXT), max(0, x0 - TILE_CONTEXT)
                cy1, cx1 = min(height, y1 + TILE_CONTEXT), min(width, x1 + TILE_CONTEXT)
                piece = image[:, :, cy0:cy1, cx0:cx1].to(device)
                result = forward(piece).float().cpu()
                kept = result[:, :, y0 - cy0 : y1 - cy0, x0 - cx0 : x1 - cx0]
                w = (wy[:, None] * wx[None, :])[None, None]
                out[:, :, y0:y1, x0:x1] += kept * w
                weight[:, :, y0:y1, x0:x1] += w
                if progress is not None:
                    progress(1)
    return out.div_(weight)


def count_tiles(height: int, width: int, tile: int) -> int:
    tile = max(TILE_ALIGN * 16, tile // TILE_ALIGN * TILE_ALIGN)
    return len(_blend_spans(height, tile)) * len(_blend_spans(width, tile))
