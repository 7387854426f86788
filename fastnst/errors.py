"""The problems a user can fix, as exception types, and how an entry point reports them.

Every error here derives from :class:`FastnstError`. The entry points (``fastnst.train``,
``fastnst.optimize``, ``fastnst-stylize``, ``fastnst-export``) print such an error as one
line and exit; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class FastnstError(Exception):
    """A problem the user can fix; the message says what to do, in one line."""


class ConfigError(FastnstError, ValueError):
    """A setting that cannot work. ``key`` is its name: a constructor argument, which is also
    its config key; :func:`fastnst.checks.settings_of` prefixes the config group. Exit status 2."""

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


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type's name if it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
