"""fastnst-download-coco: COCO 2017 photos for training (and viewing).

    fastnst-download-coco                                  # train2017 (18 GB) into ~/datasets/coco
    fastnst-download-coco --root /data/coco --splits train2017 val2017
    fastnst-download-coco --sample 128 --root DIR          # the first 128 train2017 photos only

Whole splits: each zip is downloaded with a progress bar into <root>/<split>.zip.part, resumed
where it stopped if the command is run again, checked against its MD5 (published with the
dataset), renamed into place, and unpacked into <root>/<split>/ through a temporary folder that
is renamed when complete.

``--sample N``: the first N photos of each split (train2017: the 128 of the well-known
"coco128" set; val2017: 5 photos), one file each from COCO's image server: seconds instead of
hours, enough for a demo. COCO publishes no checksum of single photos; each one must decode as
a JPEG, or it is deleted. Then train with ``python -m fastnst.train data.root=<root>/train2017``.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import sys
import warnings
import zipfile
import zlib
from pathlib import Path

from tqdm import tqdm

from fastnst.download import DownloadError, download, file_digest
from fastnst.errors import ConfigError, first_line
from fastnst.files import check_writable_folder
from fastnst.text import printable

BASE_URL = "http://images.cocodataset.org/zips"
IMAGES_URL = "http://images.cocodataset.org"
MD5 = {
    "train2017": "cced6f7f71b7629ddf16f17bbcfab6b2",
    "val2017": "442b8da7639aecaf257c1dceb8ba8c80",
}
# The first image ids of each split, in the order of their file names: train2017's first 128
# are the "coco128" sample; the val2017 ones are photos often used as examples.
SAMPLE_IDS = {
    "train2017": (
        9, 25, 30, 34, 36, 42, 49, 61, 64, 71, 72, 73, 74, 77, 78, 81, 86, 89, 92, 94, 109, 110,
        113, 127, 133, 136, 138, 142, 143, 144, 149, 151, 154, 164, 165, 192, 194, 196, 201, 208,
        241, 247, 250, 257, 260, 263, 283, 294, 307, 308, 309, 312, 315, 321, 322, 326, 328, 332,
        338, 349, 357, 359, 360, 368, 370, 382, 384, 387, 389, 394, 395, 397, 400, 404, 415, 419,
        428, 431, 436, 438, 443, 446, 450, 459, 471, 472, 474, 486, 488, 490, 491, 502, 508, 510,
        514, 520, 529, 531, 532, 536, 540, 542, 544, 560, 562, 564, 569, 572, 575, 581, 584, 589,
        590, 595, 597, 599, 605, 612, 620, 623, 625, 626, 629, 634, 636, 641, 643, 650,
    ),
    "val2017": (139, 724, 14439, 87038, 570688),
}  # fmt: skip


def image_name(image_id: int) -> str:
    return f"{image_id:012d}.jpg"


def unpack(archive: Path, root: Path, split: str) -> Path:
    """``root/split`` from its zip, through a staging folder renamed when complete; a zip that
    cannot be unpacked (damaged, however its checksum came out) is deleted with the staging
    folder, so the next run fetches it again."""
    target = root / split
    if target.is_dir():
        return target
    staging = root / f".{split}.unpacking"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in tqdm(zf.infolist(), desc=f"unpacking {archive.name}", unit="file"):
                zf.extract(member, staging)
    # zipfile lets the decompressor's own errors through: zlib.error, EOFError, ...
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, RuntimeError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        archive.unlink(missing_ok=True)
        raise DownloadError(
            f"could not unpack {archive} ({first_line(exc)}): the archive is damaged and was "
            "deleted; run again to download it anew"
        ) from None
    except OSError as exc:  # a full disk: the archive is fine, keep it
        shutil.rmtree(staging, ignore_errors=True)
        raise DownloadError(
            f"could not unpack {archive} ({exc.strerror or first_line(exc)}); it is kept, run "
            "again once that is fixed"
        ) from None
    # The zips hold one top folder named after the split.
    inner = staging / split if (staging / split).is_dir() else staging
    inner.rename(target)
    shutil.rmtree(staging, ignore_errors=True)
    return target


def download_split(
    root: Path, split: str, md5: str, base_url: str = BASE_URL, keep_zip: bool = False
) -> Path:
    """``root/split``: the whole split, from its zip. A zip already at ``root/<split>.zip``
    (an earlier run's, or put there by hand) is checked against the MD5 first: a wrong one is
    deleted and fetched again."""
    if (root / split).is_dir():
        print(f"{root / split} already exists")
        return root / split
    archive = root / f"{split}.zip"
    if archive.is_file():
        print(f"checking {archive} against its MD5")
        got = file_digest(archive, "md5")
        if got != md5:
            print(f"{archive} has MD5 {got}, expected {md5}: deleted, downloading it again")
            archive.unlink()
    if not archive.is_file():
        download(f"{base_url}/{split}.zip", archive, md5, "md5")
    target = unpack(archive, root, split)
    if not keep_zip:
        archive.unlink()
    return target


def readable_photo(path: Path) -> str | None:
    """Why ``path`` is not a whole JPEG photo of a sane size, or None."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            # A photo over Pillow's pixel limit is a decompression bomb here, not a warning.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.format != "JPEG":
                    return f"a {image.format} file, not a JPEG"
                image.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        return printable(first_line(exc), 200)
    except Image.DecompressionBombWarning:
        return "it declares more pixels than a photo has (a decompression bomb?)"
    return None


def download_sample(root: Path, split: str, count: int, base_url: str = IMAGES_URL) -> Path:
    """``root/split`` with the first ``count`` photos of the split (see the module); photos
    already there are kept if they decode, a broken one (empty, truncated) is fetched again."""
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    ids = SAMPLE_IDS[split][:count]
    for image_id in tqdm(ids, desc=f"{split} photos", unit="photo"):
        dest = folder / image_name(image_id)
        if dest.is_file():
            if readable_photo(dest) is None:
                continue
            dest.unlink()  # broken: fetched again below
        download(f"{base_url}/{split}/{dest.name}", dest, None, progress=False)
        problem = readable_photo(dest)
        if problem is not None:
            dest.unlink()
            raise DownloadError(
                f"{base_url}/{split}/{dest.name} is not a readable photo ({problem}); it was "
                "deleted"
            )
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fastnst-download-coco", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--root", type=Path, default=Path("~/datasets/coco"), help="where the splits go"
    )
    parser.add_argument("--splits", nargs="+", default=["train2017"], choices=sorted(MD5))
    parser.add_argument(
        "--sample", type=int, metavar="N", default=None,
        help=f"only the first N photos of each split, one by one (train2017: up to "
        f"{len(SAMPLE_IDS['train2017'])}, val2017: up to {len(SAMPLE_IDS['val2017'])})",
    )  # fmt: skip
    parser.add_argument("--base-url", default=None, help="a mirror of the zips (or of the photos)")
    parser.add_argument(
        "--md5", action="append", default=[], metavar="SPLIT=MD5",
        help="expected MD5 of a mirror's zip (default: the published ones)",
    )  # fmt: skip
    parser.add_argument("--keep-zip", action="store_true", help="keep the zip after unpacking")
    args = parser.parse_args(argv)
    root = args.root.expanduser()
    md5 = dict(MD5)
    for item in args.md5:
        # Checked before anything is fetched: a malformed checksum must never cost a download.
        split, sep, value = item.partition("=")
        value = value.strip().lower()
        if not sep or split not in MD5:
            parser.error(f"--md5 {item!r}: write SPLIT=MD5 with SPLIT one of {sorted(MD5)}")
        if not re.fullmatch(r"[0-9a-f]{32}", value):
            parser.error(f"--md5 {item!r}: an MD5 is 32 hexadecimal digits")
        md5[split] = value
    if args.sample is not None and args.sample < 1:
        parser.error(f"--sample {args.sample}: give a number of photos, 1 or more")
    if args.sample is not None:
        held = {split: len(SAMPLE_IDS[split]) for split in args.splits}
        short = [split for split in args.splits if args.sample > held[split]]
        if short:
            shown = ", ".join(f"{split}: {n}" for split, n in held.items())
            parser.error(
                f"--sample {args.sample}: the sample holds fewer photos ({shown}); ask for at "
                "most that many, or leave out --sample for the whole split"
            )
    try:
        check_writable_folder(root, "--root")
    except ConfigError as exc:
        print(
            f"fastnst-download-coco: error: --root {root}: cannot write there ({exc.problem})",
            file=sys.stderr,
        )
        return 2
    try:
        for split in args.splits:
            if args.sample is not None:
                folder = download_sample(root, split, args.sample, args.base_url or IMAGES_URL)
                count = len(list(folder.glob("*.jpg")))
                print(f"{folder} is ready ({count} photos)")
            else:
                folder = download_split(
                    root, split, md5[split], args.base_url or BASE_URL, args.keep_zip
                )
                print(f"{folder} is ready")
    except DownloadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the disk: full, or a folder that became unwritable
        print(f"error: {exc.strerror or first_line(exc)}: {exc.filename or root}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nfastnst-download-coco: interrupted; run it again to resume", file=sys.stderr)
        return 130
    train = shlex.join([sys.executable, "-m", "fastnst.train", f"data.root={root / 'train2017'}"])
    print(f"Train with: {train}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
