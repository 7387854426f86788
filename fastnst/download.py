"""Downloads: resumable, verified by checksum, renamed into place only when complete."""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tqdm import tqdm

from fastnst.checks import require
from fastnst.errors import DownloadError
from fastnst.text import printable


def cache_dir() -> Path:
    """``$FASTNST_CACHE``, else ``$XDG_CACHE_HOME/fastnst``, else ``~/.cache/fastnst``."""
    if os.environ.get("FASTNST_CACHE"):
        return Path(os.environ["FASTNST_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fastnst"


MIRROR_ENV = "FASTNST_MIRROR"


def mirrored(url: str) -> str:
    """``url``, or where ``$FASTNST_MIRROR`` serves it: ``https://host/path`` becomes
    ``$FASTNST_MIRROR/host/path`` (a mirror inside a closed network, or a test server)."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if not mirror:
        return url
    if not mirror.lower().startswith(("http://", "https://", "file://")):
        raise DownloadError(
            f"{MIRROR_ENV}={printable(mirror, 80)!r} is not a URL (http://host/path); "
            f"unset it to download from {url}"
        )
    _, sep, rest = url.partition("://")
    return f"{mirror.rstrip('/')}/{rest if sep else url}"


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(
    url: str,
    dest: Path,
    digest: str | None,
    algorithm: str = "sha256",
    timeout: float = 30.0,
    progress: bool = True,
) -> Path:
    """Download ``url`` (through :func:`mirrored`) to ``dest``, resumably, verified and
    atomically.

    Bytes go to ``dest.part``; a download that breaks off leaves it there and the next call
    asks the server for the rest (HTTP Range), starting over if the server cannot resume.
    Only a complete file whose ``algorithm`` digest starts with ``digest`` (the whole hex
    digest, or a prefix of at least 8 digits as torch hub's file names carry) is renamed to
    ``dest``; a wrong one is deleted. ``digest=None``: where no checksum is published, the
    complete file is renamed unchecked (the caller checks what it can).

    Raises:
        DownloadError: offline, server error, interrupted transfer, or wrong checksum.
    """
    require(
        digest is None or len(digest) >= 8, "digest", f"{digest!r} is too short to check a file"
    )
    url = mirrored(url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: our partial file is suspect
            partial.unlink()
            return download(url, dest, digest, algorithm, timeout, progress)
        raise DownloadError(f"could not download {url} (HTTP {exc.code} {exc.reason})") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(
            f"could not download {url} ({reason}); download it yourself and put it at {dest}"
        ) from None
    with response:
        resumed = have > 0 and response.status == 206
        if not resumed:
            have = 0
        length = (response.headers.get("Content-Length") or "").strip()
        # A length that is not a number says nothing: the transfer is read to its end.
        total = have + int(length) if length.isdigit() else None
        written = have
        try:
            with (
                open(partial, "ab" if resumed else "wb") as f,
                tqdm(
                    total=total,
                    initial=have,
                    unit="B",
                    unit_scale=True,
                    desc=dest.name,
                    disable=not progress,
                ) as bar,
            ):
                for chunk in iter(lambda: response.read(1 << 16), b""):
                    f.write(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
        except (OSError, http.client.HTTPException) as exc:
            raise DownloadError(
                f"download of {url} broke off after {written} bytes ({exc}); run again to "
                f"resume from {partial}"
            ) from None
    if total is not None and written < total:
        raise DownloadError(
            f"download of {url} broke off after {written} of {total} bytes; run again to "
            f"resume from {partial}"
        )
    got = file_digest(partial, algorithm) if digest is not None else None
    if got is not None and not got.startswith(digest.lower()):
        partial.unlink()
        raise DownloadError(
            f"{url} gave a file with {algorithm} {got}, expected {digest}; it was deleted"
        )
    os.replace(partial, dest)
    return dest


def cached_download(url: str, sha256: str, relative_path: str, timeout: float = 30.0) -> Path:
    """Return ``cache_dir()/relative_path``, downloading it from ``url`` first if needed."""
    dest = cache_dir() / relative_path
    if dest.is_file():
        return dest
    return download(url, dest, sha256, "sha256", timeout)


def style_image_path(style: Mapping[str, Any]) -> Path:
    """The painting of a ``conf/style`` entry: its ``image`` if set, else its ``url`` fetched
    once into the cache and checked against its ``sha256``.

    Raises:
        ConfigError: no image file and no url with a checksum (keys of the entry).
        DownloadError: the download failed or did not match.
    """
    name = style["name"]
    if style.get("image"):
        path = Path(style["image"]).expanduser()
        require(path.is_file(), "image", f"{path} does not exist")
        return path.resolve()
    require(
        bool(style.get("url")) and bool(style.get("sha256")),
        "url",
        f"style {name!r} needs style.image or both style.url and style.sha256",
    )
    suffix = Path(style["url"]).suffix or ".jpg"
    return cached_download(style["url"], style["sha256"], f"styles/{name}{suffix}")
