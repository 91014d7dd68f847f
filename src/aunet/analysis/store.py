"""``fits.json``: the fitted parameters of a sweep, one key per notebook, merged atomically.

Each notebook owns one top-level key (``scaling``, ``hyperparameters``) and replaces only that key: read the
file, set the key, write it back atomically, so notebooks can run in any order and a reader never sees half a file.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from aunet.analysis.tables import ResultsError
from aunet.io import atomic_write_json

FITS_FILE = "fits.json"


def read_fits(output_dir: str | Path) -> dict[str, Any]:
    """The contents of ``output_dir/fits.json``; empty when absent. A corrupt file raises :class:`ResultsError`."""
    path = Path(output_dir) / FITS_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path}: not valid JSON ({exc.msg}); delete it and rerun the notebooks") from None
    if not isinstance(data, dict):
        raise ResultsError(f"{path}: expected a JSON object; delete it and rerun the notebooks")
    return data


def to_jsonable(obj: Any) -> Any:
    """Nested dicts/lists/arrays of numbers as plain JSON values; NaN and infinities become null (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (np.generic,)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def update_fits(output_dir: str | Path, key: str, value: Any) -> Path:
    """Set ``fits.json[key] = value`` in ``output_dir`` (read-modify-write, written atomically); returns the path."""
    data = read_fits(output_dir)
    data[key] = to_jsonable(value)
    return atomic_write_json(Path(output_dir) / FITS_FILE, data)


def drop_fits_key(output_dir: str | Path, key: str) -> bool:
    """Remove ``fits.json[key]`` from ``output_dir`` (written atomically); returns whether it was there."""
    data = read_fits(output_dir)
    if key not in data:
        return False
    del data[key]
    atomic_write_json(Path(output_dir) / FITS_FILE, data)
    return True
