"""Downloads against a local HTTP server on 127.0.0.1 that can resume, break off or lie."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from fastnst import coco as download_coco
from fastnst.download import DownloadError, download

from .conftest import COCO_TRAIN, run_console

pytestmark = pytest.mark.shared_data


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(var, raising=False)


PAYLOAD = b"".join(p.read_bytes() for p in sorted(COCO_TRAIN.glob("*.jpg"))[:3])
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_plain_download_is_verified_and_renamed(server, tmp_path):
    base, files = server
    files.content["/a.bin"] = PAYLOAD
    dest = download(f"{base}/a.bin", tmp_path / "a.bin", SHA)
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "a.bin.part").exists()


def test_dropped_connection_keeps_partial_then_resumes(server, tmp_path):
    base, files = server
    files.content["/a.bin"] = PAYLOAD
    files.drop_after["/a.bin"] = len(PAYLOAD) // 2
    with pytest.raises(DownloadError, match="broke off after .* run again to resume"):
        download(f"{base}/a.bin", tmp_path / "a.bin", SHA)
    assert not (tmp_path / "a.bin").exists()
    assert (tmp_path / "a.bin.part").stat().st_size == len(PAYLOAD) // 2
    download(f"{base}/a.bin", tmp_path / "a.bin", SHA)
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD
    # The second request asked only for the missing half.
    assert files.requests[-1] == ("/a.bin", f"bytes={len(PAYLOAD) // 2}-")


def test_server_without_range_support_starts_over(server, tmp_path):
    base, files = server
    files.content["/a.bin"] = PAYLOAD
    files.range_support = False
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD[:1000])
    download(f"{base}/a.bin", tmp_path / "a.bin", SHA)
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD


def test_wrong_bytes_are_deleted(server, tmp_path):
    base, files = server
    files.content["/a.bin"] = PAYLOAD[::-1]
    with pytest.raises(DownloadError, match=f"expected {SHA}"):
        download(f"{base}/a.bin", tmp_path / "a.bin", SHA)
    assert not (tmp_path / "a.bin").exists() and not (tmp_path / "a.bin.part").exists()


def test_offline_and_missing_file_are_clear(server, tmp_path):
    base, _ = server
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(f"{base}/nope.bin", tmp_path / "n.bin", SHA)
    with pytest.raises(DownloadError, match="could not download .* put it at"):
        download("http://127.0.0.1:9/a.bin", tmp_path / "a.bin", SHA)


def _coco_zip(tmp_path: Path) -> bytes:
    archive = tmp_path / "made.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(COCO_TRAIN.glob("*.jpg"))[:3]:
            zf.write(p, f"train2017/{p.name}")
    return archive.read_bytes()


def test_download_coco_script_resumes_verifies_and_unpacks(server, tmp_path):
    base, files = server
    data = _coco_zip(tmp_path)
    files.content["/train2017.zip"] = data
    files.drop_after["/train2017.zip"] = len(data) // 3
    md5 = hashlib.md5(data).hexdigest()
    args = ["--root", tmp_path / "coco", "--base-url", base, "--md5", f"train2017={md5}"]
    first = run_console(download_coco.main, args)
    assert first.returncode == 1 and "Traceback" not in first.stderr
    assert "run again to resume" in first.stderr
    second = run_console(download_coco.main, args)
    assert second.returncode == 0, second.stderr
    names = sorted(p.name for p in (tmp_path / "coco" / "train2017").iterdir())
    assert names == sorted(p.name for p in sorted(COCO_TRAIN.glob("*.jpg"))[:3])
    assert not list((tmp_path / "coco").glob("*.zip*"))
    assert "data.root=" in second.stdout


def test_download_coco_script_rejects_wrong_checksum(server, tmp_path):
    base, files = server
    files.content["/train2017.zip"] = _coco_zip(tmp_path)
    result = run_console(download_coco.main, ["--root", tmp_path / "coco", "--base-url", base])
    assert result.returncode == 1 and "expected cced6f7f71b7629ddf16f17bbcfab6b2" in result.stderr
    assert not (tmp_path / "coco" / "train2017").exists()


def test_download_coco_sample_fetches_single_photos_and_checks_them(server, tmp_path):
    base, files = server
    names = [download_coco.image_name(i) for i in download_coco.SAMPLE_IDS["train2017"][:3]]
    for name in names:
        files.content[f"/train2017/{name}"] = (COCO_TRAIN / name).read_bytes()
    args = ["--root", tmp_path / "coco", "--base-url", base, "--sample", "3"]
    result = run_console(download_coco.main, args)
    assert result.returncode == 0, result.stderr
    got = sorted(p.name for p in (tmp_path / "coco" / "train2017").iterdir())
    assert got == sorted(names)
    for name in names:
        assert (tmp_path / "coco" / "train2017" / name).read_bytes() == (
            COCO_TRAIN / name
        ).read_bytes()
    # Run again: nothing fetched twice; a fourth photo that is not a JPEG is refused and deleted.
    asked = len(files.requests)
    fourth = download_coco.image_name(download_coco.SAMPLE_IDS["train2017"][3])
    files.content[f"/train2017/{fourth}"] = b"<html>not found</html>"
    result = run_console(download_coco.main, [*args[:-1], "4"])
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "is not a readable photo" in result.stderr
    assert len(files.requests) == asked + 1
    assert not (tmp_path / "coco" / "train2017" / fourth).exists()


def test_the_sample_ids_are_the_shared_coco128_photos():
    names = sorted(p.name for p in COCO_TRAIN.glob("*.jpg"))
    ids = download_coco.SAMPLE_IDS["train2017"]
    assert [download_coco.image_name(i) for i in ids] == names
