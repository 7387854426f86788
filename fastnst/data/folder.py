"""A dataset of image files that skips the unreadable ones."""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from fastnst.data.augment import Augment
from fastnst.data.cache import ResizedCache
from fastnst.errors import DataNotFoundError, ImageReadError
from fastnst.images import read_image_uint8, uint8_to_float

log = logging.getLogger(__name__)


class ImageFolder(Dataset):
    """Images from a list of files, as float RGB tensors in [0, 1] after ``transform``.

    A file that cannot be decoded is skipped: it is logged once, marked in a shared
    table (so every DataLoader worker and the main process see the same count), and the next
    readable file takes its place.
    """

    def __init__(
        self,
        files: Sequence[Path],
        transform: Augment,
        draft_size: int | None,
        cache: ResizedCache | None = None,
    ):
        if not files:
            raise DataNotFoundError("no image files to load")
        self.files = list(files)
        self.transform = transform
        self.draft_size = draft_size
        self.cache = cache
        if cache is not None and cache.files != self.files:
            raise ValueError("the cache was built for other files")
        # Shared memory: writes from worker processes are visible to the main process.
        self.bad = torch.zeros(len(self.files), dtype=torch.bool).share_memory_()

    def __len__(self) -> int:
        return len(self.files)

    @property
    def num_skipped(self) -> int:
        return int(self.bad.sum())

    def skipped_files(self) -> list[Path]:
        return [self.files[i] for i in self.bad.nonzero().flatten().tolist()]

    def __getitem__(self, item: int | tuple[int, int]) -> torch.Tensor:
        """``item``: an index, or ``(index, seed)`` from :class:`ResumableSampler`; with a seed,
        the random crop and flip are a function of it alone (not of the worker's RNG)."""
        index, seed = item if isinstance(item, tuple) else (item, None)
        # Without a seed (plain indexing) the draw comes from fresh OS entropy.
        rng = random.Random(seed)
        img = self._read(index)
        if self.cache is not None:  # cached images are already resized
            return uint8_to_float(self.transform.crop_flip(img, rng))
        return uint8_to_float(self.transform(img, rng))

    def _read(self, index: int) -> torch.Tensor:
        """File ``index`` as uint8, or the next readable one after it."""
        for offset in range(len(self.files)):
            i = (index + offset) % len(self.files)
            if self.bad[i]:
                continue
            img = self._load(i)
            if img is not None:
                return img
            self.bad[i] = True
        raise DataNotFoundError("none of the image files could be read")

    def _load(self, i: int) -> torch.Tensor | None:
        if self.cache is not None:
            img = self.cache.get(i)
            if img is None:
                log.warning("skipping unreadable image %s (seen when caching)", self.files[i])
            return img
        try:
            return read_image_uint8(self.files[i], draft_size=self.draft_size)
        except ImageReadError as exc:
            log.warning("skipping unreadable image %s", exc)
            return None
