"""CorpusSource: the four formats, stable keys, streaming, fingerprints, and one-line DataErrors naming the file."""

from __future__ import annotations

import gzip
import hashlib
import inspect
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aunet.data.corpus import CorpusSource, Document
from aunet.errors import DataError


def write_jsonl(path: Path, rows: list, gz: bool = False) -> Path:
    text = "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(path, "wb") as fh:
            fh.write(text.encode("utf-8"))
    else:
        path.write_text(text, encoding="utf-8")
    return path


def write_parquet(path: Path, texts: list, column: str = "text") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({column: texts, "id": list(range(len(texts)))}), path, row_group_size=2)
    return path


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """A corpus folder with every format, a nested folder, and files that a directory scan must ignore."""
    root = tmp_path / "corpus"
    (root / "books").mkdir(parents=True)
    (root / "books" / "b.txt").write_bytes(b"caf\xc3\xa9 \xff\xfe broken")  # invalid UTF-8 kept as is
    (root / "books" / "a.txt").write_bytes(b"first book\n")
    write_jsonl(root / "rows.jsonl", [{"text": "r0"}, {"text": "r1 \u00e9"}, "", {"text": "r2"}])
    write_jsonl(root / "more.jsonl.gz", [{"text": "g0"}, {"text": "g1"}], gz=True)
    write_parquet(root / "table.parquet", ["p0", "p1", "p2"])
    (root / "README.md").write_text("not a corpus file")
    (root / ".hidden.txt").write_text("skipped")
    return root


def test_directory_reads_every_format_in_sorted_order(mixed):
    source = CorpusSource(mixed)
    assert [p.relative_to(mixed).as_posix() for p in source.files()] == [
        "books/a.txt", "books/b.txt", "more.jsonl.gz", "rows.jsonl", "table.parquet"]
    docs = list(source.documents())
    assert [d.key for d in docs] == [
        "books/a.txt", "books/b.txt", "more.jsonl.gz:0", "more.jsonl.gz:1",
        "rows.jsonl:0", "rows.jsonl:1", "rows.jsonl:2", "table.parquet:0", "table.parquet:1", "table.parquet:2"]
    by_key = {d.key: d.data for d in docs}
    assert by_key["books/b.txt"] == b"caf\xc3\xa9 \xff\xfe broken"
    assert by_key["rows.jsonl:1"] == "r1 \u00e9".encode("utf-8") and by_key["table.parquet:2"] == b"p2"
    assert source.total_bytes() == sum(p.stat().st_size for p in source.files())


def test_globs_lists_and_duplicates(mixed):
    source = CorpusSource([str(mixed / "books" / "*.txt"), mixed / "books" / "a.txt", str(mixed / "rows.jsonl")])
    assert [p.name for p in source.files()] == ["a.txt", "b.txt", "rows.jsonl"]
    # The root is the common parent of all files, so keys do not depend on how the files were named.
    assert [d.key for d in source.documents()][:2] == ["books/a.txt", "books/b.txt"]
    single = CorpusSource(mixed / "books" / "b.txt")
    assert [d.key for d in single.documents()] == ["b.txt"]


def test_documents_is_a_stream(mixed):
    source = CorpusSource(mixed)
    stream = source.documents()
    assert inspect.isgenerator(stream)
    assert next(stream) == Document("books/a.txt", b"first book\n")


def test_subset_keeps_corpus_keys_and_text_field_is_configurable(tmp_path):
    write_jsonl(tmp_path / "d" / "x.jsonl", [{"body": "hello"}])
    write_parquet(tmp_path / "d" / "sub" / "y.parquet", ["p"], column="body")
    source = CorpusSource(tmp_path / "d", text_field="body")
    files = source.files()
    assert [d.key for d in source.documents(files[1:])] == ["x.jsonl:0"]
    assert [d.data for d in source.documents()] == [b"p", b"hello"]


