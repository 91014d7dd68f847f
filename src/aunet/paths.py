"""Where the project's data lives: the data directory setting (``AUNET_DATA_DIR``), and the cache
(``AUNET_CACHE_DIR``).

Real corpora and benchmark files are read from the data directory and never committed. The Makefile points it at
``../shared/data`` when that folder exists.
"""

from __future__ import annotations

import os
from pathlib import Path

from aunet.errors import UserError

DATA_DIR_ENV = "AUNET_DATA_DIR"
CACHE_DIR_ENV = "AUNET_CACHE_DIR"


def data_dir(required: bool = True) -> Path | None:
    """The data directory from ``AUNET_DATA_DIR``; a UserError (or None when not ``required``) if unset or missing."""
    value = os.environ.get(DATA_DIR_ENV)
    if not value:
        if required:
            raise UserError(f"{DATA_DIR_ENV} is not set; point it at a data directory (e.g. ../shared/data)")
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        if required:
            raise UserError(f"{DATA_DIR_ENV}={value} is not a directory; point it at the data directory")
        return None
    return path


def cache_dir() -> Path:
    """Where trained tokenizers and other derived files are cached: ``AUNET_CACHE_DIR``, else ``./cache`` (never
    the read-only data directory). A UserError when it is a file, or lies below one (it could never be created: the
    tokenizer's save failed with a traceback after minutes of training it)."""
    value = os.environ.get(CACHE_DIR_ENV, "cache")
    path = Path(value).expanduser()
    existing = path
    while not existing.exists() and existing != existing.parent and str(existing) not in ("", "."):
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        where = "is a file" if existing == path else f"lies below {existing}, a file"
        raise UserError(f"{CACHE_DIR_ENV}={value}: {where}, not a folder; point it at a folder (created when "
                        "missing)")
    return path
