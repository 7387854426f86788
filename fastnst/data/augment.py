"""Augmentation of training photos: resize, crop, flip (uint8 in, uint8 out)."""

from __future__ import annotations

import random

import torch
from torchvision.transforms import v2


class Augment:
    """Resize the shorter side, crop a square (random or centred), maybe flip horizontally.

    Works on uint8 CHW tensors: resizing 8-bit data is several times cheaper than floats or
    PIL images. Randomness comes from the ``random.Random`` passed in, seeded per sample by
    :class:`ResumableSampler`; reseeding torch's global generator per sample instead cost a
    quarter of a millisecond, more than a tenth of the whole pipeline.
    """

    def __init__(self, image_size: int, resize_size: int, hflip: bool, random_crop: bool):
        self.image_size = image_size
        self.resize_size = resize_size
        self.hflip = hflip
        self.random_crop = random_crop

    def __call__(self, img: torch.Tensor, rng: random.Random) -> torch.Tensor:
        return self.crop_flip(self.resize(img), rng)

    def resize(self, img: torch.Tensor) -> torch.Tensor:
        """The deterministic part, which :class:`ResizedCache` stores."""
        return v2.functional.resize(img, [self.resize_size], antialias=True)

    def crop_flip(self, img: torch.Tensor, rng: random.Random) -> torch.Tensor:
        h, w = img.shape[-2:]  # the shorter side is resize_size >= image_size
        s = self.image_size
        if self.random_crop:
            i, j = rng.randint(0, h - s), rng.randint(0, w - s)
        else:
            i, j = round((h - s) / 2), round((w - s) / 2)
        img = img[:, i : i + s, j : j + s]
        if self.hflip and rng.random() < 0.5:
            img = img.flip(-1)
        return img


def train_transform(image_size: int, resize_size: int, hflip: bool) -> Augment:
    return Augment(image_size, resize_size, hflip, random_crop=True)


def val_transform(image_size: int) -> Augment:
    return Augment(image_size, image_size, hflip=False, random_crop=False)
