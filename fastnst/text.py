"""Text from files (a style name in a checkpoint, an upload's name) made safe: for the terminal
and for file names."""

from __future__ import annotations

import re


def printable(text: object, limit: int = 200) -> str:
    """Text from a file, safe for the terminal: control characters replaced, length bounded."""
    clean = "".join(c if c.isprintable() else "?" for c in str(text))
    return clean if len(clean) <= limit else clean[: limit - 3] + "..."


def safe_name(text: object, fallback: str = "styled", limit: int = 64) -> str:
    """Text from a file (a style name in a checkpoint) reduced to a file-name fragment:
    letters, digits, ``.``, ``_`` and ``-`` only, no leading dot, at most ``limit``
    characters. It can never name another folder (``/``, ``..``) or hide a file."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._-")[:limit]
    return name or fallback
