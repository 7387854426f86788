"""Applying a trained network to images of any size: tiles, colour, strength.

Everything here takes and returns the pixel contract (float RGB in [0, 1], NCHW, on the CPU)
and imports neither Lightning nor Hydra, like the ``fastnst-stylize`` script that uses it.

Large images are stylized in tiles (:mod:`fastnst.tiling`): exactly, with every instance
norm's statistics taken over the whole image layer by layer, when the 1/4-resolution maps
that needs fit the memory budget; otherwise with statistics from one pass over a downscaled
copy and cross-faded tiles. :class:`Stylizer` chooses.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fastnst import tiling
from fastnst.transformer import TransformerNet

# Peak working memory of an untiled forward, in bytes per pixel per base channel, measured on
# the CPU under inference_mode (scripts/benchmark.py, inference section: a 2048x2048 fp32
# stylize of the 32-channel network adds ~3.99 GB = 950 B/pixel) and rounded up.
BYTES_PER_PIXEL_PER_CHANNEL = 32
# Full-size buffers of a tiled stylize besides the passes, in bytes per pixel: the float
# input (12), the accumulated output (12) and its blend weights (4), and the copy made when
# saving (12).
IMAGE_BUFFER_BYTES_PER_PIXEL = 40


def parse_memory(text: str) -> int:
    """'2GB', '512MB', '1.5G', '800000000' -> bytes."""
    units = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    s = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = s[-1:] if s[-1:] in units else ""
    try:
        value = float(s[: len(s) - len(unit)] if unit else s)
    except ValueError:
        raise ValueError(f"not a memory size: {text!r} (examples: 2GB, 512MB)") from None
    if value <= 0:
        raise ValueError(f"memory size must be positive: {text!r}")
    return int(value * units[unit])


def add_tiling_options(group: argparse._ActionsContainer) -> None:
    """``--tile`` and ``--max-memory``, as fastnst-stylize and fastnst-app both take them."""
    group.add_argument(
        "--tile",
        type=int,
        default=None,
        help="stylize images larger than N px in overlapping N px tiles (default: only when "
        "an image would exceed --max-memory)",
    )
    group.add_argument(
        "--max-memory",
        default=None,
        help="memory one forward pass may use, e.g. 2GB; larger images are tiled "
        "(default: half the free RAM, or 80%% of the free GPU memory)",
    )


def check_tiling_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Check ``--tile`` and turn ``--max-memory`` into bytes; usage errors through ``parser``."""
    if args.tile is not None and args.tile < tiling.MIN_TILE:
        parser.error(f"--tile must be at least {tiling.MIN_TILE}")
    if args.max_memory is not None:
        try:
            args.max_memory = parse_memory(args.max_memory)
        except ValueError as exc:
            parser.error(f"--max-memory: {exc}")


# --- which style ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StyleChoice:
    """One look to paint: ``label`` (for file names) and the style mix (one weight per style
    of the network, summing to 1; None for a network that holds one style)."""

    label: str
    mix: torch.Tensor | None


# A blend of more styles than this is labelled blend<N>-<digest> instead of listing them.
BLEND_LABEL_PARTS = 4


def parse_styles(text: str | None, names: list[str]) -> list[StyleChoice]:
    """``--style`` against the styles a network holds (``names``, in its mix order):
    ``NAME``, a blend ``NAME=W,NAME=W`` (weights >= 0, divided by their sum), or ``all``
    (one choice per style). None: the network's only style.

    Raises:
        ValueError: one line saying what is wrong and which styles there are.
    """
    listed = ", ".join(names)
    if text is None:
        if len(names) > 1:
            raise ValueError(
                f"it holds {len(names)} styles ({listed}): choose one with --style NAME, a "
                "blend with --style NAME=W,NAME=W, or every one with --style all"
            )
        return [StyleChoice(names[0], None)]
    text = text.strip()
    if text == "all":
        return [_one_style(name, names) for name in names]
    if "=" not in text and "," not in text:
        _check_name(text, names)
        return [_one_style(text, names)]
    weights: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        _check_name(name, names)
        if name in weights:
            raise ValueError(f"--style names {name} twice")
        try:
            weight = float(value) if sep else float("nan")
        except ValueError:
            weight = float("nan")
        if not math.isfinite(weight):
            raise ValueError(f"--style: {part.strip()!r} is not NAME=WEIGHT (e.g. wave=0.3)")
        if weight < 0:
            raise ValueError(f"--style: weights must be 0 or more, got {name}={value.strip()}")
        weights[name] = weight
    largest = max(weights.values())
    if largest <= 0:
        raise ValueError("--style: the weights add up to 0; give at least one a weight above 0")
    # Divided by the largest first: weights near the float limit (1e308) add up to inf.
    weights = {name: w / largest for name, w in weights.items()}
    total = sum(weights.values())
    mix = torch.tensor([weights.get(name, 0.0) / total for name in names])
    used = {name: w for name, w in weights.items() if w > 0}
    if len(used) == 1:
        label = next(iter(used))
    elif len(used) <= BLEND_LABEL_PARTS:
        label = "+".join(f"{name}{round(100 * w / total)}" for name, w in used.items())
    else:  # a file name cannot list them all: the count and a digest of the mix
        digest = hashlib.sha256(repr(sorted(used.items())).encode()).hexdigest()[:8]
        label = f"blend{len(used)}-{digest}"
    return [StyleChoice(label, mix if len(names) > 1 else None)]


