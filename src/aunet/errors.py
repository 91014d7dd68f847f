"""Errors that the command line reports as one line and exit code 2 (no traceback).

Anything the user can fix (a config key, a file path, a split rule name) raises a subclass of :class:`UserError`.
Library code raises these with a message that names the offending key or file and says how to fix it.
"""

from __future__ import annotations

import reprlib
from typing import Any

# A bounded repr: it stops after a few items and levels, so even a value of astronomically many shared parts (a YAML
# alias bomb) is rendered in microseconds.
_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxtuple, _SHORT.maxdict, _SHORT.maxset = 2, 4, 4, 4, 4
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlong = 60, 60, 40


def excerpt(value: Any, limit: int = 80, quote: bool = True) -> str:
    """A short, one-line rendering of a user's value for an error message: its repr (``quote``) or text, cut to
    about ``limit`` characters with ``...``. Errors never print a whole value: it could be megabytes."""
    text = _SHORT.repr(value) if quote else " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class UserError(Exception):
    """A problem with the user's input, reported by the CLI as ``error: <message>`` and exit code 2."""


class ConfigError(UserError, ValueError):
    """A configuration value that cannot work.

    ``key`` is the dotted path of the offending entry (``model.caps[1]``); ``source`` is the file it came from,
    when known. ``str(err)`` renders ``source: key: message``.
    """

    def __init__(self, key: str, message: str, source: str | None = None) -> None:
        self.key = key
        self.message = message
        self.source = source
        super().__init__(self._render())

    def _render(self) -> str:
        where = f"{self.key}: " if self.key else ""
        prefix = f"{self.source}: " if self.source else ""
        return f"{prefix}{where}{self.message}"

    def with_source(self, source: str) -> "ConfigError":
        """The same error, attributed to the file ``source``."""
        return ConfigError(self.key, self.message, source)


class DataError(UserError):
    """A corpus, tokenizer or data file that cannot be used; the message names the file and the fix."""


class RunError(UserError):
    """A training run that cannot start or continue (mismatched checkpoint, finished run, non-finite loss)."""


class DivergedError(RunError):
    """A NaN or infinity in a training loss, a validation metric or the weights at a checkpoint: the run stops there,
    is recorded as diverged (``failure.json``), and no summary is written, so no number of it can pass for a
    result. The message names where the value appeared and the step."""


class StateError(UserError):
    """A file the suite wrote earlier (checkpoint, summary, plan, sweep table, queue) that is truncated or garbled;
    the message names the file and what to delete or rerun. Never repaired silently: a run is never restarted
    behind the user's back."""


class WriteError(UserError):
    """A file that could not be written: a full disk, a quota, a folder without write permission. Raised after the
    temporary file of the write is removed (the previous version of the file, if any, is intact); the message names
    the file and the fix."""


def write_error(path: object, exc: OSError, then: str = "run the command again") -> WriteError:
    """The one-line :class:`WriteError` for ``exc`` raised while writing ``path``."""
    import errno

    reason = exc.strerror or type(exc).__name__
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = f"free disk space, then {then}"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = f"make the folder writable, then {then}"
    else:
        fix = then
    return WriteError(f"{path}: cannot write ({reason}); {fix}")


class RunStopped(Exception):
    """A run stopped on request (SIGTERM, which SLURM sends before pre-empting a job) after saving its checkpoint.

    Not an error: the command exits 0, and the same command with ``--resume`` continues from ``step``.
    """

    def __init__(self, message: str, step: int | None = None) -> None:
        super().__init__(message)
        self.step = step


def save_traceback(exc: BaseException, command: str) -> str:
    """Write the traceback of ``exc`` to a new file in the system's temporary folder and return its path: a crash is
    reported in one line, and the traceback (for a bug report) is kept there rather than flooding the terminal."""
    import os
    import tempfile
    import traceback

    fd, path = tempfile.mkstemp(prefix=f"aunet-{command}-", suffix=".traceback.txt")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    return path
