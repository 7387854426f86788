"""Shuffling that a resumed run can continue exactly."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler[tuple[int, int]]):
    """Shuffled indices, each with its own augmentation seed, as a function of (seed, epoch).

    Every batch of a run is therefore determined by the seed, the epoch and its position in
    the epoch, whatever the number of workers; :meth:`resume_at` skips the samples a killed
    run had already trained on, so a resumed run sees exactly the batches an uninterrupted one
    would. ``len()`` stays the full epoch: Lightning counts the skipped batches as done.

    Under DDP each of ``world_size`` ranks takes every ``world_size``-th sample of the same
    sequence, so a step of N ranks with batch B sees the samples one process with batch N*B
    would (Lightning's own distributed sampler is switched off: ``use_distributed_sampler``).
    """

    def __init__(self, size: int, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.size = size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self._resume: tuple[int, int] | None = None  # (epoch, samples of the sequence to skip)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume_at(self, epoch: int, samples_done: int) -> None:
        """Skip the first ``samples_done`` samples (all ranks together) of ``epoch``."""
        self._resume = (epoch, samples_done)

    def __len__(self) -> int:
        return self.size // self.world_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        seeds = torch.randint(0, 2**62, (self.size,), generator=generator).tolist()
        start = 0
        if self._resume is not None and self._resume[0] == self.epoch:
            start = self._resume[1]
        self._resume = None
        end = len(self) * self.world_size  # every rank gets the same number of samples
        for i in range(start + self.rank, end, self.world_size):
            yield order[i], seeds[i]
