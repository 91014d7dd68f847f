"""Recording benchmark results: a JSON file under ``benchmarks/`` and a marked section of ``BENCHMARKS.md``.

A section sits between ``<!-- aunet bench: KEY begin -->`` and ``... end -->`` markers and is replaced in place when
the same key is recorded again; a new key goes after the last recorded section, ahead of any prose that follows.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aunet.io import atomic_write_json, atomic_write_text
from aunet.training.records import library_versions

BEGIN, END = "<!-- aunet bench: {} begin -->", "<!-- aunet bench: {} end -->"


def write_section(key: str, payload: dict[str, Any], text: str, command: str, machine: str,
                  root: Path | None = None, versions: dict[str, str] | None = None,
                  measured: datetime | None = None) -> None:
    """Write ``payload`` (plus library versions and ``command``) to ``benchmarks/bench-KEY.json`` and ``text`` as
    section ``KEY`` of ``BENCHMARKS.md`` under ``root`` (default: the working directory), both atomically.

    ``versions`` and ``measured`` default to this process's libraries and now; a result measured on another machine
    (the GPU check) passes its own."""

    root = root or Path.cwd()
    versions = versions or library_versions()
    measured = measured or datetime.now(timezone.utc)
    atomic_write_json(root / "benchmarks" / f"bench-{key}.json", {**payload, "versions": versions,
                                                                   "command": command})
    shown = ", ".join(f"{name} {versions[name]}" for name in ("torch", "numpy", "lightning") if name in versions)
    section = "\n".join([BEGIN.format(key), f"Command: `{command}`  ",
                         f"Date: {measured:%Y-%m-%d %H:%M} UTC  ",
                         f"Machine: {machine}  ", f"Libraries: {shown}", "", text, END.format(key)])
    path = root / "BENCHMARKS.md"
    current = path.read_text() if path.is_file() else "# Benchmarks\n"
    begin, end = BEGIN.format(key), END.format(key)
    if begin in current and end in current:
        head, rest = current.split(begin, 1)
        current = head + section + rest.split(end, 1)[1]
    else:
        new = f"## `aunet bench` ({key})\n\n{section}\n"
        ends = [m.end() for m in re.finditer(r"<!-- aunet bench: \S+ end -->", current)]
        if not ends:
            current = current.rstrip() + "\n\n" + new
        else:
            before, after = current[: ends[-1]], current[ends[-1]:].lstrip("\n")
            current = before + "\n\n" + new + ("\n" + after if after else "")
    atomic_write_text(path, current)
