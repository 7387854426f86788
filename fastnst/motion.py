"""Small known motions of images: the stability term of training and the warping error.

A motion is an affine map in *pixel* coordinates (3x3, homogeneous; x right, y down, pixel
centres at integers), so a rotation is a rotation whatever the image's aspect ratio.
:func:`warp` moves an image by one: ``warp(image, m)[p] = image[m^-1 p]``: the picture's
content at ``q`` moves to ``m q``. Warping also returns which output pixels saw the image (not
the border), so that errors are taken only over pixels visible in both frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# A pixel counts as visible when its bilinear taps lie this fully inside the image.
_VISIBLE = 0.999


def affine(
    height: int,
    width: int,
    shift: tuple[float, float] = (0.0, 0.0),
    rotate_deg: float = 0.0,
    zoom: float = 1.0,
) -> torch.Tensor:
    """The 3x3 pixel-coordinate map that zooms and rotates about the image centre, then shifts
    by ``shift`` = (dx, dy) pixels."""
    cx, cy = (width - 1) / 2, (height - 1) / 2
    a = math.radians(rotate_deg)
    cos, sin = math.cos(a) * zoom, math.sin(a) * zoom
    return torch.tensor(
        [
            [cos, -sin, cx - cos * cx + sin * cy + shift[0]],
            [sin, cos, cy - sin * cx - cos * cy + shift[1]],
            [0.0, 0.0, 1.0],
        ],
        dtype=torch.float64,
    )


def _normalised(inverse: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """affine_grid's theta (N x 2 x 3, align_corners=False) for output->input pixel maps."""
    # Pixel x -> normalised u = (2x + 1) / W - 1.
    to_norm = torch.tensor(
        [[2 / width, 0, 1 / width - 1], [0, 2 / height, 1 / height - 1], [0, 0, 1]],
        dtype=torch.float64,
    )
    theta = to_norm @ inverse @ torch.linalg.inv(to_norm)
    return theta[..., :2, :]


def warp(
    images: torch.Tensor, motions: torch.Tensor, padding: str = "border"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Move each image of an NCHW batch by its motion (3x3, or N x 3 x 3).

    Returns the moved images (bilinear; outside the image: ``padding`` as in grid_sample) and
    an N x 1 x H x W mask, 1 where the output pixel comes from inside the image.
    """
    n, _, height, width = images.shape
    motions = motions.to(torch.float64).expand(n, 3, 3)
    theta = _normalised(torch.linalg.inv(motions), height, width).to(images)
    grid = F.affine_grid(theta, [n, 1, height, width], align_corners=False)
    moved = F.grid_sample(images, grid, mode="bilinear", padding_mode=padding, align_corners=False)
    ones = torch.ones(n, 1, height, width, dtype=images.dtype, device=images.device)
    inside = F.grid_sample(ones, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return moved, (inside > _VISIBLE).to(images.dtype)


def masked_mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared difference over the pixels (and channels) where ``mask`` is 1."""
    channels = a.shape[1]
    return ((a - b).pow(2) * mask).sum() / (mask.sum() * channels).clamp_min(1.0)


@dataclass(frozen=True)
class MotionRange:
    """How far the random motions of the stability term go (each drawn uniformly within)."""

    shift: float = 2.0  # pixels, in x and in y
    rotate: float = 1.0  # degrees
    zoom: float = 0.02  # relative: a zoom within 1 +- zoom
    noise: float = 0.02  # std of Gaussian noise added to the moved photo ([0, 1] pixels)

    def sample(
        self, n: int, height: int, width: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """n random motions, N x 3 x 3."""
        u = torch.rand(n, 4, generator=generator, dtype=torch.float64) * 2 - 1
        return torch.stack(
            [
                affine(
                    height,
                    width,
                    (float(u[i, 0]) * self.shift, float(u[i, 1]) * self.shift),
                    float(u[i, 2]) * self.rotate,
                    1.0 + float(u[i, 3]) * self.zoom,
                )
                for i in range(n)
            ]
        )


def stability_term(
    net: torch.nn.Module,
    photos: torch.Tensor,
    stylized: torch.Tensor,
    motion: MotionRange,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """How much the network's output fails to follow a small motion of its input.

    Each photo is moved by a random small motion and lightly noised; the network's output on
    that is compared with its output on the photo (``stylized``), moved the same way, over the
    pixels visible in both (Wang et al. 2020's compound regularisation, without optical flow).
    Both outputs keep their gradients.
    """
    n, channels, height, width = photos.shape
    motions = motion.sample(n, height, width, generator).to(photos.device)
    # Photos and outputs move by the same motions: one sampling grid, one mask.
    moved, mask = warp(torch.cat([photos, stylized.to(photos.dtype)], dim=1), motions)
    moved_photos, moved_stylized = moved[:, :channels], moved[:, channels:]
    if motion.noise > 0:
        noise = torch.randn(
            moved_photos.shape, generator=generator, device="cpu", dtype=moved_photos.dtype
        ).to(photos.device)
        moved_photos = (moved_photos + motion.noise * noise).clamp(0, 1)
    return masked_mse(net(moved_photos), moved_stylized, mask)


class StabilityTerm:
    """The stability term as a loss term of training (``temporal`` in the logs): ``weight``
    times :func:`stability_term`, its random motions drawn from a generator seeded by the
    call's ``seed`` (the step), so a resumed run draws the same ones."""

    name = "temporal"

    def __init__(self, weight: float, motion: MotionRange) -> None:
        self.weight, self.motion = weight, motion

    def __call__(
        self, net: torch.nn.Module, photos: torch.Tensor, stylized: torch.Tensor, seed: int
    ) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed + 1_000_003 * torch.initial_seed() % 2**62)
        return self.weight * stability_term(net, photos, stylized, self.motion, generator)
