"""Model presets shipped with the package, loadable by name (``tiny-aunet2``, ``paper-bpe-1b``, ``ladder/aunet3-1e20``).

Each preset is a YAML file with a ``model:`` section, exactly like a user's config file.
"""

from __future__ import annotations

import difflib
from pathlib import Path

PRESET_DIR = Path(__file__).resolve().parent


def _sort_key(name: str) -> tuple:
    """Folder, then family, then size: ``ladder/bpe-2e19`` before ``ladder/bpe-1e20``."""
    folder, _, stem = name.rpartition("/")
    family, _, size = stem.rpartition("-")
    try:
        return (folder, family, 0, float(size), "")
    except ValueError:
        return (folder, stem, 1, 0.0, stem)


def list_presets() -> list[str]:
    """Names of all presets (files below this package's directory, without ``.yaml``), grouped and by size."""
    return sorted((p.relative_to(PRESET_DIR).with_suffix("").as_posix() for p in PRESET_DIR.rglob("*.yaml")),
                  key=_sort_key)


def preset_path(name: str) -> Path | None:
    """The file of preset ``name``, or None when there is no such preset."""
    path = (PRESET_DIR / f"{name}.yaml").resolve()
    if PRESET_DIR not in path.parents or not path.is_file():
        return None
    return path


def closest_presets(name: str, n: int = 3) -> list[str]:
    return difflib.get_close_matches(name, list_presets(), n=n, cutoff=0.5)


def preset_description(name: str) -> str:
    """The preset's leading comment line (what it is and where its numbers come from)."""
    path = preset_path(name)
    if path is None:
        return ""
    first = path.read_text(encoding="utf-8").splitlines()[0]
    return first.lstrip("# ").strip() if first.startswith("#") else ""
