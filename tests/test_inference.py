"""Tiles, colour preservation and strength (fastnst.inference) on a real photo."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F

from fastnst import inference, tiling
from fastnst.images import load_image
from fastnst.inference import Stylizer, blend, parse_memory, preserve_color
from fastnst.transformer import TransformerNet

from .conftest import CONTENT


@pytest.fixture(scope="module")
def photo(real_photos) -> torch.Tensor:
    return load_image(CONTENT / "tubingen.jpg", size=320)[None]  # 1x3x240x320


def test_fixed_statistics_of_the_same_image_reproduce_instance_norm(net, photo):
    stats = tiling.norm_statistics(net, photo)
    assert len(stats) == 15  # 3 encoder + 2 per residual block x 5 + 2 upsampling stages
    with torch.inference_mode():
        plain = net(photo)
        with tiling.fixed_norm_statistics(net, stats):
            fixed = net(photo)
        again = net(photo)  # the layers are restored afterwards
    assert (fixed - plain).abs().max() < 1e-4
    assert torch.equal(again, plain)


@pytest.mark.parametrize("tile", [64, 100, 160])
@pytest.mark.parametrize("size", [(240, 320), (237, 331)])
def test_exact_tiles_equal_untiled(net, photo, tile, size):
    image = F.interpolate(photo, size=size, mode="bilinear").clamp(0, 1)
    whole = Stylizer(net)(image)
    stylizer = Stylizer(net, tile=tile)
    assert stylizer.plan(*size).mode == "exact"
    calls = []
    tiled = stylizer(image, progress=calls.append)
    assert len(calls) == tiling.count_passes(net) == 12
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().max() < 1e-5  # float rounding only (measured 4e-7)


@pytest.mark.parametrize(("channels", "blocks"), [(8, 0), (12, 2), (20, 7)])
def test_exact_tiles_equal_untiled_for_other_widths_and_depths(channels, blocks):
    # Tiling walks what the network declares, so any width and depth tiles exactly.
    torch.manual_seed(channels)
    other = TransformerNet(channels, blocks).eval()
    with torch.no_grad():  # random norm scales and shifts, so that they matter
        for norm in other.norm_layers():
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    image = torch.rand(1, 3, 150, 203)
    whole = Stylizer(other)(image)
    stylizer = Stylizer(other, tile=64)
    calls = []
    tiled = stylizer(image, progress=calls.append)
    assert stylizer.plan(150, 203).mode == "exact"
    assert len(calls) == tiling.count_passes(other) == 3 + 1 + blocks + 2 + 1
    assert (tiled - whole).abs().max() < 1e-5
    assert tiling.exact_memory(other, 150, 203) == 150 * 203 * channels * 3


def test_tiling_refuses_a_norm_it_cannot_drive():
    net = TransformerNet(8, 1).eval()
    net.residuals[0].body[0][2] = torch.nn.InstanceNorm2d(32, affine=True)
    with pytest.raises(TypeError, match="InstanceNorm2d"):
        Stylizer(net, tile=64)(torch.rand(1, 3, 100, 100))


# Cross-faded tiles, statistics of the whole image: measured max 7e-4 on 768x1024, 128 px.
BLEND_TOLERANCE = 3e-3


def _blended(net, image, tile):
    stats = tiling.norm_statistics(net, image)
    with torch.inference_mode():
        return tiling.stylize_tiled(net, net, image, tile, stats, torch.device("cpu"))


def test_blended_tiles_with_whole_image_statistics_match(net, photo):
    whole = Stylizer(net)(photo)
    assert (_blended(net, photo, 64) - whole).abs().max() < BLEND_TOLERANCE


def test_per_tile_statistics_would_show_seams(net, photo, monkeypatch):
    # The same tiling with each tile normalising itself: the failure the fix exists for.
    whole = Stylizer(net)(photo)
    monkeypatch.setattr(tiling, "fixed_norm_statistics", lambda *a: contextlib.nullcontext())
    naive = _blended(net, photo, 64)
    assert (naive - whole).abs().max() > 20 * BLEND_TOLERANCE


def test_memory_budget_chooses_the_tiling(net, photo):
    h, w = photo.shape[-2:]
    need = inference.forward_memory(net, h, w)
    assert Stylizer(net, max_memory=need).plan(h, w) is None
    whole = Stylizer(net)(photo)
    # A quarter of an untiled pass: tiles, with room for the exact method's maps.
    exact = Stylizer(net, max_memory=need // 4)
    plan = exact.plan(h, w)
    assert plan.mode == "exact" and plan.tile % tiling.TILE_ALIGN == 0
    side = plan.tile + 2 * tiling.CONTEXT
    assert inference.forward_memory(net, side, side) + tiling.exact_memory(net, h, w) <= need // 4
    assert (exact(photo) - whole).abs().max() < 1e-5
    # Too little even for those maps: statistics from a thumbnail, close but not equal.
    buffers = h * w * inference.IMAGE_BUFFER_BYTES_PER_PIXEL
    thumb = Stylizer(net, max_memory=buffers + tiling.exact_memory(net, h, w) // 2)
    plan = thumb.plan(h, w)
    assert plan.mode == "thumbnail"
    calls = []
    out = thumb(photo, progress=calls.append)
    assert len(calls) == plan.steps > 1 and out.shape == photo.shape
    assert 1e-4 < (out - whole).abs().mean() < 0.05


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