def _check_name(name: str, names: list[str]) -> None:
    if name not in names:
        raise ValueError(f"no style {name!r} in this network; it has: {', '.join(names)}")


def _one_style(name: str, names: list[str]) -> StyleChoice:
    if len(names) == 1:
        return StyleChoice(name, None)
    mix = torch.zeros(len(names))
    mix[names.index(name)] = 1.0
    return StyleChoice(name, mix)


def available_memory(device: torch.device) -> int:
    """Bytes a stylize may use by default: half the free RAM, or 80% of the free GPU memory."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.8)
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError, AttributeError):  # not Linux
        return 4 * 2**30


def forward_memory(net: nn.Module, height: int, width: int) -> int:
    """Estimated peak bytes of one untiled forward of ``net`` on a height x width image."""
    channels = tiling.full_resolution_channels(net) if isinstance(net, TransformerNet) else 32
    return height * width * channels * BYTES_PER_PIXEL_PER_CHANNEL


def tile_for_budget(net: nn.Module, budget: int) -> int:
    """The largest tile side (multiple of TILE_ALIGN) whose forward, context included, fits."""
    side = math.isqrt(max(0, budget) // forward_memory(net, 1, 1)) - 2 * tiling.TILE_CONTEXT
    return max(tiling.MIN_TILE, side // tiling.TILE_ALIGN * tiling.TILE_ALIGN)


# --- colour and strength -------------------------------------------------------------------

# BT.601 full-range RGB <-> YCbCr (the JPEG convention). Rows: Y, Cb, Cr.
_RGB_TO_YCC = torch.tensor(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]
)


def _color_transform(image: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,njhw->nihw", matrix.to(image), image)


def preserve_color(content: torch.Tensor, stylized: torch.Tensor) -> torch.Tensor:
    """Luminance-only transfer (Gatys et al. 2016, "Preserving colour in neural artistic style
    transfer"): the stylized image's luma (Y) with the content image's chroma (Cb, Cr)."""
    ycc_content = _color_transform(content, _RGB_TO_YCC)
    ycc_stylized = _color_transform(stylized, _RGB_TO_YCC)
    mixed = torch.cat([ycc_stylized[:, :1], ycc_content[:, 1:]], dim=1)
    return _color_transform(mixed, torch.linalg.inv(_RGB_TO_YCC)).clamp_(0, 1)


def blend(content: torch.Tensor, stylized: torch.Tensor, strength: float) -> torch.Tensor:
    """Linear blend in RGB: 0 gives the content image, 1 the stylized one."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be within 0..1, got {strength}")
    if strength == 1.0:
        return stylized
    return torch.lerp(content, stylized, strength)


# --- the whole step ------------------------------------------------------------------------


@dataclass(frozen=True)
class TilePlan:
    """``exact``: whole-image statistics layer by layer (fastnst.tiling); ``thumbnail``:
    statistics from a downscaled whole-image pass, tiles cross-faded. ``steps``: progress
    calls per image (passes or tiles)."""

    mode: str
    tile: int
    steps: int


@dataclass
class Stylizer:
    """A loaded network plus how to apply it.

    Args:
        net: the network (TransformerNet; or any callable image -> image, then without tiling).
        device: where the network runs.
        dtype: autocast dtype (bf16/fp16) or None for fp32.
        compile: torch.compile the untiled forward.
        tile: tile side in pixels, or None: tile only when an image exceeds ``max_memory``.
        max_memory: bytes for stylizing one image: an untiled forward pass, or the tiled
            passes plus the full-size image buffers (Python and torch themselves, about
            0.4 GB, come on top). None: see :func:`available_memory`.
        preserve_color: keep the content image's colours (luminance-only transfer).
        strength: 0..1 blend of content and stylized image.
        style: the style mix for a network that holds several styles (one weight per style,
            see :func:`parse_styles`); None for one that holds one.
    """

    net: Callable[[torch.Tensor], torch.Tensor]
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype | None = None
    compile: bool = False
    tile: int | None = None
    max_memory: int | None = None
    preserve_color: bool = False
    strength: float = 1.0
    style: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if getattr(self.net, "num_styles", 1) > 1 and self.style is None:
            raise ValueError("the network holds several styles: choose one (--style)")
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError(f"strength must be within 0..1, got {self.strength}")
        if self.tile is not None and not isinstance(self.net, TransformerNet):
            raise ValueError("--tile needs a .ckpt network (tiles change its instance norms)")
        if self.compile and not isinstance(self.net, nn.Module):
            raise ValueError("--compile needs a .ckpt network")
        self._forward = torch.compile(self.net) if self.compile else self.net
        if self.max_memory is None:
            self.max_memory = available_memory(self.device)

    def plan(self, height: int, width: int) -> TilePlan | None:
        """How to tile an image of this size, or None to run it whole."""
        if not isinstance(self.net, TransformerNet):
            return None
        assert self.max_memory is not None
        if self.tile is not None:
            if max(height, width) <= self.tile:
                return None
        elif forward_memory(self.net, height, width) <= self.max_memory:
            return None
        budget = self._pass_budget(height, width)
        exact_budget = budget - tiling.exact_memory(self.net, height, width)
        exact_tile = tile_for_budget(self.net, exact_budget)
        if exact_budget > 0 and forward_memory(self.net, exact_tile, exact_tile) <= exact_budget:
            tile = exact_tile if self.tile is None else min(self.tile, exact_tile)
            return TilePlan("exact", tile, tiling.count_passes(self.net))
        # Not even the 1/4-resolution maps fit: statistics from a thumbnail instead.
        tile = tile_for_budget(self.net, budget)
        tile = tile if self.tile is None else min(self.tile, tile)
        return TilePlan("thumbnail", tile, tiling.count_tiles(height, width, tile))

    def _pass_budget(self, height: int, width: int) -> int:
        """Bytes left for the passes after the full-size buffers of a tiled run."""
        assert self.max_memory is not None
        return max(0, self.max_memory - height * width * IMAGE_BUFFER_BYTES_PER_PIXEL)

    def _autocast(self) -> torch.autocast:
        return torch.autocast(
            self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None
        )

    def _run(self, forward: Callable, batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), self._autocast():
            return forward(batch)

    def _stylize_one_tiled(
        self, image: torch.Tensor, plan: TilePlan, progress: Callable[[int], None] | None
    ) -> torch.Tensor:
        assert isinstance(self.net, TransformerNet)
        if plan.mode == "exact":
            return tiling.stylize_exact(
                self.net, image, plan.tile, self.device, self._autocast, progress
            )
        height, width = image.shape[-2:]
        # The statistics pass must fit: the largest downscale of the image that does.
        pixels = max(self._pass_budget(height, width) // forward_memory(self.net, 1, 1), 4096)
        scale = min(1.0, math.sqrt(pixels / (height * width)))
        size = (max(1, int(height * scale)), max(1, int(width * scale)))
        thumb = F.interpolate(image, size=size, mode="area") if scale < 1 else image
        with self._autocast():
            stats = tiling.norm_statistics(self.net, thumb.to(self.device))
        with torch.inference_mode():
            return tiling.stylize_tiled(
                lambda x: self._run(self.net, x),
                self.net,
                image,
                plan.tile,
                stats,
                self.device,
                progress,
            )

    def __call__(
        self, batch: torch.Tensor, progress: Callable[[int], None] | None = None
    ) -> torch.Tensor:
        """Stylize an NCHW CPU batch of same-size images; returns NCHW float on the CPU."""
        height, width = batch.shape[-2:]
        plan = self.plan(height, width)
        # The network's norms take the style mix for every pass, whole or tiled.
        styled = getattr(self.net, "styled", None)
        with styled(self.style) if styled is not None else nullcontext():
            if plan is None:
                out = self._run(self._forward, batch.to(self.device)).float().cpu()
            else:
                outs = [self._stylize_one_tiled(img[None], plan, progress) for img in batch]
                out = outs[0] if len(outs) == 1 else torch.cat(outs)
        if self.preserve_color:
            out = preserve_color(batch, out)
        return blend(batch, out, self.strength)
