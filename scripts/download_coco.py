"""Download and unpack COCO 2017 images for training (and optionally validation).

    python scripts/download_coco.py                      # train2017 into ~/datasets/coco
    python scripts/download_coco.py --root /data/coco --splits train2017 val2017

Each zip is downloaded with a progress bar into <root>/<split>.zip.part, resumed where it
stopped if the script is run again, checked against its MD5 (published with the dataset;
train2017.zip is 18 GB), renamed into place, and unpacked into <root>/<split>/ through a
temporary folder that is renamed when complete. Then train with:

    python -m fastnst.train data.root=<root>/train2017
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import sys
import zipfile
from pathlib import Path

from tqdm import tqdm

from fastnst.download import DownloadError, download

BASE_URL = "http://images.cocodataset.org/zips"
MD5 = {
    "train2017": "cced6f7f71b7629ddf16f17bbcfab6b2",
    "val2017": "442b8da7639aecaf257c1dceb8ba8c80",
}


def unpack(archive: Path, root: Path, split: str) -> Path:
    target = root / split
    if target.is_dir():
        return target
    staging = root / f".{split}.unpacking"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in tqdm(zf.infolist(), desc=f"unpacking {archive.name}", unit="file"):
                zf.extract(member, staging)
    except (zipfile.BadZipFile, OSError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise DownloadError(f"could not unpack {archive} ({exc})") from None
    # The zips hold one top folder named after the split.
    inner = staging / split if (staging / split).is_dir() else staging
    inner.rename(target)
    shutil.rmtree(staging, ignore_errors=True)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("~/datasets/coco").expanduser())
    parser.add_argument("--splits", nargs="+", default=["train2017"], choices=sorted(MD5))
    parser.add_argument("--base-url", default=BASE_URL, help="a mirror of the zips")
    parser.add_argument(
        "--md5", action="append", default=[], metavar="SPLIT=MD5",
        help="expected MD5 of a mirror's zip (default: the published ones)",
    )  # fmt: skip
    parser.add_argument("--keep-zip", action="store_true", help="keep the zip after unpacking")
    args = parser.parse_args(argv)
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
    try:
        for split in args.splits:
            if (args.root / split).is_dir():
                print(f"{args.root / split} already exists")
                continue
            archive = args.root / f"{split}.zip"
            if not archive.is_file():
                download(f"{args.base_url}/{split}.zip", archive, md5[split], "md5")
            print(f"{unpack(archive, args.root, split)} is ready")
            if not args.keep_zip:
                archive.unlink()
    except DownloadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    train = shlex.join(
        [sys.executable, "-m", "fastnst.train", f"data.root={args.root / 'train2017'}"]
    )
    print(f"Train with: {train}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
