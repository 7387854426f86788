from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from fastnst.data import ContentDataModule
from fastnst.errors import ConfigError, DataNotFoundError, ImageReadError
from fastnst.images import find_images, load_image, open_rgb, read_image_uint8

from .conftest import COCO_TRAIN

pytestmark = pytest.mark.shared_data
COCO_FILES = sorted(COCO_TRAIN.glob("*.jpg"))


def _odd_modes(folder: Path) -> dict[str, Path]:
    """Real COCO photos re-saved in the modes a photo folder can hold."""
    folder.mkdir(parents=True, exist_ok=True)
    photo = Image.open(COCO_FILES[0]).convert("RGB")
    files = {
        "gray": folder / "gray.jpg",
        "cmyk": folder / "cmyk.jpg",
        "palette": folder / "palette.png",
        "rgba": folder / "rgba.png",
        "gray16": folder / "gray16.png",
    }
    photo.convert("L").save(files["gray"])
    photo.convert("CMYK").save(files["cmyk"])
    photo.convert("P").save(files["palette"])
    rgba = photo.convert("RGBA")
    rgba.putalpha(0)  # fully transparent
    rgba.save(files["rgba"])
    gray16 = np.asarray(photo.convert("L")).astype(np.uint16) * 257
    Image.fromarray(gray16).save(files["gray16"])
    return files


def test_every_mode_becomes_rgb_in_unit_range(tmp_path):
    files = _odd_modes(tmp_path)
    assert Image.open(files["cmyk"]).mode == "CMYK"
    assert Image.open(files["gray16"]).mode.startswith("I")
    for name, path in files.items():
        x = load_image(path)
        assert x.dtype == torch.float32 and x.shape[0] == 3, name
        assert 0.0 <= x.min() and x.max() <= 1.0, name
    # A transparent pixel becomes white, not black; 16-bit grey is scaled, not clipped to white.
    assert torch.all(load_image(files["rgba"]) == 1.0)
    gray16 = load_image(files["gray16"])
    gray8 = load_image(files["gray"])
    assert (gray16 - gray8).abs().mean() < 0.02


