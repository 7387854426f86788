"""The models fastnst ships: trained networks in the repository's ``checkpoints/`` (in a wheel:
``fastnst/models``), each a release file (:func:`fastnst.checkpoint.write_release`) found by its
name, so that ``fastnst-stylize starry_night photo.jpg`` works with nothing trained.

Imports neither Lightning nor Hydra.
"""

from __future__ import annotations

import difflib
import os
import sys
from pathlib import Path

from fastnst.errors import CheckpointError

RELEASE_SUFFIX = ".pt"
# Limits of what ships (the project's rule): each file, and all of them together.
MAX_FILE_BYTES = 4 * 10**6
MAX_TOTAL_BYTES = 25 * 10**6


def shipped_dir() -> Path:
    """Where the shipped models are: ``fastnst/models`` in an installed wheel, else the
    repository's ``checkpoints/``."""
    package = Path(__file__).resolve().parent
    installed = package / "models"
    if installed.is_dir() and any(installed.glob(f"*{RELEASE_SUFFIX}")):
        return installed
    return package.parent / "checkpoints"


def shipped_models() -> dict[str, Path]:
    """name -> file of every shipped model, by name."""
    folder = shipped_dir()
    return {p.stem: p for p in sorted(folder.glob(f"*{RELEASE_SUFFIX}")) if p.is_file()}


def model_path(text: str | os.PathLike) -> Path:
    """The model a user named: an existing file (``~`` expanded), else a shipped model of
    that name (``starry_night``).

    Raises:
        CheckpointError: a bare name that is neither a file nor a shipped model (the message
            lists what ships).
    """
    name = str(text)
    models = shipped_models()
    shipped = ", ".join(models) or "none"
    if not name.strip():
        raise CheckpointError(
            f"no model given: name a shipped model ({shipped}) or a checkpoint file"
        )
    path = Path(os.path.expanduser(text))
    if path.is_file():
        if name in models:
            # A file here that has a shipped model's name: the file is taken, and the user
            # told so (it may be anything, and the shipped model is what they meant).
            print(
                f"fastnst: note: {name} is a file in this folder and the name of a shipped "
                f"model; using the file (the shipped model is {models[name]})",
                file=sys.stderr,
            )
        return path
    if name in models:
        return models[name]
    if os.sep in name or "." in name or path.exists():
        return path  # a path that is not there, or a folder: the loader says so
    close = difflib.get_close_matches(name, list(models), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}? " if close else ""
    raise CheckpointError(
        f"{name}: no such model file, and no model of that name ships with fastnst ({hint}"
        f"shipped: {shipped}; fastnst-models lists them)"
    )
