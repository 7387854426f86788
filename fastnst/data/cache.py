"""Training photos decoded and resized once, into one memory-mapped file."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from fastnst.data.augment import Augment
from fastnst.errors import ImageReadError
from fastnst.files import written_atomically
from fastnst.images import read_image_uint8

log = logging.getLogger(__name__)


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

    VERSION = 2  # 2: EXIF orientation applied

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
        index = torch.zeros(len(self.files), 3, dtype=torch.int64)  # offset, height, width
        offset = 0
        with written_atomically(self.folder / "pixels.u8") as partial, open(partial, "wb") as out:
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
        with written_atomically(self.folder / "index.pt") as partial:
            torch.save(index, partial)
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
