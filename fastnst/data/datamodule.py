"""The LightningDataModule of content photos: training set, held-out set, resumable order."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from fastnst import commands
from fastnst.checks import check_number, require
from fastnst.data.augment import train_transform, val_transform
from fastnst.data.cache import ResizedCache
from fastnst.data.folder import ImageFolder
from fastnst.data.sampler import ResumableSampler
from fastnst.errors import DataNotFoundError
from fastnst.images import IMAGE_EXTENSIONS, find_images
from fastnst.transformer import TransformerNet
from fastnst.vgg import MIN_IMAGE_SIZE

log = logging.getLogger(__name__)


def coco_help(root: Path) -> str:
    """How to get COCO for ``root``, with a download command that runs as printed."""
    coco = root.parent if root.name == "train2017" else root
    target = coco / "train2017"
    then = "" if target == root else f", then train with data.root={target}"
    download = commands.console("fastnst-download-coco", "fastnst.coco", "--root", coco)
    return (
        f"COCO 2017 training images: run {download} (18 GB{then}; add --sample 128 for its "
        "first 128 photos only; or download "
        f"http://images.cocodataset.org/zips/train2017.zip and unzip it so that {target}/*.jpg "
        "exist), or train on any folder of photos with data.root=/path/to/photos"
    )


class ContentDataModule(pl.LightningDataModule):
    """Content photos for training, plus a small fixed validation set for metrics and grids.

    Args:
        root: folder searched recursively for images (COCO 2017 ``train2017/`` by default).
        image_size: side of the square training crops.
        resize_size: shorter side after resizing, before the crop (default: ``image_size``).
        hflip: random horizontal flips.
        batch_size: training batch size.
        num_workers: DataLoader worker processes.
        val_root: a separate folder of validation photos; if unset, the last ``val_count``
            files of ``root`` (sorted by path) are held out of training.
        val_count: number of validation images.
        val_size: side of the centre-cropped validation images (default: ``image_size``).
        seed: seeds the shuffling and augmentation (see :class:`ResumableSampler`).
        cache_dir: if set, training photos are decoded and resized once into a cache there
            (see :class:`ResizedCache`) and later epochs and runs read it instead.

    Raises:
        ConfigError: a setting that cannot work (named by its argument), before any file is
            read.
    """

    def __init__(
        self,
        root: str,
        image_size: int = 256,
        resize_size: int | None = None,
        hflip: bool = True,
        batch_size: int = 4,
        num_workers: int = 2,
        val_root: str | None = None,
        val_count: int = 8,
        val_size: int | None = None,
        seed: int = 0,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        check_number(
            image_size, "image_size", max(MIN_IMAGE_SIZE, TransformerNet.min_size), integer=True
        )
        if resize_size is not None:
            check_number(resize_size, "resize_size", image_size, integer=True)
        check_number(batch_size, "batch_size", 1, integer=True)
        check_number(num_workers, "num_workers", 0, integer=True)
        check_number(val_count, "val_count", 1, integer=True)
        if val_size is not None:
            check_number(val_size, "val_size", MIN_IMAGE_SIZE, integer=True)
        self.root = Path(root).expanduser()
        require(
            self.root.is_dir(),
            "root",
            f"{self.root} is not a folder. " + coco_help(self.root),
        )
        self.val_root = Path(val_root).expanduser() if val_root else None
        if self.val_root is not None:
            require(self.val_root.is_dir(), "val_root", f"{self.val_root} is not a folder")
        if cache_dir is not None:
            cache = Path(cache_dir).expanduser()
            require(not cache.is_file(), "cache_dir", f"{cache} is a file, not a folder")
        self.seed = seed
        self.cache_dir = cache_dir
        self.sampler: ResumableSampler | None = None
        self.image_size = image_size
        self.resize_size = resize_size or image_size
        self.hflip = hflip
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_count = val_count
        self.val_size = val_size or image_size
        self.train_set: ImageFolder | None = None
        self.val_set: ImageFolder | None = None
        # Where training is: (epoch, batches of it done). Counted here, saved in checkpoints
        # (state_dict) and handed to the sampler when a run resumes.
        self._position = (0, 0)
        self._resume_at: tuple[int, int] | None = None

    def prepare_data(self) -> None:
        # COCO is 18 GB: fastnst does not download it behind the user's back (the constructor
        # has checked that data.root is a folder).
        if self.cache_dir is not None:  # Lightning calls this on one process per node
            self._cache(self._split_files()[0]).build()

    def _cache(self, train_files: list[Path]) -> ResizedCache:
        assert self.cache_dir is not None
        augment = train_transform(self.image_size, self.resize_size, self.hflip)
        return ResizedCache(self.cache_dir, train_files, augment, self.resize_size)

    def _split_files(self) -> tuple[list[Path], list[Path]]:
        """(training files, validation files)."""
        files = find_images(self.root)
        if self.val_root is not None:
            val_files = find_images(self.val_root)[: self.val_count]
            train_files = files
        else:
            if len(files) <= self.val_count:
                raise DataNotFoundError(
                    f"{self.root} has {len(files)} image(s); holding out data.val_count="
                    f"{self.val_count} for validation leaves none to train on"
                )
            train_files, val_files = files[: -self.val_count], files[-self.val_count :]
        if not train_files:
            raise DataNotFoundError(
                f"no images (extensions {', '.join(IMAGE_EXTENSIONS)}) under {self.root}. "
                + coco_help(self.root)
            )
        if not val_files:
            raise DataNotFoundError(f"no validation images under {self.val_root}")
        return train_files, val_files

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train_files, val_files = self._split_files()
        cache = None
        if self.cache_dir is not None:
            cache = self._cache(train_files)
            cache.build()  # a no-op after prepare_data
        self.train_set = ImageFolder(
            train_files,
            train_transform(self.image_size, self.resize_size, self.hflip),
            self.resize_size,
            cache,
        )
        self.val_set = ImageFolder(val_files, val_transform(self.val_size), self.val_size)
        for dataset, where in ((self.train_set, self.root), (self.val_set, self.val_root)):
            # Fail now, not in a DataLoader worker, if no file of a set decodes; cheap when
            # the first file is fine.
            try:
                dataset[0]
            except DataNotFoundError:
                raise DataNotFoundError(
                    f"none of the {len(dataset)} image files under {where or self.root} could "
                    "be read"
                ) from None
        log.info(
            "%d training images under %s, %d for validation",
            len(train_files),
            self.root,
            len(val_files),
        )

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None, "call setup() first"
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        self.sampler = ResumableSampler(len(self.train_set), self.seed, rank, world)
        if self._resume_at is not None:
            epoch, batches = self._resume_at  # batches of all ranks together
            self.sampler.resume_at(epoch, batches * self.batch_size)
            self._resume_at = None
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            sampler=self.sampler,
            drop_last=len(self.train_set) >= self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def val_dataloader(self) -> DataLoader:
        assert self.val_set is not None, "call setup() first"
        return DataLoader(self.val_set, batch_size=len(self.val_set), shuffle=False)

    @property
    def num_skipped(self) -> int:
        return sum(s.num_skipped for s in (self.train_set, self.val_set) if s is not None)

    def skipped_files(self) -> list[Path]:
        return [
            f for s in (self.train_set, self.val_set) if s is not None for f in s.skipped_files()
        ]

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # Lightning calls this in the main process for every batch it is about to use, so
        # counting the training ones here tells where the run is without the trainer's loops.
        trainer = self.trainer
        if trainer is not None and trainer.training:
            epoch, done = self._position
            self._position = (
                trainer.current_epoch,
                done + 1 if epoch == trainer.current_epoch else 1,
            )
        return batch

    def settings(self) -> dict[str, Any]:
        """What shapes the training samples; saved in checkpoints so that a resumed run can
        be checked against the run it continues."""
        return {
            "root": str(self.root),
            "image_size": self.image_size,
            "resize_size": self.resize_size,
            "hflip": self.hflip,
            "batch_size": self.batch_size,
            "num_workers": self.num_workers,
            "seed": self.seed,
        }

    def state_dict(self) -> dict[str, Any]:
        """Where in its epoch the run is and its settings, saved in checkpoints (Lightning
        calls this)."""
        if self.trainer is None:
            return {}
        epoch, done = self._position
        if epoch != self.trainer.current_epoch:  # no batch of this epoch yet
            epoch, done = self.trainer.current_epoch, 0
        return {
            "epoch": epoch,
            "batches_done": done,
            "world_size": self.trainer.world_size,
            "settings": self.settings(),
        }

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        if state_dict:
            world = state_dict.get("world_size", 1)
            self._resume_at = (state_dict["epoch"], state_dict["batches_done"] * world)
            self._position = (state_dict["epoch"], state_dict["batches_done"])