def test_fingerprint_tracks_content(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"one")
    (tmp_path / "b.txt").write_bytes(b"two")
    source = CorpusSource(tmp_path)
    first = source.fingerprint()
    assert first == CorpusSource(tmp_path).fingerprint() and len(first) == 64
    (tmp_path / "b.txt").write_bytes(b"three")
    changed = source.fingerprint()
    assert changed != first
    assert CorpusSource(tmp_path, text_field="body").fingerprint() != changed
    (tmp_path / "c.txt").write_bytes(b"")
    assert source.fingerprint() != changed


def test_fingerprint_sees_same_size_edits(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"abc")
    source = CorpusSource(tmp_path)
    before = source.fingerprint()
    path.write_bytes(b"xyz")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # a coarse clock must not hide the edit
    assert source.fingerprint() != before


def _error(source: CorpusSource) -> str:
    with pytest.raises(DataError) as info:
        list(source.documents())
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_path_and_empty_folders(tmp_path):
    assert f"{tmp_path / 'nope'}: no such file or directory" in _error(CorpusSource(tmp_path / "nope"))
    assert "no file matches" in _error(CorpusSource(str(tmp_path / "*.txt")))
    (tmp_path / "empty").mkdir()
    assert str(tmp_path / "empty") in _error(CorpusSource(tmp_path / "empty"))
    (tmp_path / "e1.txt").write_bytes(b"")
    write_jsonl(tmp_path / "e2.jsonl", ["", ""])
    source = CorpusSource([tmp_path / "e1.txt", tmp_path / "e2.jsonl"])
    assert list(source.documents(source.files())) == [Document("e1.txt", b"")]  # a 0-byte .txt is a document
    assert _error(source) == f"{tmp_path}: corpus is empty (no document has any text); add text or fix the path"


def test_unsupported_suffix(tmp_path):
    (tmp_path / "notes.csv").write_text("a,b")
    assert "notes.csv: unsupported file type" in _error(CorpusSource(tmp_path / "notes.csv"))
    assert "notes.csv: unsupported file type" in _error(CorpusSource(str(tmp_path / "*")))


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    "row, expected",
    [
        ({"body": "x"}, ":2: no string field 'text'; set data.text_field"),
        ({"text": 7}, ":2: no string field 'text'"),
        ('["text"]', ":2: no string field 'text'"),
        ('{"text": "unterminated', ":2: not valid JSON"),
    ],
)
def test_bad_jsonl_rows_name_file_and_line(tmp_path, gz, row, expected):
    path = write_jsonl(tmp_path / ("d.jsonl.gz" if gz else "d.jsonl"), [{"text": "fine"}, row], gz=gz)
    assert f"{path}{expected}" in _error(CorpusSource(path))


