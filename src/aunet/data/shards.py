"""The packed format: a corpus's training split as one token stream in shard files, read by window index.

A pack is a folder::

    meta.json            what the stream is (format, identity, counts, dtypes, shard sizes); written last
    tokens-00000.bin     the stream's unit ids, ``[BOS] + units + [EOS]`` per document, in the narrowest unsigned
    tokens-00001.bin     integer type that holds the vocabulary (uint16 for bytes with BOS/EOS, for 1024 BPE tokens)
    levels-00000.bin     AU-Net only: each unit's level (uint8), computed over its whole document
    ...

Shards are plain little-endian arrays, memory-mapped for reading, so a window costs two small copies and nothing is
decoded: window ``k`` of a sequence length ``S`` is units ``[k*S, k*S + S + 1)`` of the stream (consecutive windows
overlap by one unit, so every unit but the first is a target exactly once per epoch), wherever the shard edges fall.
"""

from __future__ import annotations

import json
import os
from bisect import bisect_right
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aunet.errors import StateError

FORMAT = "aunet-pack-v1"
META = "meta.json"
SHARD_UNITS = 1 << 28  # units per shard file: 512 MB of uint16, small enough to copy or stage one at a time


def token_dtype(vocab_size: int) -> np.dtype:
    """The narrowest unsigned integer type that holds ids ``0 .. vocab_size - 1``."""
    return np.dtype(np.min_scalar_type(max(0, vocab_size - 1)))


def shard_name(kind: str, index: int) -> str:
    return f"{kind}-{index:05d}.bin"


@dataclass
class PackMeta:
    """What ``meta.json`` holds. ``shards`` lists the units in each shard file (tokens and levels alike)."""

    key: str
    identity: dict[str, Any]
    token_dtype: str
    has_levels: bool
    n_units: int = 0
    n_documents: int = 0
    text_bytes: int = 0
    shards: list[int] = field(default_factory=list)
    seconds: float = 0.0
    processes: int = 1
    format: str = FORMAT


class ShardWriter:
    """Appends encoded documents to the shard files of a folder (the pack under construction)."""

    def __init__(self, folder: Path, dtype: np.dtype, has_levels: bool, shard_units: int = SHARD_UNITS) -> None:
        self.folder, self.dtype, self.has_levels, self.shard_units = Path(folder), np.dtype(dtype), has_levels, \
            shard_units
        self.shards: list[int] = []
        self._files: dict[str, Any] = {}

    def _open(self) -> None:
        self.close_files()
        index = len(self.shards)
        self.shards.append(0)
        kinds = ("tokens", "levels") if self.has_levels else ("tokens",)
        self._files = {kind: open(self.folder / shard_name(kind, index), "wb") for kind in kinds}

    def append(self, tokens: np.ndarray, levels: np.ndarray | None) -> None:
        """Write ``tokens`` ``[n]`` (and ``levels`` ``[n]``), splitting across shard files where one fills up."""
        if tokens.size and int(tokens.max()) > np.iinfo(self.dtype).max:
            raise ValueError(f"unit id {int(tokens.max())} does not fit {self.dtype}")
        start = 0
        while start < len(tokens):
            if not self.shards or self.shards[-1] >= self.shard_units:
                self._open()
            take = min(len(tokens) - start, self.shard_units - self.shards[-1])
            self._files["tokens"].write(tokens[start : start + take].astype(self.dtype).tobytes())
            if self.has_levels:
                assert levels is not None
                self._files["levels"].write(levels[start : start + take].astype(np.uint8).tobytes())
            self.shards[-1] += take
            start += take

    def close_files(self) -> None:
        for handle in self._files.values():
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
        self._files = {}


