from __future__ import annotations

import pytest
import torch
from torch import nn

from fastnst.transformer import InstanceNorm, TransformerNet


@pytest.fixture(scope="module")
def net() -> TransformerNet:
    torch.manual_seed(0)
    return TransformerNet().eval()


@pytest.mark.parametrize("size", [(97, 131), (64, 64), (33, 250), (5, 7), (1, 1)])
def test_output_has_input_size(net, size):
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        y = net(x)
    assert y.shape == x.shape
    assert 0.0 <= y.min() and y.max() <= 1.0


def test_crop_keeps_the_top_left_aligned(net):
    # Odd sizes round up at the stride-2 stages and are cropped at the right/bottom, so the
    # output for a cropped input matches the corresponding region of a larger input.
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        full = net(x)
        cropped = net(x[..., :63, :63])
    assert cropped.shape[-2:] == (63, 63)
    # Instance norm sees slightly different statistics; content must still line up.
    assert (full[..., 8:40, 8:40] - cropped[..., 8:40, 8:40]).abs().mean() < 0.02


def test_no_transposed_convolutions_and_instance_norm():
    net = TransformerNet()
    kinds = {type(m) for m in net.modules()}
    assert nn.ConvTranspose2d not in kinds
    assert InstanceNorm in kinds and nn.BatchNorm2d not in kinds
    assert len(net.norm_layers()) == sum(isinstance(m, InstanceNorm) for m in net.modules()) == 15


def test_instance_norm_is_torchs_with_the_same_keys_and_can_take_fixed_statistics():
    torch.manual_seed(0)
    ours, torchs = InstanceNorm(6), nn.InstanceNorm2d(6, affine=True)
    with torch.no_grad():
        for p in (*ours.parameters(), *torchs.parameters()):
            p.uniform_(-1, 2)
        torchs.load_state_dict(ours.state_dict())  # same keys, same shapes
    x = torch.randn(2, 6, 9, 13) * 3 + 1
    assert torch.equal(ours(x), torchs(x))
    mean, var = torch.randn(6), torch.rand(6) + 0.5
    with ours.fixed_to((mean, var)):
        fixed = ours(x)
    expected = (x - mean[:, None, None]) / torch.sqrt(var[:, None, None] + 1e-5)
    expected = expected * ours.weight[0, :, None, None] + ours.bias[0, :, None, None]
    assert (fixed - expected).abs().max() < 1e-5
    assert torch.equal(ours(x), torchs(x))  # own statistics again after the block


def test_width_and_depth_are_configurable():
    small = TransformerNet(base_channels=8, num_residual_blocks=1)
    big = TransformerNet(base_channels=32, num_residual_blocks=5)
    assert len(small.residuals) == 1 and len(big.residuals) == 5
    assert small.encoder[0][1].out_channels == 8
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in big.parameters())
    with pytest.raises(ValueError):
        TransformerNet(base_channels=0)


def test_does_not_modify_its_input(net):
    x = torch.rand(1, 3, 21, 30)
    before = x.clone()
    with torch.no_grad():
        net(x)
    assert torch.equal(x, before)
