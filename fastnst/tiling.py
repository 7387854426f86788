"""Exact tiled inference of TransformerNet: whole-image instance-norm statistics, tile by tile.

Every instance norm of the network normalises each channel by its mean and variance over the
whole image; tiles that normalise themselves disagree and the seams show. Here each norm's
statistics are accumulated over the whole image before any later layer runs, so the result
equals the untiled forward pass up to float rounding, while only one tile (or band) of
full-resolution activations exists at a time. The walk follows what the network declares
(``net.stages()``: chains of blocks and residual stages; its norms are
:class:`fastnst.transformer.InstanceNorm`, which take fixed statistics), so other widths and
depths tile exactly too. For the Johnson network:

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
maps (:func:`exact_memory`) plus one tile's pass.

When even those maps do not fit, :func:`stylize_tiled` (end of this module) approximates:
statistics from one pass over a downscaled copy of the image (the "thumbnail instance
normalisation" of Chen et al. 2022, URST), tiles with context thrown away and cross-faded.

Each tile carries ``CONTEXT`` input pixels on every inner side, more than the reach of the
layers it runs, so its own region is computed exactly as in the whole image; tile starts are
multiples of the chain's total stride (4) so its stride-2 convolutions sample the same grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from fastnst.transformer import InstanceNorm, Moments, Stage, TransformerNet

# Input pixels of context per inner tile side, in the tile's own map: more than the encoder's
# reach (4 + 1 + 2 = 7 px) and the decoder's (about 2 px at 1/4 resolution); a multiple of 4.
CONTEXT = 16
# The smallest tile side in input pixels (of either kind of tiling): below it the context
# outweighs the tile.
MIN_TILE = 64
# The smallest band or tile of a stage working at reduced resolution, in its own pixels.
MIN_STAGE_TILE = 16
# Bytes per float32 value.
_FLOAT = 4


@contextmanager
def fixed(norms: dict[InstanceNorm, Moments]) -> Iterator[None]:
    """Within the block, each given norm uses the given mean and variance."""
    with ExitStack() as stack:
        for layer, moments in norms.items():
            stack.enter_context(layer.fixed_to(moments))
        yield


def check_tileable(net: nn.Module) -> list[InstanceNorm]:
    """The network's norms, once it is known that tiling can drive every one of them."""
    declared = net.norm_layers()
    others = [
        type(m).__name__
        for m in net.modules()
        if isinstance(m, nn.modules.batchnorm._NormBase | nn.GroupNorm | nn.LayerNorm)
        or (isinstance(m, InstanceNorm) and not any(m is d for d in declared))
    ]
    if others:
        raise TypeError(
            f"tiling cannot drive the norm layer(s) {sorted(set(others))} of "
            f"{type(net).__name__}: its norms must be fastnst InstanceNorms listed by its stages"
        )
    return declared


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


def _chain_scales(blocks: Sequence[nn.Module]) -> list[float]:
    """The resolution of each block's output relative to the chain's input."""
    scales, scale = [], 1.0
    for block in blocks:
        scale *= block.scale
        scales.append(scale)
    return scales


def _chain_align(blocks: Sequence[nn.Module]) -> int:
    """Tile starts must be multiples of this for the chain's strided convs to sample the
    same grid as the whole image."""
    return max(1, round(1 / min(1.0, *_chain_scales(blocks))))


def _chain_reach(blocks: Sequence[nn.Module]) -> float:
    """Input pixels of the chain that one output pixel depends on, on each side."""
    reach, scale = 0.0, 1.0
    for block in blocks:
        reach += block.reach / scale
        scale *= block.scale
    return reach


def _walk(net: TransformerNet) -> Iterator[tuple[Stage, float, float]]:
    """Each declared stage with the resolution of its input and of its output, relative to
    the image."""
    scale = 1.0
    for stage in net.stages():
        out = scale * _chain_scales(stage.blocks)[-1] if stage.kind == "chain" else scale
        yield stage, scale, out
        scale = out


