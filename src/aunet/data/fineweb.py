"""FineWeb-Edu from its published parquet shards in a local folder (no network): checked, and linked into the data
directory as the named corpus ``fineweb_edu``.

The shards (``HuggingFaceFW/fineweb-edu``: ``data/CC-MAIN-*/*.parquet``, ``sample/10BT/*.parquet``, ...) are
hundreds of GB, usually on a shared filesystem already: they are linked, not copied, one symlink per shard under
``<data dir>/corpora/fineweb_edu/`` named after its path in the source folder, next to a ``manifest.jsonl`` (path,
bytes, rows, the source). Each shard is checked from its parquet footer only (readable, a string ``text`` column, the
schema's ``id`` column), so preparing a few hundred shards takes seconds. The folder is built under a temporary name
and renamed when complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from aunet.errors import DataError

CORPUS_DIR = "corpora/fineweb_edu"
REQUIRED = ("text", "id")  # of FineWeb-Edu's columns: text, id, dump, url, file_path, language, ..., score, int_score
MAX_SHARDS = 100_000  # the full dataset has a few thousand; more is a folder named by mistake


def shard_files(source: Path) -> list[Path]:
    """Every ``.parquet`` file below ``source`` (symlinked folders are not followed: no loop can trap the walk),
    sorted by path."""
    if not source.is_dir():
        raise DataError(f"{source}: not a folder; give the folder holding FineWeb-Edu's parquet shards")
    found = []
    for root, dirs, names in os.walk(source):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / n for n in names if n.endswith(".parquet") and not n.startswith(".")]
        if len(found) > MAX_SHARDS:
            raise DataError(f"{source}: more than {MAX_SHARDS:,} parquet files; name the folder of FineWeb-Edu's "
                            "shards")
    if not found:
        raise DataError(f"{source}: no .parquet file below this folder; give the folder of FineWeb-Edu's shards "
                        "(e.g. sample/10BT)")
    return sorted(found, key=lambda p: p.as_posix())


def check_shard(path: Path) -> dict:
    """``{"rows", "bytes", "columns"}`` of one shard, from its footer; a DataError naming the file otherwise."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: not a readable parquet file ({str(exc).splitlines()[0]}); re-download it or remove "
                        "it from the folder") from None
    schema = meta.schema_arrow
    missing = [c for c in REQUIRED if c not in schema.names]
    if missing:
        raise DataError(f"{path}: no column {missing[0]!r} (columns: {', '.join(schema.names)}); this is not a "
                        "FineWeb-Edu shard (expected text, id, dump, url, ...)")
    kind = schema.field("text").type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise DataError(f"{path}: column 'text' is {kind}, not text; this is not a FineWeb-Edu shard")
    return {"rows": meta.metadata.num_rows, "bytes": path.stat().st_size, "columns": schema.names}


def prepare_local(source: Path, dest_root: Path) -> Path:
    """Link the FineWeb-Edu shards below ``source`` into ``dest_root/corpora/fineweb_edu`` (replacing a previous
    preparation); returns that folder."""
    source = Path(source).expanduser().resolve()
    shards = shard_files(source)
    entries = []
    for path in shards:
        rel = path.relative_to(source).as_posix()
        entries.append({"name": rel.replace("/", "__"), "source": str(path), "path": rel, **check_shard(path)})
    target = Path(dest_root) / CORPUS_DIR
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    except OSError as exc:
        raise DataError(f"{target.parent}: cannot write ({exc.strerror or exc}); choose another --dest") from None
    try:
        for entry in entries:
            os.symlink(entry["source"], tmp / entry["name"])
        with open(tmp / "manifest.jsonl", "w") as handle:
            for entry in entries:
                handle.write(json.dumps({k: v for k, v in entry.items() if k != "columns"}) + "\n")
        if target.exists():  # a previous preparation: replaced whole, never merged with this one
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
