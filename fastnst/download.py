"""Fetch a file once into fastnst's cache, verified by its SHA-256."""

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

from fastnst.images import ImageReadError


class DownloadError(Exception):
    """A download failed or delivered the wrong bytes; the message says what to do."""


def cache_dir() -> Path:
    """``$FASTNST_CACHE``, else ``$XDG_CACHE_HOME/fastnst``, else ``~/.cache/fastnst``."""
    if os.environ.get("FASTNST_CACHE"):
        return Path(os.environ["FASTNST_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fastnst"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cached_download(url: str, sha256: str, relative_path: str, timeout: float = 30.0) -> Path:
    """Return ``cache_dir()/relative_path``, downloading it from ``url`` first if needed.

    The file is streamed to a temporary name, checked against ``sha256`` and only then
    renamed into place, so the cache never holds a partial or wrong file.
    """
    dest = cache_dir() / relative_path
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as f:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, leave=False) as bar:
                for chunk in iter(lambda: response.read(1 << 16), b""):
                    f.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
            if total is not None and f.tell() != total:
                raise DownloadError(
                    f"download of {url} stopped after {f.tell()} of {total} bytes; try again"
                )
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        partial.unlink(missing_ok=True)
        reason = getattr(exc, "reason", exc)
        raise DownloadError(
            f"could not download {url} ({reason}); download it yourself and put it at {dest}"
        ) from None
    except DownloadError:
        partial.unlink(missing_ok=True)
        raise
    if digest.hexdigest() != sha256:
        partial.unlink(missing_ok=True)
        raise DownloadError(
            f"{url} served a file with SHA-256 {digest.hexdigest()}, expected {sha256}; "
            "nothing was saved"
        )
    os.replace(partial, dest)
    return dest


def style_image_path(style: Mapping[str, Any]) -> Path:
    """The painting of a ``conf/style`` entry: its ``image`` if set, else its ``url`` fetched
    once into the cache and checked against its ``sha256``."""
    name = style["name"]
    if style.get("image"):
        path = Path(style["image"]).expanduser()
        if not path.is_file():
            raise ImageReadError(f"style image {path} does not exist (style.image)")
        return path.resolve()
    if not style.get("url"):
        raise ValueError(f"style {name!r} has neither an image nor a url")
    suffix = Path(style["url"]).suffix or ".jpg"
    return cached_download(style["url"], style["sha256"], f"styles/{name}{suffix}")
