"""Tiles, colour preservation and strength (fastnst.inference) on a real photo."""

from __future__ import annotations

import contextlib

import pytest
import torch

from fastnst import inference
from fastnst.images import load_image
from fastnst.inference import Stylizer, blend, parse_memory, preserve_color
from fastnst.transformer import TransformerNet

from .conftest import CONTENT


@pytest.fixture(scope="module")
def net() -> TransformerNet:
    torch.manual_seed(0)
    return TransformerNet().eval()


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    return load_image(CONTENT / "tubingen.jpg", size=320)[None]  # 1x3x240x320


def test_fixed_statistics_of_the_same_image_reproduce_instance_norm(net, photo):
    stats = inference.norm_statistics(net, photo)
    assert len(stats) == 15  # 3 encoder + 2 per residual block x 5 + 2 upsampling stages
    with torch.inference_mode():
        plain = net(photo)
        with inference.fixed_norm_statistics(net, stats):
            fixed = net(photo)
        again = net(photo)  # the layers are restored afterwards
    assert (fixed - plain).abs().max() < 1e-4
    assert torch.equal(again, plain)


# Tiled vs untiled, whole-image statistics: measured max 7e-4 on 768x1024 with 128 px tiles.
TILE_TOLERANCE = 3e-3


@pytest.mark.parametrize("tile", [64, 100, 160])
def test_tiled_matches_untiled(net, photo, tile):
    whole = Stylizer(net)(photo)
    calls = []
    tiled = Stylizer(net, tile=tile)(photo, progress=calls.append)
    assert len(calls) == inference.count_tiles(240, 320, tile) > 1
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().max() < TILE_TOLERANCE


def test_per_tile_statistics_would_show_seams(net, photo, monkeypatch):
    # The same tiling with each tile normalising itself: the failure the fix exists for.
    whole = Stylizer(net)(photo)
    monkeypatch.setattr(inference, "fixed_norm_statistics", lambda *a: contextlib.nullcontext())
    naive = Stylizer(net, tile=64)(photo)
    assert (naive - whole).abs().max() > 20 * TILE_TOLERANCE


def test_memory_budget_turns_tiling_on(net, photo):
    h, w = photo.shape[-2:]
    need = inference.forward_memory(net, h, w)
    assert Stylizer(net, max_memory=need).plan_tile(h, w) is None
    budget = need // 4
    stylizer = Stylizer(net, max_memory=budget)
    tile = stylizer.plan_tile(h, w)
    assert tile is not None and tile % inference.TILE_ALIGN == 0
    side = tile + 2 * inference.TILE_CONTEXT
    assert inference.forward_memory(net, side, side) <= budget
    calls = []
    out = stylizer(photo, progress=calls.append)
    assert len(calls) > 1 and out.shape == photo.shape
    # Statistics from a half-size thumbnail: close to, not equal to, the whole image's.
    assert (out - Stylizer(net)(photo)).abs().mean() < 0.05


def test_preserve_color_keeps_content_chroma_and_stylized_luma(photo):
    stylized = photo.flip(-1).roll(1, dims=1) * 0.8 + 0.1  # other layout, other colours
    out = preserve_color(photo, stylized)
    ycc = inference._RGB_TO_YCC
    y_out, y_sty = (torch.einsum("ij,njhw->nihw", ycc, t) for t in (out, stylized))
    y_con = torch.einsum("ij,njhw->nihw", ycc, photo)
    inside = ((out > 0.001) & (out < 0.999)).all(dim=1)  # pixels not clipped to the cube
    assert inside.float().mean() > 0.9
    assert (y_out[:, 0][inside] - y_sty[:, 0][inside]).abs().max() < 1e-4
    assert (
        y_out[:, 1:].movedim(1, -1)[inside] - y_con[:, 1:].movedim(1, -1)[inside]
    ).abs().max() < 1e-4
    assert (out - stylized).abs().mean() > 0.02  # it did change the colours


def test_strength_blends_linearly(photo):
    other = torch.rand_like(photo)
    assert torch.equal(blend(photo, other, 0.0), photo)
    assert torch.equal(blend(photo, other, 1.0), other)
    assert torch.allclose(blend(photo, other, 0.25), 0.75 * photo + 0.25 * other, atol=1e-6)
    with pytest.raises(ValueError, match="0..1"):
        blend(photo, other, 1.5)


def test_stylizer_applies_colour_then_strength(net, photo):
    plain = Stylizer(net)(photo)
    colour = Stylizer(net, preserve_color=True, strength=0.5)(photo)
    assert torch.allclose(colour, 0.5 * photo + 0.5 * preserve_color(photo, plain), atol=1e-5)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2GB", 2 * 2**30), ("512MB", 512 * 2**20), ("1.5g", int(1.5 * 2**30)), ("1000", 1000)],
)
def test_parse_memory(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize("text", ["lots", "-1GB", "0"])
def test_parse_memory_rejects(text):
    with pytest.raises(ValueError):
        parse_memory(text)
