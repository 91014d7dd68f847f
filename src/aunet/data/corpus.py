"""Corpora as streams of documents: ``.txt``, ``.jsonl``, ``.jsonl.gz`` and ``.parquet`` files.

A :class:`CorpusSource` names files (a directory, a glob, single files, or a list of these) and streams their
documents one at a time, so memory does not grow with the corpus. Each :class:`Document` carries a stable key (its
path relative to the corpus root, plus ``:ROW`` for row-based files) that the train/validation split hashes.
Every problem a user can fix (missing path, bad row, corrupt file) raises :class:`~aunet.errors.DataError` naming
the file and, for rows, the line.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import json
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from aunet.errors import DataError, UserError
from aunet.io import atomic_write_text
from aunet.paths import cache_dir

SUFFIXES = (".txt", ".jsonl", ".jsonl.gz", ".parquet")
_GLOB_CHARS = frozenset("*?[")
_PARQUET_BATCH_ROWS = 1024  # rows per record batch: bounds memory for files of long documents
# Memory that training takes per byte of one document: a document is encoded whole (so that its pooling levels are
# those generation computes on its prefixes). The 50 MB single-line corpus of docs/reliability.md brings the
# training process to about 2.4 GB, 48 bytes per byte.
ENCODE_BYTES_PER_BYTE = 48
_HASH_CHUNK = 1 << 20
_REMEMBER_BYTES = 1 << 24  # files from 16 MB up have their hash remembered on disk (smaller ones hash in ms)

# sha256 of file contents, keyed by (absolute path, size, mtime_ns): re-hashing a 25 MB corpus on every
# fingerprint() call would dominate start-up, and a changed file changes its size or mtime.
_FILE_HASHES: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True)
class Document:
    """One document: ``key`` is its stable identity, ``data`` its raw bytes."""

    key: str
    data: bytes


def suffix_of(path: Path) -> str | None:
    """The supported suffix of ``path`` (``.jsonl.gz`` counts as one), or None."""
    name = path.name.lower()
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return None


def is_glob(text: str) -> bool:
    return any(c in _GLOB_CHARS for c in text)


# Paths a glob may match before the pattern is refused: a pattern over a whole disk is a mistake, and listing it
# would take as long as the walk (the largest corpus of the suite has a few thousand files).
MAX_GLOB_MATCHES = 1_000_000


def _glob(pattern: str) -> list[str]:
    """The paths matching ``pattern`` (``*``, ``?``, ``[...]`` within one name, ``**`` for any depth), sorted.

    ``glob.glob(recursive=True)`` follows links to folders without remembering where it has been: a link to a
    parent folder made it walk the same folders again and again, for ever, without a word. Here each real folder
    (device and inode) is entered once per ``**``, so a link loop is walked once and the listing ends. As in
    ``glob``, names starting with a dot match only a pattern part that starts with one."""
    parts = pattern.split(os.sep)
    root = os.sep if pattern.startswith(os.sep) else ""
    found: list[str] = []
    paths = [root]
    for i, part in enumerate(p for p in (parts[1:] if root else parts)):
        last = i == len(parts) - (2 if root else 1)
        if part == "**":
            paths = [d for base in paths for d in _folders_below(base)]
            if last:  # a trailing ** matches every folder and file below (not the current folder itself)
                found = [d for d in paths if d] + [f for d in paths for f in _matches(d, "*", want_dirs=False)
                                                   if not os.path.isdir(f)]
                break
            continue
        step: list[str] = []
        for base in paths:
            step.extend(_matches(base, part, want_dirs=not last))
            if len(step) > MAX_GLOB_MATCHES:
                raise DataError(f"{pattern}: matches more than {MAX_GLOB_MATCHES} paths; name the corpus's own folder "
                                "or files")
        paths = step
        if last:
            found = paths
    return sorted(set(found))


def _matches(base: str, part: str, want_dirs: bool) -> list[str]:
    """Names in folder ``base`` ("" for the current folder) matching the pattern ``part`` (one path component)."""
    if not any(c in _GLOB_CHARS for c in part):
        path = os.path.join(base, part) if base else part
        exists = os.path.isdir(path) if want_dirs else os.path.lexists(path)
        return [path] if exists else []
    try:
        entries = list(os.scandir(base or "."))
    except OSError:  # not a folder, or unreadable: nothing matches there (as glob)
        return []
    regex = re.compile(fnmatch.translate(part))
    out = []
    for entry in entries:
        if entry.name.startswith(".") and not part.startswith("."):
            continue
        if regex.match(entry.name) and (not want_dirs or entry.is_dir()):
            out.append(os.path.join(base, entry.name) if base else entry.name)
    return out


def _folders_below(base: str) -> list[str]:
    """``base`` and every folder below it, links to folders followed, each real folder listed once (a link loop
    ends), hidden folders skipped (as ``**`` in ``glob``)."""
    out: list[str] = []
    seen: set[tuple[int, int]] = set()
    stack = [base]
    while stack:
        folder = stack.pop()
        try:
            info = os.stat(folder or ".")
        except OSError:
            continue
        if (info.st_dev, info.st_ino) in seen:
            continue
        seen.add((info.st_dev, info.st_ino))
        out.append(folder)
        if len(out) > MAX_GLOB_MATCHES:
            raise DataError(f"{base or '.'}: more than {MAX_GLOB_MATCHES} folders below it; name the corpus's own "
                            "folder or files")
        try:
            entries = sorted(os.scandir(folder or "."), key=lambda e: e.name)
        except OSError:
            continue
        for entry in reversed(entries):
            if not entry.name.startswith(".") and entry.is_dir():
                stack.append(os.path.join(folder, entry.name) if folder else entry.name)
    return out


def _walk(directory: Path) -> Iterator[Path]:
    """Supported files below ``directory``; hidden files and folders (``.cache``, temp files) are skipped."""
    for root, dirs, names in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            path = Path(root) / name
            if not name.startswith(".") and suffix_of(path) is not None:
                yield _regular(path)


def _machine_memory() -> int | None:
    """Bytes of physical memory of this machine, or None when the system does not say (as ``aunet.memory``, which
    this layer does not import: it loads torch)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def max_document_bytes() -> int | None:
    """The largest document this machine can encode (:data:`ENCODE_BYTES_PER_BYTE` per byte), or None if unknown."""
    memory = _machine_memory()
    return None if memory is None else memory // ENCODE_BYTES_PER_BYTE


