"""The problems a user can fix, as exception types, and how an entry point reports them.

Every error here derives from :class:`FastnstError`. The entry points (``fastnst.train``,
``fastnst.optimize``, ``fastnst-stylize``, ``fastnst-export``) print such an error as one
line and exit; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager


class FastnstError(Exception):
    """A problem the user can fix; the message says what to do, in one line."""


class ConfigError(FastnstError, ValueError):
    """A setting that cannot work. ``key`` is its name: a constructor argument, which is also
    its config key; :func:`settings_of` prefixes the config group. Exit status 2."""

    def __init__(self, key: str, problem: str) -> None:
        self.key, self.problem = key, problem
        # "data.batch_size must be ..." reads as a sentence; anything else follows a colon.
        sep = " " if problem.startswith(("must ", "has ", "is ")) else ": "
        super().__init__(f"{key}{sep}{problem}")

    def __reduce__(self):  # picklable across DataLoader workers and DDP ranks
        return (type(self), (self.key, self.problem))


class ImageReadError(FastnstError):
    """An image file that cannot be read; the message names the file."""


class DataNotFoundError(FastnstError):
    """The image folder is missing or holds no images; the message says what to do."""


class DownloadError(FastnstError):
    """A download failed or did not match its checksum."""


class VGGWeightsError(FastnstError):
    """VGG weights could not be obtained or do not fit the network; the message says what
    to do."""


class CheckpointError(FastnstError):
    """The file is not a usable fastnst network (or an option cannot be used with it)."""


class InputError(FastnstError):
    """One input of ``fastnst-stylize`` cannot be done; the message names it."""


class Stopped(FastnstError):
    """The user stopped the job (Ctrl-C, SIGTERM): the message says what was kept; the process
    exits with ``exit_code`` (the shell's 128 + signal number: 130, 143)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class NonFiniteLossError(FastnstError):
    """The training loss became NaN or infinite; the message names the step."""


@contextmanager
def settings_of(group: str, renamed: Mapping[str, str] | None = None) -> Iterator[None]:
    """Within the block, a :class:`ConfigError` about argument ``key`` becomes one about config
    key ``group.key`` (or ``renamed[key]`` where the argument has another config name)."""
    try:
        yield
    except ConfigError as exc:
        key = (renamed or {}).get(exc.key) or (f"{group}.{exc.key}" if group else exc.key)
        raise ConfigError(key, exc.problem) from None


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type's name if it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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
    if integer:
        require(isinstance(value, int), key, f"must be a whole number, got {value!r}")
