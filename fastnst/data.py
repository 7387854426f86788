"""Content photos for training: a recursive image folder and its LightningDataModule."""

from __future__ import annotations

import hashlib
import logging
import os
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.transforms import v2
from tqdm import tqdm

from fastnst.images import (
    IMAGE_EXTENSIONS,
    ImageReadError,
    find_images,
    read_image_uint8,
    uint8_to_float,
)

log = logging.getLogger(__name__)

COCO_HELP = (
    "COCO 2017 training images: run python scripts/download_coco.py (18 GB; or download "
    "http://images.cocodataset.org/zips/train2017.zip and unzip it so that {root}/*.jpg "
    "exist), or train on any folder of photos with data.root=/path/to/photos"
)


class DataNotFoundError(Exception):
    """The image folder is missing or holds no images; the message says what to do."""


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


class ResizedCache:
    """Training photos decoded and resized once, kept as raw uint8 in one memory-mapped file.

    Every epoch after the first then skips JPEG decoding and resizing, the two costs of the
    pipeline (``scripts/benchmark.py``, data section); only the random crop and flip remain.
    The cached pixels are exactly what :meth:`Augment.resize` makes of the decoded file, so
    training draws bit-identical samples with or without the cache.

    Layout: ``<cache_dir>/<key>/pixels.u8`` (CHW images back to back) and ``index.pt`` (offset
    and shape per file; shape 0x0 for a file that could not be read). The key hashes the file
    list (paths, sizes, modification times), the resize and the decoder settings, so a changed
    dataset or setting gets a new cache. The index is written last: a cache folder without one
    is an interrupted build, redone. Space: 3 x shorter side x longer side bytes per photo,
    about 31 GB for COCO train2017 at the default 256 px.
    """

    VERSION = 1

    def __init__(
        self, root: str | Path, files: Sequence[Path], augment: Augment, draft_size: int | None
    ) -> None:
        self.files = list(files)
        self.augment = augment
        self.draft_size = draft_size
        digest = hashlib.sha256(repr((self.VERSION, augment.resize_size, draft_size)).encode())
        for f in self.files:
            st = f.stat()
            digest.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        self.folder = Path(root).expanduser() / digest.hexdigest()[:16]
        self._pixels: torch.Tensor | None = None
        self._index: torch.Tensor | None = None

    @property
    def complete(self) -> bool:
        return (self.folder / "index.pt").is_file()

    def build(self) -> None:
        """Decode and resize every file once (with a progress bar), unless already done."""
        if self.complete:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        index = torch.zeros(len(self.files), 3, dtype=torch.int64)  # offset, height, width
        offset = 0
        partial = self.folder / "pixels.u8.partial"
        with open(partial, "wb") as out:
            for i, path in enumerate(tqdm(self.files, desc="caching resized photos", unit="img")):
                try:
                    img = self.augment.resize(read_image_uint8(path, draft_size=self.draft_size))
                except ImageReadError as exc:
                    log.warning("skipping unreadable image %s", exc)
                    index[i] = torch.tensor([offset, 0, 0])
                    continue
                out.write(img.contiguous().numpy().tobytes())
                index[i] = torch.tensor([offset, img.shape[1], img.shape[2]])
                offset += img.numel()
        os.replace(partial, self.folder / "pixels.u8")
        torch.save(index, self.folder / "index.pt.partial")
        os.replace(self.folder / "index.pt.partial", self.folder / "index.pt")
        log.info("cached %d photos in %s (%.1f GB)", len(self.files), self.folder, offset / 1e9)

    def get(self, i: int) -> torch.Tensor | None:
        """The resized uint8 CHW image of file ``i``, or None if it could not be read."""
        if self._pixels is None:
            # Opened lazily, so each DataLoader worker maps the file itself.
            self._index = torch.load(self.folder / "index.pt", weights_only=True)
            size = (self.folder / "pixels.u8").stat().st_size
            self._pixels = torch.from_file(
                str(self.folder / "pixels.u8"), shared=False, size=size, dtype=torch.uint8
            )
        assert self._index is not None
        offset, h, w = self._index[i].tolist()
        if h == 0:
            return None
        return self._pixels[offset : offset + 3 * h * w].view(3, h, w)

    def __getstate__(self) -> dict:
        # Workers started by spawn get the paths, not the mapping.
        return {**self.__dict__, "_pixels": None, "_index": None}


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
        self.seed = seed
        self.cache_dir = cache_dir
        self._resume_state: dict[str, int] | None = None
        self.sampler: ResumableSampler | None = None
        if image_size < 16:
            raise ValueError(f"data.image_size must be at least 16, got {image_size}")
        self.root = Path(root).expanduser()
        self.image_size = image_size
        self.resize_size = resize_size or image_size
        if self.resize_size < image_size:
            raise ValueError("data.resize_size must be at least data.image_size")
        self.hflip = hflip
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_root = Path(val_root).expanduser() if val_root else None
        self.val_count = val_count
        self.val_size = val_size or image_size
        self.train_set: ImageFolder | None = None
        self.val_set: ImageFolder | None = None

    def check_root(self) -> None:
        """Fail fast, with instructions, if the training folder is not there."""
        if not self.root.is_dir():
            raise DataNotFoundError(
                f"training images not found: {self.root} is not a folder. "
                + COCO_HELP.format(root=self.root)
            )
        if self.val_root is not None and not self.val_root.is_dir():
            raise DataNotFoundError(f"validation images not found: {self.val_root} is not a folder")

    def prepare_data(self) -> None:
        # COCO is 18 GB: fastnst does not download it behind the user's back.
        self.check_root()
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
                + COCO_HELP.format(root=self.root)
            )
        if not val_files:
            raise DataNotFoundError(f"no validation images under {self.val_root}")
        return train_files, val_files

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        self.check_root()
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
        if self._resume_state is not None:
            state = self._resume_state
            done = state["batches_done"] * self.batch_size * state.get("world_size", 1)
            self.sampler.resume_at(state["epoch"], done)
            self._resume_state = None
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

    def state_dict(self) -> dict[str, int]:
        """Where in its epoch the run is, saved in checkpoints (Lightning calls this)."""
        if self.trainer is None:
            return {}
        progress = self.trainer.fit_loop.epoch_loop.batch_progress.current
        # Checkpoints are written after a batch is processed and before it counts as completed.
        return {
            "epoch": self.trainer.current_epoch,
            "batches_done": progress.processed,
            "world_size": self.trainer.world_size,
        }

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        if state_dict:
            self._resume_state = dict(state_dict)
