"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Everything the project records (configs, summaries, tables, tokenizers) goes through these helpers: write to a
temporary file in the same directory, flush and fsync, then ``os.replace`` over the target. :func:`read_json` reads
such a file back and turns a truncated or garbled one into a one-line error naming it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from aunet.errors import StateError, write_error

_UMASK = os.umask(0o022)  # read once, at import (os.umask can only be read by setting it)
os.umask(_UMASK)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (parents created). A failed write (a full disk) leaves no temporary
    file and the previous ``path`` intact, and raises a one-line :class:`~aunet.errors.WriteError`."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise write_error(target, exc) from None
    try:
        # mkstemp makes the file private (0600); a record must get the mode any new file gets (shared results).
        os.chmod(tmp, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as exc:  # a full disk, above all: the partial temporary file must not keep it full
        Path(tmp).unlink(missing_ok=True)
        raise write_error(target, exc) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def atomic_write_yaml(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, yaml.safe_dump(obj, sort_keys=False))


def read_json(path: str | Path, fix: str) -> Any:
    """Parse a JSON file the suite wrote; a truncated or garbled one is a :class:`StateError` naming the file and
    ``fix`` (what to delete or rerun), never a JSONDecodeError traceback."""
    p = Path(path)
    try:
        return json.loads(p.read_bytes())
    except (ValueError, OSError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StateError(f"{p}: unreadable ({detail}); {fix}") from None


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