@dataclass
class _Passes:
    """What every tiled pass of one :func:`stylize_exact` call shares."""

    stats: dict[InstanceNorm, Moments]  # the norms' whole-image statistics found so far
    device: torch.device
    autocast: Callable[[], AbstractContextManager]
    step: Callable[[int], None]  # progress, once per pass over the image


def _out_size(blocks: Sequence[nn.Module], height: int, width: int) -> tuple[int, int]:
    for block in blocks:
        height, width = block.out_size(height, width)
    return height, width


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

    Walks ``net.stages()``: a ``chain`` stage gets a moment pass per norm and then a pass
    that stores its output; a ``residual`` stage runs once on the stored map, in bands.

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
    check_tileable(net)
    height, width = image.shape[-2:]
    tile = max(MIN_TILE, tile // 4 * 4)
    passes = _Passes({}, device, autocast, progress or (lambda n: None))
    x = image  # the current map, at the resolution of the stage about to run
    for stage, scale, _ in _walk(net):
        stage_tile = tile if scale == 1 else max(MIN_STAGE_TILE, round(tile * scale))
        if stage.kind == "chain":
            x = _exact_chain(stage, x, stage_tile, passes)
        elif stage.kind == "residual":
            _exact_residual(stage, x, stage_tile, passes)
        else:
            raise TypeError(f"tiling does not know stages of kind {stage.kind!r}")
    return net.finish(x, height, width)


def _exact_chain(stage: Stage, x: torch.Tensor, tile: int, passes: _Passes) -> torch.Tensor:
    """A moment pass per norm of the chain (earlier norms fixed), then its stored output."""
    blocks = list(stage.blocks)
    scales = _chain_scales(blocks)
    align = _chain_align(blocks)
    reach = _chain_reach(blocks)
    if reach > CONTEXT:
        raise ValueError(f"a stage reaches {reach} px, beyond the tiles' context")
    stats, device, autocast = passes.stats, passes.device, passes.autocast
    for k, block in enumerate(blocks):
        if block.norm is None:
            continue

        def prefix(t: torch.Tensor, k: int = k, block: nn.Module = block) -> torch.Tensor:
            for earlier in blocks[:k]:
                t = earlier(t)
            return block.to_norm(t)

        acc = _Moments()
        with autocast(), fixed(stats):
            _over_tiles(
                prefix, x, tile, scales[k], align, lambda o, *_, acc=acc: acc.add(o), device
            )
        passes.step(1)
        stats[block.norm] = acc.result()

    out = torch.empty(x.shape[0], blocks[-1].out_channels, *_out_size(blocks, *x.shape[-2:]))

    def sink(o: torch.Tensor, ys: slice, xs: slice) -> None:
        out[:, :, ys, xs] = o.float().cpu()

    def whole(t: torch.Tensor) -> torch.Tensor:
        for block in blocks:
            t = block(t)
        return t

    with autocast(), fixed(stats):
        _over_tiles(whole, x, tile, scales[-1], align, sink, device)
    passes.step(1)
    return out


def _exact_residual(stage: Stage, x: torch.Tensor, band: int, passes: _Passes) -> None:
    """Residual blocks on the stored map ``x`` (updated in place), in full-width bands with
    as many rows of context as each conv reaches: conv, whole-map moments, normalise."""
    rows = x.shape[2]
    stats, device, autocast = passes.stats, passes.device, passes.autocast

    def banded(layer: nn.Module, src: torch.Tensor) -> torch.Tensor:
        """The layer's convolution over the whole map, band by band."""
        out = torch.empty(src.shape[0], layer.out_channels, *src.shape[2:])
        with autocast():
            for r0, r1 in _spans(rows, band, 1):
                c0, c1 = max(0, r0 - layer.reach), min(rows, r1 + layer.reach)
                o = layer.to_norm(src[:, :, c0:c1].to(device)).float().cpu()
                out[:, :, r0:r1] = o[:, :, r0 - c0 : r1 - c0]
        return out

    def normalise(layer: nn.Module, m: torch.Tensor, into: torch.Tensor | None) -> None:
        """Whole-map moments of the layer's conv output ``m``, then its norm (and ReLU),
        written back into ``m`` or added onto ``into`` (the residual connection)."""
        if layer.norm is not None:
            acc = _Moments()
            for r0, r1 in _spans(rows, band, 1):
                acc.add(m[:, :, r0:r1])
            stats[layer.norm] = acc.result()
        with autocast(), fixed(stats):
            for r0, r1 in _spans(rows, band, 1):  # norm and activation are pointwise
                o = layer.from_norm(m[:, :, r0:r1].to(device)).float().cpu()
                if into is None:
                    m[:, :, r0:r1] = o
                else:
                    into[:, :, r0:r1] += o

    for block in stage.blocks:
        layers = block.layers
        h = x
        for i, layer in enumerate(layers):
            h = banded(layer, h)
            normalise(layer, h, x if i == len(layers) - 1 else None)
        del h
        passes.step(1)


def exact_memory(net: TransformerNet, height: int, width: int) -> int:
    """Bytes of the maps :func:`stylize_exact` keeps on the CPU for a height x width image:
    the most that one stage holds at once (a residual stage: its input and two layer
    outputs; a chain: its stored input and output), the image and the output excepted."""
    peak, channels = 0.0, 3  # floats per image pixel; channels of the current map
    for stage, scale, out_scale in _walk(net):
        if stage.kind == "residual":
            peak = max(peak, 3 * channels * scale**2)
            continue
        held = (channels * scale**2 if scale != 1 else 0) + (
            stage.blocks[-1].out_channels * out_scale**2 if out_scale != 1 else 0
        )
        peak = max(peak, held)
        channels = stage.blocks[-1].out_channels
    return round(height * width * peak * _FLOAT)


def full_resolution_channels(net: TransformerNet) -> int:
    """Channels of the network's widest normalised feature map at the input's resolution:
    what an untiled forward's peak memory grows with."""
    widest = 0
    for stage, scale, _ in _walk(net):
        if stage.kind != "chain":
            continue
        for block, block_scale in zip(stage.blocks, _chain_scales(stage.blocks), strict=True):
            if scale * block_scale == 1 and block.norm is not None:
                widest = max(widest, block.out_channels)
    return widest


def count_passes(net: TransformerNet) -> int:
    """How many times :func:`stylize_exact` calls ``progress``."""
    passes = 0
    for stage in net.stages():
        if stage.kind == "residual":
            passes += len(stage.blocks)
        else:
            passes += sum(block.norm is not None for block in stage.blocks) + 1
    return passes


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


@torch.inference_mode()
def norm_statistics(net: TransformerNet, image: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
    """Per-channel (mean, variance) at the input of every norm, for a 1xCxHxW image."""
    if image.shape[0] != 1:
        raise ValueError("norm_statistics takes one image")
    stats: list[tuple[torch.Tensor, ...]] = []

    def record(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0].float()
        stats.append((x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False)))

    handles = [m.register_forward_pre_hook(record) for m in check_tileable(net)]
    try:
        net(image)
    finally:
        for h in handles:
            h.remove()
    return stats


def fixed_norm_statistics(
    net: TransformerNet, stats: list[tuple[torch.Tensor, ...]]
) -> AbstractContextManager[None]:
    """Within the block, every norm of ``net`` uses the given statistics."""
    layers = check_tileable(net)
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
    net: TransformerNet,
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
    tile = max(MIN_TILE, tile // TILE_ALIGN * TILE_ALIGN)
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
    tile = max(MIN_TILE, tile // TILE_ALIGN * TILE_ALIGN)
    return len(_blend_spans(height, tile)) * len(_blend_spans(width, tile))