def test_unreadable_file_error_names_the_file(tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    with pytest.raises(ImageReadError, match="notes.jpg"):
        open_rgb(bad)
    with pytest.raises(ImageReadError, match="no such file"):
        open_rgb(tmp_path / "missing.jpg")


def test_fast_decoder_matches_pillow():
    for path in COCO_FILES[:4]:
        fast = read_image_uint8(path).float()
        slow = load_image(path) * 255
        assert fast.shape == slow.shape
        # Both are libjpeg-turbo; the upsampling of chroma may differ by a level or two.
        assert (fast - slow).abs().mean() < 1.0


def test_draft_decoding_keeps_the_shorter_side_at_least_the_target():
    img = open_rgb(COCO_FILES[0], draft_size=100)
    assert min(img.size) >= 100
    assert min(img.size) < min(Image.open(COCO_FILES[0]).size)


def test_images_are_found_recursively(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    shutil.copy(COCO_FILES[0], tmp_path / "a" / "b" / "x.JPG")
    shutil.copy(COCO_FILES[1], tmp_path / "top.jpeg")
    (tmp_path / "readme.txt").write_text("hi")
    assert [p.name for p in find_images(tmp_path)] == ["x.JPG", "top.jpeg"]


def _salted_folder(root: Path, good: int) -> list[Path]:
    root.mkdir(parents=True)
    for src in COCO_FILES[:good]:
        shutil.copy(src, root / src.name)
    (root / "empty.jpg").write_bytes(b"")
    (root / "text.jpg").write_text("this is not a jpeg")
    data = COCO_FILES[good].read_bytes()
    (root / "truncated.jpg").write_bytes(data[: len(data) // 3])
    return [root / "empty.jpg", root / "text.jpg", root / "truncated.jpg"]


@pytest.mark.parametrize("workers", [0, 2])
def test_unreadable_files_are_skipped_and_counted(tmp_path, workers):
    bad = _salted_folder(tmp_path / "photos", good=6)
    dm = ContentDataModule(
        str(tmp_path / "photos"),
        image_size=32,
        batch_size=3,
        num_workers=workers,
        val_root=str(COCO_TRAIN),
        val_count=2,
    )
    dm.setup("fit")
    seen = 0
    for _ in range(2):  # two epochs: bad files are counted once
        for batch in dm.train_dataloader():
            assert batch.shape[1:] == (3, 32, 32)
            assert torch.isfinite(batch).all()
            seen += batch.shape[0]
    assert seen > 0
    assert dm.num_skipped == 3
    assert sorted(dm.train_set.skipped_files()) == sorted(bad)


def test_augmentation_shapes_flips_and_validation_is_fixed():
    dm = ContentDataModule(
        str(COCO_TRAIN),
        image_size=48,
        resize_size=64,
        batch_size=4,
        num_workers=0,
        val_count=4,
        hflip=True,
    )
    dm.setup("fit")
    assert len(dm.train_set) == len(COCO_FILES) - 4
    assert not set(dm.train_set.files) & set(dm.val_set.files)
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (4, 3, 48, 48) and batch.dtype == torch.float32
    assert 0.0 <= batch.min() and batch.max() <= 1.0
    val_a = next(iter(dm.val_dataloader()))
    val_b = next(iter(dm.val_dataloader()))
    assert val_a.shape == (4, 3, 48, 48) and torch.equal(val_a, val_b)
    # Random crops and flips: the same photo comes out differently across draws.
    torch.manual_seed(0)
    draws = torch.stack([dm.train_set[0] for _ in range(6)])
    assert (draws - draws[0]).abs().amax() > 0.1


@pytest.mark.parametrize("hflip", [True, False])
def test_crops_come_from_the_resized_photo_and_flip_only_when_asked(hflip):
    dm = ContentDataModule(str(COCO_TRAIN), image_size=32, num_workers=0, hflip=hflip)
    dm.setup("fit")
    index = 0
    path = dm.train_set.files[index]
    ref = v2.Resize(32)(read_image_uint8(path, draft_size=32)).float() / 255
    assert ref.shape[1] == 32 and ref.shape[2] > 40  # a landscape photo: crops slide sideways
    windows = [ref[:, :, x : x + 32] for x in range(ref.shape[2] - 31)]
    torch.manual_seed(1)
    flipped = 0
    for _ in range(16):
        draw = dm.train_set[index]
        plain = min((draw - w).abs().max().item() for w in windows)
        mirrored = min((draw - w.flip(-1)).abs().max().item() for w in windows)
        assert min(plain, mirrored) < 1e-6, "a training crop is not a window of the photo"
        flipped += mirrored < 1e-6 and plain > 1e-6
    assert (flipped > 0) == hflip


def test_separate_validation_folder(tmp_path):
    val = tmp_path / "val"
    val.mkdir()
    for src in COCO_FILES[:3]:
        shutil.copy(src, val / src.name)
    dm = ContentDataModule(str(COCO_TRAIN), image_size=32, num_workers=0, val_root=str(val))
    dm.setup("fit")
    assert len(dm.train_set) == len(COCO_FILES)
    assert [p.name for p in dm.val_set.files] == [p.name for p in COCO_FILES[:3]]


def test_missing_root_says_how_to_get_coco(tmp_path):
    with pytest.raises(ConfigError) as info:  # before any work: in the constructor
        ContentDataModule(str(tmp_path / "coco" / "train2017"))
    message = str(info.value)
    assert "train2017.zip" in message and "data.root=" in message and "\n" not in message


def test_folder_without_images_fails_fast(tmp_path):
    (tmp_path / "notes.txt").write_text("no photos here")
    dm = ContentDataModule(str(tmp_path), num_workers=0)
    with pytest.raises(DataNotFoundError, match="0 image"):
        dm.setup("fit")


def _cached_module(root, cache_dir, **kw) -> ContentDataModule:
    dm = ContentDataModule(
        str(root),
        image_size=64,
        batch_size=4,
        num_workers=0,
        val_count=2,
        cache_dir=cache_dir,
        **kw,
    )
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_resized_cache_gives_the_same_samples_without_decoding(tmp_path, monkeypatch):
    photos = tmp_path / "photos"
    photos.mkdir()
    for f in COCO_FILES[:10]:
        shutil.copy(f, photos / f.name)
    (photos / "000000000000.jpg").write_bytes(COCO_FILES[0].read_bytes()[:500])
    plain = _cached_module(photos, None, resize_size=80)
    cached = _cached_module(photos, str(tmp_path / "cache"), resize_size=80)
    assert cached.train_set.cache is not None and cached.train_set.cache.complete
    for item in [(0, 11), (3, 12345), (7, 2**40)]:
        assert torch.equal(plain.train_set[item], cached.train_set[item]), item

    broken = plain.train_set.files.index(photos / "000000000000.jpg")
    expected = plain.train_set[(broken, 5)]  # the next readable file, cropped with seed 5

    # A second run reads the cache only: decoding anything now would fail the test.
    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded a photo although it is cached")

    monkeypatch.setattr("fastnst.data.folder.read_image_uint8", no_decoding)
    again = ContentDataModule(
        str(photos), image_size=64, num_workers=0, val_count=2, resize_size=80,
        cache_dir=str(tmp_path / "cache"),
    )  # fmt: skip
    again.prepare_data()
    train_files = again._split_files()[0]
    cache = again._cache(train_files)
    assert cache.folder == cached.train_set.cache.folder
    dataset = type(cached.train_set)(train_files, cached.train_set.transform, 80, cache)
    assert torch.equal(dataset[(broken, 5)], expected)
    assert dataset.num_skipped == 1


def test_cache_key_follows_the_settings_and_the_files(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for f in COCO_FILES[:6]:
        shutil.copy(f, photos / f.name)
    a = _cached_module(photos, str(tmp_path / "cache"), resize_size=80).train_set.cache
    b = _cached_module(photos, str(tmp_path / "cache"), resize_size=96).train_set.cache
    shutil.copy(COCO_FILES[6], photos / "zz_new.jpg")  # changes the training list
    c = _cached_module(photos, str(tmp_path / "cache"), resize_size=80).train_set.cache
    assert len({a.folder, b.folder, c.folder}) == 3
    assert all(x.complete for x in (a, b, c))
    assert b.get(0).shape[1:].numel() > a.get(0).shape[1:].numel()
