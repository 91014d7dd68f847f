"""FineWeb-Edu from local parquet shards (no network): prepared into the named corpus, packed in bounded memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aunet.cli import main
from aunet.data.registry import resolve_corpus

COLUMNS = ("text", "id", "dump", "url", "file_path", "language", "language_score", "token_count", "score",
           "int_score")


def write_shard(path: Path, texts: list[str], row_group_size: int = 64) -> None:
    """A parquet shard in FineWeb-Edu's schema (its published column names and types)."""
    n = len(texts)
    table = pa.table({
        "text": texts, "id": [f"<urn:uuid:{i:08d}>" for i in range(n)], "dump": ["CC-MAIN-2024-10"] * n,
        "url": [f"https://example.org/{i}" for i in range(n)], "file_path": ["s3://commoncrawl/x.warc.gz"] * n,
        "language": ["en"] * n, "language_score": [0.97] * n, "token_count": [len(t) // 4 for t in texts],
        "score": [3.2] * n, "int_score": [3] * n,
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group_size)


def fineweb_folder(root: Path, text: str, shards: int = 2, rows: int = 200) -> Path:
    lines = [line for line in text.splitlines() if line.strip()]
    source = root / "fineweb-edu" / "sample" / "10BT"
    for s in range(shards):
        texts = [" ".join(lines[(s * rows + i) * 3 % len(lines): (s * rows + i) * 3 % len(lines) + 12])
                 for i in range(rows)]
        write_shard(source / f"{s:03d}_00000.parquet", texts)
    return source


def test_prepare_links_checked_shards_as_the_named_corpus(tmp_path, data_dir, monkeypatch, capsys):
    text = (data_dir / "corpora" / "tinyshakespeare" / "input.txt").read_text()
    source = fineweb_folder(tmp_path, text)
    dest = tmp_path / "data"
    assert main(["data", "prepare", "fineweb_edu", "--source", str(source), "--dest", str(dest)]) == 0
    folder = Path(capsys.readouterr().out.strip())
    assert folder == dest / "corpora" / "fineweb_edu"
    manifest = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]
    assert [m["path"] for m in manifest] == ["000_00000.parquet", "001_00000.parquet"]
    assert all(m["rows"] == 200 for m in manifest) and all((folder / m["name"]).is_symlink() for m in manifest)
    monkeypatch.setenv("AUNET_DATA_DIR", str(dest))
    corpus, split = resolve_corpus("fineweb_edu")
    documents = list(corpus.documents())
    assert split == "hash" and len(documents) == 400 and documents[0].key.startswith("000_00000.parquet:")
    # Prepared again: replaced whole (a shard removed from the source is gone from the corpus).
    (source / "001_00000.parquet").unlink()
    assert main(["data", "prepare", "fineweb_edu", "--source", str(source), "--dest", str(dest)]) == 0
    assert len((folder / "manifest.jsonl").read_text().splitlines()) == 1


@pytest.mark.parametrize("case, message", [
    ("no-source", "give --source DIR"),
    ("not-parquet", "not a readable parquet file"),
    ("other-schema", "no column 'id'"),
    ("empty", "no .parquet file below this folder"),
    ("source-for-other", "--source is only for fineweb_edu"),
])
def test_prepare_refuses_what_is_not_fineweb_in_one_line(tmp_path, capsys, case, message):
    source = tmp_path / "src"
    source.mkdir()
    if case == "not-parquet":
        (source / "000.parquet").write_bytes(b"not parquet at all")
    if case == "other-schema":
        pq.write_table(pa.table({"text": ["a", "b"]}), source / "000.parquet")
    name = "tinyshakespeare" if case == "source-for-other" else "fineweb_edu"
    args = ["data", "prepare", name, "--dest", str(tmp_path / "data")]
    if case != "no-source":
        args += ["--source", str(source)]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "data" / "corpora" / "fineweb_edu").exists()


PEAK = """
import resource, sys
from aunet.data.packer import build_pack
from aunet.data.registry import resolve_corpus
from aunet.data.split import CorpusSplit, SplitSpec
from aunet.tokenizers.encoders import ByteEncoder
source, _ = resolve_corpus("fineweb_edu")
split = CorpusSplit(source, SplitSpec())
pack, _ = build_pack(sys.argv[1], {"peak": sys.argv[2]}, lambda: (d.data for d in split.train_documents()),
                     ByteEncoder(["word@1"]), processes=1, progress=False, chunk_bytes=1 << 20)
print(pack.meta.text_bytes, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.slow
def test_packing_memory_does_not_grow_with_the_corpus(tmp_path, data_dir):
    """Peak memory of a process packing 12 and 47 MB of parquet text: about the same (held at once: a parquet batch
    and a chunk of about 1 MB with its units), where holding the corpus would add its size many times over."""
    text = (data_dir / "corpora" / "gutenberg_en" / "books" / "pg1342.txt").read_text()
    peaks = {}
    for shards in (2, 8):
        source = fineweb_folder(tmp_path / f"s{shards}", text * 4, shards=shards, rows=8000)
        dest = tmp_path / f"d{shards}"
        assert main(["data", "prepare", "fineweb_edu", "--source", str(source), "--dest", str(dest)]) == 0
        env = {**os.environ, "AUNET_DATA_DIR": str(dest), "OMP_NUM_THREADS": "1"}
        out = subprocess.run([sys.executable, "-c", PEAK, str(tmp_path / "cache"), str(shards)], env=env,
                             capture_output=True, text=True, timeout=300, check=True).stdout.split()
        peaks[shards] = (int(out[0]), int(out[1]) * 1024)  # text bytes, peak resident memory (ru_maxrss: KiB)
    (small, peak_small), (large, peak_large) = peaks[2], peaks[8]
    assert large > 3.5 * small
    # Holding the text would add it once (and its int64 units eight times more); the allocator's own growth over a
    # longer run is a fraction of it (measured: 9 MB for 35 MB more text).
    assert peak_large - peak_small < 0.5 * (large - small), peaks
