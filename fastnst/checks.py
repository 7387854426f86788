"""Checks of settings, each raising a :class:`~fastnst.errors.ConfigError` that names the
setting's config key."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from fastnst.errors import ConfigError


@contextmanager
def settings_of(group: str, renamed: Mapping[str, str] | None = None) -> Iterator[None]:
    """Within the block, a :class:`ConfigError` about argument ``key`` becomes one about config
    key ``group.key`` (or ``renamed[key]`` where the argument has another config name)."""
    try:
        yield
    except ConfigError as exc:
        key = (renamed or {}).get(exc.key) or (f"{group}.{exc.key}" if group else exc.key)
        raise ConfigError(key, exc.problem) from None


def require(ok: bool, key: str, problem: str) -> None:
    """Raise ``ConfigError(key, problem)`` unless ``ok``."""
    if not ok:
        raise ConfigError(key, problem)


def check_number(
    value: object, key: str, minimum: float, strict: bool = False, integer: bool = False
) -> None:
    """A setting that must be a number (``integer``: a whole one) >= ``minimum`` (> if
    ``strict``); booleans are not numbers here."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    ok = ok and (value > minimum if strict else value >= minimum)  # type: ignore[operator]
    require(ok, key, f"must be a number {'>' if strict else '>='} {minimum}, got {value!r}")
    require(math.isfinite(value), key, f"must be a finite number, got {value!r}")  # type: ignore[arg-type]
    if integer:
        require(isinstance(value, int), key, f"must be a whole number, got {value!r}")