class Pack:
    """A finished pack, read by unit range or by window. Shards are memory-mapped on first read in each process
    (a DataLoader worker maps its own), so a Pack pickles as its folder and metadata only."""

    def __init__(self, folder: Path, meta: PackMeta) -> None:
        self.folder, self.meta = Path(folder), meta
        self.starts = np.concatenate([[0], np.cumsum(meta.shards)]).astype(np.int64).tolist()
        self._maps: list[tuple[np.ndarray, np.ndarray | None]] | None = None

    @classmethod
    def open(cls, folder: Path) -> "Pack":
        """Open the pack at ``folder``, checking its format and that every shard file has the size ``meta.json``
        records (a truncated copy is refused, naming the file, instead of being read as a shorter stream)."""
        folder = Path(folder)
        fix = f"delete {folder} and pack again (aunet data pack)"
        try:
            raw = json.loads((folder / META).read_text())
            meta = PackMeta(**raw)
        except (OSError, ValueError, TypeError) as exc:
            raise StateError(f"{folder / META}: unreadable pack metadata ({exc}); {fix}") from None
        if meta.format != FORMAT:
            raise StateError(f"{folder}: pack format {meta.format!r}, this aunet reads {FORMAT!r}; {fix}")
        width = np.dtype(meta.token_dtype).itemsize
        for i, units in enumerate(meta.shards):
            kinds = (("tokens", width), ("levels", 1)) if meta.has_levels else (("tokens", width),)
            for kind, size in kinds:
                path = folder / shard_name(kind, i)
                have = path.stat().st_size if path.is_file() else -1
                if have != units * size:
                    raise StateError(f"{path}: {have} bytes, the pack records {units * size}; {fix}")
        return cls(folder, meta)

    def __getstate__(self) -> dict[str, Any]:
        return {"folder": self.folder, "meta": self.meta, "starts": self.starts, "_maps": None}

    def _shards(self) -> list[tuple[np.ndarray, np.ndarray | None]]:
        if self._maps is None:
            dtype = np.dtype(self.meta.token_dtype)
            self._maps = []
            for i, units in enumerate(self.meta.shards):
                tokens = np.memmap(self.folder / shard_name("tokens", i), dtype=dtype, mode="r", shape=(units,))
                levels = (np.memmap(self.folder / shard_name("levels", i), dtype=np.uint8, mode="r", shape=(units,))
                          if self.meta.has_levels else None)
                self._maps.append((tokens, levels))
        return self._maps

    @property
    def n_units(self) -> int:
        return self.meta.n_units

    def n_windows(self, seq_len: int) -> int:
        """Windows of ``seq_len + 1`` units with stride ``seq_len`` in the stream (the partial last one dropped)."""
        return max(0, (self.meta.n_units - 1) // seq_len)

    def read(self, start: int, length: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Units ``[start, start + length)`` as int64 ``[length]`` (and their levels, uint8 ``[length]``)."""
        tokens = np.empty(length, dtype=np.int64)
        levels = np.empty(length, dtype=np.uint8) if self.meta.has_levels else None
        shards, done = self._shards(), 0
        shard = bisect_right(self.starts, start) - 1
        while done < length:
            offset = start + done - self.starts[shard]
            take = min(length - done, self.meta.shards[shard] - offset)
            tok_map, lv_map = shards[shard]
            tokens[done : done + take] = tok_map[offset : offset + take]
            if levels is not None:
                levels[done : done + take] = lv_map[offset : offset + take]
            done += take
            shard += 1
        return tokens, levels

    def windows(self, indices: np.ndarray, seq_len: int, top_level: int | None
                ) -> tuple[np.ndarray, np.ndarray | None]:
        """Windows ``indices`` as ``tokens`` int32 ``[B, S+1]`` and ``levels`` uint8 ``[B, S+1]`` (or None), with
        position 0 of every window at the top level: a window starts pooled at every stage (P3). int32, not int64:
        half the bytes through the DataLoader's shared memory and the host-to-device copy; the loss widens them."""
        tokens = np.empty((len(indices), seq_len + 1), dtype=np.int32)
        levels = np.empty((len(indices), seq_len + 1), dtype=np.uint8) if self.meta.has_levels else None
        for row, k in enumerate(indices):
            tok, lv = self.read(int(k) * seq_len, seq_len + 1)
            tokens[row] = tok
            if levels is not None:
                levels[row] = lv
        if levels is not None:
            levels[:, 0] = top_level
        return tokens, levels


def write_meta(folder: Path, meta: PackMeta) -> None:
    """Write ``meta.json`` (the last file of a pack: a folder without it is not a pack)."""
    path = Path(folder) / META
    with open(path, "w") as handle:
        json.dump(asdict(meta), handle, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
