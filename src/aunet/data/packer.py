"""Packing a training split once: documents encoded by every core into the shards of :mod:`aunet.data.shards`.

A pack is named by the sha256 of its identity (format, corpus content, split, and the encoder: the BPE tokenizer's
fingerprint or the AU-Net split rules), so every run of a sweep that shares a corpus, a split and a tokenizer reads
the same pack, and a changed byte anywhere makes a new one. Building it:

- **every core**: documents go in chunks of about a few MB to worker processes (processes, not threads: computing
  levels is Python under the GIL), which return each chunk's stream; the parent writes them in document order.
- **bounded memory**: at most two chunks per process are in flight, whatever the corpus's size.
- **atomic**: shards are written into a hidden temporary folder, ``meta.json`` last, and the folder is renamed into
  place; a killed pack leaves only that temporary folder, which the next pack of the same key removes (it holds a
  lock, so no one else is writing it).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from aunet.data.config import MAX_PACK_PROCESSES
from aunet.data.shards import FORMAT, SHARD_UNITS, Pack, PackMeta, ShardWriter, token_dtype, write_meta
from aunet.errors import DataError, write_error
from aunet.tokenizers.encoders import DocumentEncoder

CHUNK_BYTES = 4 << 20  # text per task: large enough to amortise the hand-over, small enough to balance processes


def pack_key(identity: dict[str, Any]) -> str:
    """The folder name of the pack with this identity (the first 32 hex digits of its sha256)."""
    blob = json.dumps({**identity, "format": FORMAT}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def packs_root(cache: Path) -> Path:
    return Path(cache) / "packs"


def find_pack(cache: Path, identity: dict[str, Any]) -> Pack | None:
    """The finished pack of ``identity`` under ``cache``, or None."""
    folder = packs_root(cache) / pack_key(identity)
    return Pack.open(folder) if (folder / "meta.json").is_file() else None


# --- worker processes ------------------------------------------------------------------------------------------------

_ENCODER: DocumentEncoder | None = None


def _init_worker(encoder: DocumentEncoder) -> None:
    global _ENCODER
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one process per core already: no Rust threads on top
    _ENCODER = encoder


def encode_chunk(encoder: DocumentEncoder, documents: list[bytes]) -> tuple[np.ndarray, np.ndarray | None, int]:
    """The stream of ``documents`` (each ``[BOS] + units + [EOS]``, levels over the whole document) as one array
    ``[n]`` (and levels ``[n]``), with the chunk's text bytes."""
    encoded = [encoder.encode(data) for data in documents]
    tokens = np.concatenate([t for t, _ in encoded]) if encoded else np.zeros(0, np.int64)
    levels = np.concatenate([lv for _, lv in encoded]) if encoded and encoded[0][1] is not None else None
    return tokens, levels, sum(len(d) for d in documents)


def _encode_in_worker(documents: list[bytes]) -> tuple[np.ndarray, np.ndarray | None, int]:
    assert _ENCODER is not None
    return encode_chunk(_ENCODER, documents)


def _chunks(documents: Iterable[bytes], chunk_bytes: int) -> Iterator[list[bytes]]:
    chunk: list[bytes] = []
    size = 0
    for data in documents:
        chunk.append(data)
        size += len(data)
        if size >= chunk_bytes:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _encoded_chunks(documents: Iterable[bytes], encoder: DocumentEncoder, processes: int, chunk_bytes: int
                    ) -> Iterator[tuple[np.ndarray, np.ndarray | None, int, int]]:
    """``(tokens, levels, text bytes, documents)`` per chunk, in document order; at most ``2 * processes`` chunks
    in flight. One process encodes in this one (no start-up cost for small corpora and tests)."""
    if processes <= 1:
        for chunk in _chunks(documents, chunk_bytes):
            yield (*encode_chunk(encoder, chunk), len(chunk))
        return
    # spawn: a clean interpreter per worker (forking a process that holds torch's or the tokenizer's threads can
    # deadlock); workers import only numpy, regex and tokenizers.
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes, initializer=_init_worker, initargs=(encoder,)) as pool:
        pending: deque = deque()
        for chunk in _chunks(documents, chunk_bytes):
            pending.append((pool.apply_async(_encode_in_worker, (chunk,)), len(chunk)))
            while len(pending) >= 2 * processes:
                result, n = pending.popleft()
                yield (*result.get(), n)
        while pending:
            result, n = pending.popleft()
            yield (*result.get(), n)


