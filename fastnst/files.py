"""Files that appear complete or not at all."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastnst.errors import ConfigError


def user_path(text: str | os.PathLike) -> Path:
    """A path the user gave, with ``~`` expanded (argparse ``type=`` of every path option)."""
    return Path(os.path.expanduser(text))


def check_writable_folder(folder: Path, key: str, create: bool = True) -> None:
    """A ConfigError about ``key`` unless files can be written in ``folder``: checked before
    the work whose results go there, not after it. ``create``: a missing folder is made now;
    else nothing is made, and its nearest existing parent must take files (a run refused
    later leaves no empty folder behind)."""
    probe = Path(os.path.abspath(folder))
    if not create:
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(key, f"{probe} is a file, not a folder")
    try:
        probe.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".fastnst-write-check-"):
            pass
    except OSError as exc:
        raise ConfigError(key, f"cannot write in {probe} ({exc.strerror or exc})") from None


@contextmanager
def written_atomically(path: str | Path, keep_previous: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same extension) to write; on success it is
    renamed to ``path``, so a file appears complete or not at all; on failure it is removed.

    Args:
        keep_previous: a file already at ``path`` is first renamed to
            ``<stem>-<its modification time><suffix>`` instead of being replaced.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        yield partial
        if keep_previous and path.exists():
            stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(path.stat().st_mtime))
            os.replace(path, path.with_name(f"{path.stem}-{stamp}{path.suffix}"))
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
