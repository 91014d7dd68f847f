"""The evaluation package's user error: a checkpoint, task or data file that cannot be used."""

from __future__ import annotations

from aunet.errors import UserError


class EvalError(UserError):
    """Reported by the CLI as one line, ``error: ...``, with exit code 2; the message names the file and the fix."""