def default_processes() -> int:
    """Every core this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        return os.cpu_count() or 1


def build_pack(cache: Path, identity: dict[str, Any], documents: Callable[[], Iterable[bytes]],
               encoder: DocumentEncoder, processes: int | None = None, total_bytes: int | None = None,
               label: str = "pack", progress: bool = True, chunk_bytes: int = CHUNK_BYTES,
               shard_units: int = SHARD_UNITS) -> tuple[Pack, bool]:
    """The pack of ``identity``: found, or built from ``documents()`` with ``encoder`` on ``processes`` processes.

    Returns ``(pack, built)``. Concurrent callers (sweep workers, DDP ranks) take a lock per pack: one builds, the
    others wait and open its result. ``total_bytes`` (the text to expect, if known) sizes the progress bar.
    """
    processes = processes or default_processes()
    if not 1 <= processes <= MAX_PACK_PROCESSES:
        raise DataError(f"pack processes: {processes} is outside 1..{MAX_PACK_PROCESSES}; set data.pack_processes (or "
                        "--processes) to the cores to use")
    if total_bytes is not None:  # no more processes than chunks: a small corpus is not worth starting a pool for
        processes = min(processes, max(1, -(-total_bytes // chunk_bytes)))
    root = packs_root(cache)
    key = pack_key(identity)
    final = root / key
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(root, exc) from None
    found = find_pack(cache, identity)
    if found is not None:
        return found, False
    with FileLock(str(root / f".{key}.lock")):
        found = find_pack(cache, identity)  # another process may have finished it while we waited
        if found is not None:
            return found, False
        for stale in root.glob(f".{key}.*.tmp"):  # left by a killed pack: no one else holds the lock
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{key}.", suffix=".tmp"))
        try:
            _write(tmp, key, identity, documents, encoder, processes, total_bytes, label, progress, chunk_bytes,
                   shard_units)
            os.replace(tmp, final)
        except OSError as exc:
            raise write_error(final, exc) from None
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return Pack.open(final), True


def _write(folder: Path, key: str, identity: dict[str, Any], documents: Callable[[], Iterable[bytes]],
           encoder: DocumentEncoder, processes: int, total_bytes: int | None, label: str, progress: bool,
           chunk_bytes: int, shard_units: int) -> PackMeta:
    from tqdm import tqdm

    started = time.perf_counter()
    meta = PackMeta(key=key, identity=identity, token_dtype=token_dtype(encoder.vocab_size).name,
                    has_levels=encoder.encode(b"")[1] is not None, processes=processes)  # a 1-stage AU-Net has none
    writer = ShardWriter(folder, np.dtype(meta.token_dtype), meta.has_levels, shard_units)
    # disable=None: a bar on a terminal, nothing in a log file
    bar = tqdm(total=total_bytes, unit="B", unit_scale=True, desc=label, disable=None if progress else True,
               file=sys.stderr, mininterval=1.0, leave=False)
    try:
        for tokens, levels, n_bytes, n_docs in _encoded_chunks(documents(), encoder, processes, chunk_bytes):
            writer.append(tokens, levels)
            meta.n_units += len(tokens)
            meta.text_bytes += n_bytes
            meta.n_documents += n_docs
            bar.update(n_bytes)
    finally:
        bar.close()
        writer.close_files()
    meta.shards = writer.shards
    meta.seconds = time.perf_counter() - started
    write_meta(folder, meta)
    return meta
