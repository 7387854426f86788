"""Commands fastnst prints for the user to run next, written so that they run as printed.

A bare ``fastnst-stylize`` or ``python scripts/...`` works only with the right environment
active and from the right folder; these name the interpreter and the files by absolute path,
so a copy and paste works from wherever the user is.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _quote(parts: list[str | Path]) -> str:
    return " ".join(shlex.quote(str(p)) for p in parts)


def console(script: str, module: str, *args: str | Path) -> str:
    """``script ARGS`` through this environment's own copy of the console script, or
    ``python -m module ARGS`` with this interpreter where there is none."""
    installed = Path(sys.executable).parent / script
    if installed.is_file():
        return _quote([installed, *args])
    return _quote([sys.executable, "-m", module, *args])


def script(name: str, *args: str | Path) -> str:
    """``python scripts/<name> ARGS`` with this interpreter and the script's full path."""
    return _quote([sys.executable, REPO / "scripts" / name, *args])


def stylize(*args: str | Path) -> str:
    return console("fastnst-stylize", "fastnst.stylize", *args)


def tensorboard(logdir: str | Path) -> str:
    return console("tensorboard", "tensorboard.main", "--logdir", logdir)