def test_truncated_gzip(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl.gz", [{"text": "x" * 5000}] * 20, gz=True)
    path.write_bytes(path.read_bytes()[:60])
    assert f"{path}: corrupt or truncated gzip" in _error(CorpusSource(path))


def test_parquet_errors(tmp_path):
    path = write_parquet(tmp_path / "t.parquet", ["a", "b"], column="content")
    assert f"{path}: no column 'text' (columns: content, id)" in _error(CorpusSource(path))
    assert "not text" in _error(CorpusSource(path, text_field="id"))
    data = write_parquet(tmp_path / "u.parquet", ["a" * 100] * 10).read_bytes()
    (tmp_path / "u.parquet").write_bytes(data[: len(data) // 2])
    assert f"{tmp_path / 'u.parquet'}: not a readable parquet file" in _error(CorpusSource(tmp_path / "u.parquet"))
    write_parquet(tmp_path / "n.parquet", ["a", None])
    assert "n.parquet: row 1: 'text' is null" in _error(CorpusSource(tmp_path / "n.parquet"))


def test_large_file_hashes_are_remembered_in_the_cache(tmp_path, monkeypatch):
    from aunet.data import corpus as corpus_module

    monkeypatch.setenv("AUNET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(corpus_module, "_REMEMBER_BYTES", 1024)
    big = tmp_path / "big.txt"
    big.write_bytes(b"words " * 1000)
    first = CorpusSource(str(big)).fingerprint()
    records = list((tmp_path / "cache" / "file-hashes").iterdir())
    assert len(records) == 1 and records[0].read_text() == hashlib.sha256(big.read_bytes()).hexdigest()
    # Another process (an empty in-memory table) reads the record instead of the file: a planted hash shows it.
    monkeypatch.setattr(corpus_module, "_FILE_HASHES", {})
    records[0].write_text("f" * 64)
    assert CorpusSource(str(big)).fingerprint() != first
    # A half-written record is not trusted: the file is hashed again.
    monkeypatch.setattr(corpus_module, "_FILE_HASHES", {})
    records[0].write_text("f" * 10)
    assert CorpusSource(str(big)).fingerprint() == first


def test_a_recursive_glob_over_a_link_loop_ends(tmp_path):
    """Links back to a parent folder (two of them: the walk of glob.glob grew exponentially and never ended, without a
    word): each real folder is walked once, and the listing ends with the one file there is."""
    import threading

    (tmp_path / "corpus" / "a").mkdir(parents=True)
    (tmp_path / "corpus" / "a" / "doc.txt").write_text("one document")
    (tmp_path / "corpus" / "a" / "up").symlink_to(tmp_path / "corpus")
    (tmp_path / "corpus" / "a" / "top").symlink_to(tmp_path)
    found: list = []
    worker = threading.Thread(target=lambda: found.append(CorpusSource(str(tmp_path / "corpus" / "**" / "*.txt"))
                                                          .files()), daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "the glob did not end"
    assert found == [[tmp_path / "corpus" / "a" / "doc.txt"]]


def test_a_glob_matches_what_glob_matches_without_loops(tmp_path, monkeypatch):
    import glob as stdlib

    from aunet.data.corpus import _glob

    for rel in ("a/x.txt", "a/b/y.txt", "a/.hidden/z.txt", "c/w.jsonl", ".top/v.txt", "u.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("text")
    monkeypatch.chdir(tmp_path)
    patterns = ("**/*.txt", "a/**/*.txt", "*/*.jsonl", "*.txt", "a/*", "[ac]/*.*", "**", str(tmp_path / "**/*.txt"))
    for pattern in patterns:
        expected = sorted({os.path.normpath(m) for m in stdlib.glob(pattern, recursive=True)})
        assert sorted({os.path.normpath(m) for m in _glob(pattern)}) == expected, pattern


def test_a_document_too_large_to_encode_is_refused_before_it_is_read(tmp_path, monkeypatch):
    """A document is encoded whole (about 48 bytes of memory per byte): one larger than this machine can take is
    refused naming the file (and line, or row), instead of the training process dying of memory."""
    from aunet.data import corpus

    monkeypatch.setattr(corpus, "_machine_memory", lambda: 48 * 1000)  # a machine that encodes 1000 bytes at most
    (tmp_path / "big.txt").write_bytes(b"x" * 5000)
    reads = []
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self) or b"")
    with pytest.raises(DataError, match=r"big.txt: a document of .* MiB or more; encoding it whole .* split it"):
        list(CorpusSource(tmp_path / "big.txt").documents())
    assert reads == []  # refused from its size
    monkeypatch.undo()
    monkeypatch.setattr(corpus, "_machine_memory", lambda: 48 * 1000)
    write_jsonl(tmp_path / "rows.jsonl", [{"text": "small"}, {"text": "y" * 5000}])
    with pytest.raises(DataError, match=r"rows.jsonl:2: a document of"):
        list(CorpusSource(tmp_path / "rows.jsonl").documents())
    write_parquet(tmp_path / "rows.parquet", ["small", "z" * 5000])
    with pytest.raises(DataError, match=r"rows.parquet: row 1: a document of"):
        list(CorpusSource(tmp_path / "rows.parquet").documents())
    (tmp_path / "ok.txt").write_bytes(b"x" * 900)
    assert [len(d.data) for d in CorpusSource(tmp_path / "ok.txt").documents()] == [900]