def _too_large(where: str, size: int, limit: int) -> DataError:
    return DataError(f"{where}: a document of {size / 2**20:.3g} MiB or more; encoding it whole takes about "
                     f"{ENCODE_BYTES_PER_BYTE} bytes of memory per byte, more than this machine's "
                     f"{limit * ENCODE_BYTES_PER_BYTE / 2**30:.3g} GiB: split it into documents of at most "
                     f"{limit / 2**20:.3g} MiB (e.g. one per line of a .jsonl file)")


def _regular(path: Path) -> Path:
    """``path`` if it is a regular file (or a link to one). A pipe, device or socket named as a corpus file would
    block the run, or stream forever, without a word: refused before anything reads it."""
    if not path.is_file():
        raise DataError(f"{path}: not a regular file (a pipe, device or socket); corpus files must be regular "
                        "files: save the text to a file first")
    return path


def _unsupported(path: Path) -> DataError:
    return DataError(f"{path}: unsupported file type; corpus files must end in {', '.join(SUFFIXES)} (convert it or "
                     "leave it out)")


class CorpusSource:
    """Files of text named by directories, globs and paths, read as a stream of :class:`Document`.

    ``text_field`` is the JSON key or parquet column holding the text (``.txt`` files are one document each).
    """

    def __init__(self, paths: str | Path | Sequence[str | Path], text_field: str = "text") -> None:
        if isinstance(paths, (str, Path)):
            paths = [paths]
        self.paths: list[str | Path] = list(paths)
        if not self.paths:
            raise DataError("corpus: no path given; name a directory, a glob or files of text")
        self.text_field = text_field

    def __repr__(self) -> str:
        return f"CorpusSource({[str(p) for p in self.paths]!r}, text_field={self.text_field!r})"

    # -- listing -------------------------------------------------------------------------------------------------

    def _expand(self, spec: str | Path) -> list[Path]:
        text = str(spec)
        # A Path object is always literal; a string with *, ? or [ that names no existing file is a pattern.
        if isinstance(spec, str) and is_glob(text) and not os.path.exists(text):
            matches = _glob(os.path.expanduser(text))
            if not matches:
                raise DataError(f"{text}: no file matches this pattern; check the path and the data directory")
            out: list[Path] = []
            for match in matches:
                path = Path(match)
                if path.is_dir():
                    out.extend(_walk(path))
                elif suffix_of(path) is None:
                    raise _unsupported(path)
                else:
                    out.append(_regular(path))
            return out
        path = Path(text).expanduser()
        if path.is_dir():
            found = list(_walk(path))
            if not found:
                raise DataError(f"{path}: no {', '.join(SUFFIXES)} file below this directory; add text files")
            return found
        if not path.exists():
            raise DataError(f"{path}: no such file or directory; check the path (or AUNET_DATA_DIR for named corpora)")
        if suffix_of(path) is None:
            raise _unsupported(path)
        return [_regular(path)]

    def files(self) -> list[Path]:
        """Every file of the corpus: absolute, de-duplicated, sorted by path (deterministic across machines)."""
        unique = {Path(os.path.abspath(p)) for spec in self.paths for p in self._expand(spec)}
        files = sorted(unique, key=lambda p: p.as_posix())
        if not files:  # pragma: no cover - _expand raises first; kept as the documented guarantee
            raise DataError(f"{self.paths[0]}: no corpus file found; name a directory, a glob or files of text")
        return files

    def root(self, files: Sequence[Path] | None = None) -> Path:
        """The common parent directory of all files; document keys are relative to it."""
        files = self.files() if files is None else files
        return Path(os.path.commonpath([str(p.parent) for p in files]))

    def total_bytes(self) -> int:
        """Sum of file sizes (compressed size for ``.jsonl.gz`` and ``.parquet``)."""
        return sum(p.stat().st_size for p in self.files())

    # -- reading -------------------------------------------------------------------------------------------------

    def documents(self, files: Sequence[Path] | None = None) -> Iterator[Document]:
        """Stream documents in ``files()`` order (or of the given subset, keyed against the full corpus's root).

        Reading the whole corpus raises ``<root>: corpus is empty`` at the end when no document had any byte.
        """
        all_files = self.files()
        root = self.root(all_files)
        chosen = all_files if files is None else [Path(os.path.abspath(p)) for p in files]
        any_bytes = False
        for path in chosen:
            rel = path.relative_to(root).as_posix()
            for doc in self._read(path, rel):
                any_bytes = any_bytes or bool(doc.data)
                yield doc
        if files is None and not any_bytes:
            where = all_files[0] if len(all_files) == 1 else root  # name the file of a one-file corpus
            raise DataError(f"{where}: corpus is empty (no document has any text); add text or fix the path")

    def _read(self, path: Path, rel: str) -> Iterator[Document]:
        suffix = suffix_of(path)
        if suffix == ".txt":
            limit = max_document_bytes()
            try:
                size = path.stat().st_size
                if limit is not None and size > limit:  # checked before reading: the read alone could exhaust memory
                    raise _too_large(str(path), size, limit)
                yield Document(rel, path.read_bytes())  # bytes unchanged: invalid UTF-8 is the model's problem
            except OSError as exc:
                raise DataError(f"{path}: cannot read ({exc.strerror or exc}); check permissions") from None
        elif suffix in (".jsonl", ".jsonl.gz"):
            yield from self._read_jsonl(path, rel, gz=suffix == ".jsonl.gz")
        elif suffix == ".parquet":
            yield from self._read_parquet(path, rel)
        else:
            raise _unsupported(path)

    def _text_of(self, row: object, where: str) -> bytes:
        value = row.get(self.text_field) if isinstance(row, dict) else None
        if not isinstance(value, str):
            raise DataError(f"{where}: no string field {self.text_field!r}; set data.text_field to the field holding "
                            "the text")
        # Lone surrogates (from "\ud800" escapes) cannot be UTF-8: replace them rather than fail a large corpus.
        return value.encode("utf-8", errors="replace")

    def _read_jsonl(self, path: Path, rel: str, gz: bool) -> Iterator[Document]:
        row = 0
        lineno = 0
        limit = max_document_bytes()
        try:
            with (gzip.open(path, "rb") if gz else open(path, "rb")) as fh:
                # Lines are read up to the limit: a line beyond it is refused before it is read whole.
                for lineno, line in enumerate(iter(lambda: fh.readline(-1 if limit is None else limit + 1), b""),
                                              start=1):
                    where = f"{path}:{lineno}"
                    if limit is not None and len(line) > limit:
                        raise _too_large(where, len(line), limit)
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
                        detail = str(exc).splitlines()[0]
                        raise DataError(f"{where}: not valid JSON ({detail}); fix or remove the line") from None
                    yield Document(f"{rel}:{row}", self._text_of(obj, where))
                    row += 1
        except (OSError, EOFError, zlib.error) as exc:
            what = "corrupt or truncated gzip" if gz else "cannot read"
            raise DataError(f"{path}: {what} after line {lineno} ({exc}); re-create the file") from None

    def _read_parquet(self, path: Path, rel: str) -> Iterator[Document]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        field = self.text_field
        try:
            pf = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{path}: not a readable parquet file ({exc}); re-create or remove it") from None
        names = pf.schema_arrow.names
        if field not in names:
            raise DataError(f"{path}: no column {field!r} (columns: {', '.join(names)}); set data.text_field to the "
                            "text column")
        kind = pf.schema_arrow.field(field).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)
                or pa.types.is_binary(kind) or pa.types.is_large_binary(kind)):
            raise DataError(f"{path}: column {field!r} is {kind}, not text; set data.text_field to the text column")
        row = 0
        limit = max_document_bytes()
        try:
            for batch in pf.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=[field]):
                for value in batch.column(0).to_pylist():
                    if value is None:
                        raise DataError(f"{path}: row {row}: {field!r} is null; drop or fill empty rows")
                    data = value if isinstance(value, bytes) else value.encode("utf-8", errors="replace")
                    if limit is not None and len(data) > limit:
                        raise _too_large(f"{path}: row {row}", len(data), limit)
                    yield Document(f"{rel}:{row}", data)
                    row += 1
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{path}: corrupt parquet data at row {row} ({exc}); re-create the file") from None

    # -- identity ------------------------------------------------------------------------------------------------

    def fingerprint(self) -> str:
        """sha256 hex of the corpus: sorted (relative path, size, content sha256) of every file, and the text field.

        Used to key caches (tokenized shards, trained tokenizers) so they are rebuilt when any byte changes.
        """
        files = self.files()
        root = self.root(files)
        entries = []
        for path in files:
            st = path.stat()
            entries.append([path.relative_to(root).as_posix(), st.st_size, _file_sha256(path, st)])
        payload = json.dumps({"v": 1, "text_field": self.text_field, "files": entries}, separators=(",", ":"))
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _file_sha256(path: Path, st: os.stat_result) -> str:
    """sha256 of a file's content, remembered by (path, size, mtime) in this process and in the cache folder
    (``AUNET_CACHE_DIR/file-hashes``): a corpus of hundreds of GB is read once to fingerprint it, not by every run
    and every plan."""
    cache_key = (str(path), st.st_size, st.st_mtime_ns)
    cached = _FILE_HASHES.get(cache_key)
    if cached is None:
        record = cache_dir() / "file-hashes" / hashlib.sha256(repr(cache_key).encode()).hexdigest()
        try:
            cached = record.read_text().strip()
        except OSError:
            cached = ""
        if len(cached) != 64:  # missing, or half-written by a process that died: hash again
            digest = hashlib.sha256()
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(_HASH_CHUNK), b""):
                    digest.update(chunk)
            cached = digest.hexdigest()
            if st.st_size >= _REMEMBER_BYTES:
                try:
                    atomic_write_text(record, cached)
                except UserError:  # a read-only or full cache: the hash is still right, only not remembered
                    pass
        _FILE_HASHES[cache_key] = cached
    return cached
