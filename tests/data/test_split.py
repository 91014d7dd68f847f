"""The train/validation split: hash by document key (stable as the corpus grows) and tail by bytes (UTF-8 safe)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aunet.data.config import DataConfig
from aunet.data.corpus import CorpusSource
from aunet.data.pipeline import corpus_split
from aunet.data.registry import CORPORA
from aunet.data.split import CorpusSplit, SplitSpec, default_split, is_validation_key, tail_cut
from aunet.errors import ConfigError, DataError
from tests.data.test_corpus import write_jsonl


def _books(folder: Path, n: int, start: int = 0) -> Path:
    folder.mkdir(exist_ok=True)
    for i in range(start, start + n):
        (folder / f"book{i:03d}.txt").write_bytes(f"text of book {i}\n".encode())
    return folder


def _keys(docs) -> list[str]:
    return [d.key for d in docs]


def test_hash_split_is_deterministic_and_partitions(tmp_path):
    split = CorpusSplit(CorpusSource(_books(tmp_path / "c", 60)), SplitSpec(val_fraction=0.2))
    train, val = _keys(split.train_documents()), _keys(split.val_documents())
    assert set(train).isdisjoint(val) and len(train) + len(val) == 60 and val and train
    assert val == sorted(val) and val == _keys(split.val_documents())
    assert sorted(train) == sorted(_keys(split.train_documents(epoch=3, seed=7)))


def test_train_file_order_is_shuffled_per_epoch_and_seed(tmp_path):
    split = CorpusSplit(CorpusSource(_books(tmp_path / "c", 30)), SplitSpec(val_fraction=0.0))
    e0, e1 = _keys(split.train_documents(epoch=0)), _keys(split.train_documents(epoch=1))
    assert e0 != e1 and sorted(e0) == sorted(e1)
    assert e0 == _keys(split.train_documents(epoch=0)) and e0 != _keys(split.train_documents(epoch=0, seed=1))


def test_rows_within_a_file_stay_in_order(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"text": str(i)} for i in range(20)])
    write_jsonl(tmp_path / "b.jsonl", [{"text": str(i)} for i in range(20)])
    keys = _keys(CorpusSplit(CorpusSource(tmp_path), SplitSpec(val_fraction=0.3)).train_documents(epoch=5))
    for name in ("a.jsonl", "b.jsonl"):
        rows = [int(k.split(":")[1]) for k in keys if k.startswith(name)]
        assert rows == sorted(rows)


def test_adding_documents_never_moves_old_ones(tmp_path):
    folder = _books(tmp_path / "c", 40)
    spec = SplitSpec(val_fraction=0.25)
    before = set(_keys(CorpusSplit(CorpusSource(folder), spec).val_documents()))
    _books(folder, 40, start=40)
    after = set(_keys(CorpusSplit(CorpusSource(folder), spec).val_documents()))
    assert before and before == {k for k in after if int(k[4:7]) < 40}


def test_explicit_validation_documents_match_stems_and_keys():
    spec = SplitSpec(val_documents=["pg11", "sub/pg12.txt", "rows"])
    assert is_validation_key("pg11.txt", spec) and is_validation_key("x/pg11.txt", spec)
    assert is_validation_key("sub/pg12.txt", spec) and not is_validation_key("pg12.txt", spec)
    assert is_validation_key("rows.jsonl.gz:3", spec) and not is_validation_key("pg111.txt", spec)
    assert not is_validation_key("pg11.txt", SplitSpec(val_fraction=0.0))


def test_bad_spec_values():
    with pytest.raises(ConfigError, match="data.split: unknown split method 'lines'"):
        SplitSpec(method="lines")
    with pytest.raises(ConfigError, match="data.val_fraction"):
        SplitSpec(val_fraction=1.5)


@given(st.text(max_size=60), st.floats(min_value=0.0, max_value=0.99))
def test_tail_cut_never_splits_a_character(text, fraction):
    data = text.encode("utf-8")
    cut = tail_cut(data, fraction)
    assert data[:cut].decode("utf-8") + data[cut:].decode("utf-8") == text


def test_tail_split_reassembles_each_document(tmp_path):
    (tmp_path / "a.txt").write_bytes("héllo wörld — ünïcode ".encode() * 20)
    (tmp_path / "b.txt").write_bytes(b"\x80\x80\x80\x80 invalid head")
    split = CorpusSplit(CorpusSource(tmp_path), SplitSpec(method="tail", val_fraction=0.1))
    split.check()
    train = {d.key: d.data for d in split.train_documents()}
    val = {d.key: d.data for d in split.val_documents()}
    for name in ("a.txt", "b.txt"):
        whole = (tmp_path / name).read_bytes()
        assert train[name + "#train"] + val[name + "#val"] == whole
        assert len(val[name + "#val"]) <= 0.1 * len(whole) + 1
    assert val["a.txt#val"].decode("utf-8")


def test_check_reports_the_empty_side(tmp_path):
    source = CorpusSource(_books(tmp_path / "c", 3))
    with pytest.raises(DataError, match="no validation document; raise data.val_fraction, list data.val_documents"):
        CorpusSplit(source, SplitSpec(val_fraction=0.0)).check()
    with pytest.raises(DataError, match="no training document"):
        CorpusSplit(source, SplitSpec(val_documents=["book000", "book001", "book002"])).check()
    with pytest.raises(DataError, match="no key matches data.val_documents"):
        CorpusSplit(source, SplitSpec(val_documents=["nosuch"])).check()
    (tmp_path / "one.txt").write_bytes(b"abc")
    with pytest.raises(DataError, match="one.txt: .*no validation document; raise data.val_fraction"):
        CorpusSplit(CorpusSource(tmp_path / "one.txt"), SplitSpec(method="tail", val_fraction=0.1)).check()
    CorpusSplit(source, SplitSpec(val_documents=["book001"])).check()


def test_default_spec_holds_out_whole_gutenberg_books(data_dir):
    source = CorpusSource(str(data_dir / "corpora" / "gutenberg_en" / "books" / "*.txt"))
    split = CorpusSplit(source, SplitSpec())
    split.check()
    assert _keys(split.val_documents()) == ["pg16.txt", "pg33.txt"]  # Peter Pan, The Scarlet Letter
    # The first salt held out nothing: the reason the default is aunet-split-v2 (see aunet.data.split).
    assert not any(is_validation_key(p.name, SplitSpec(salt="aunet-split-v1")) for p in source.files())


def test_a_single_document_defaults_to_a_tail_split_and_nothing_else_does(tmp_path):
    (tmp_path / "input.txt").write_text("to be or not to be " * 100)
    one_row, two_rows = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    write_jsonl(one_row, [{"text": "a single row " * 50}])
    write_jsonl(two_rows, [{"text": "row one"}, {"text": "row two"}])
    single = {"file": tmp_path / "input.txt", "folder of one file": _books(tmp_path / "one-book", 1),
              "jsonl of one row": one_row}
    several = {"two files": _books(tmp_path / "two-books", 2), "jsonl of two rows": two_rows}
    for name, path in {**single, **several}.items():
        expected = "tail" if name in single else "hash"
        assert default_split(CorpusSource(path), "hash") == expected, name
        assert corpus_split(DataConfig(corpus=str(path)))[1].method == expected, name
        # An explicit split is kept, and a corpus's own tail default is not turned into hash.
        assert corpus_split(DataConfig(corpus=str(path), split="hash"))[1].method == "hash", name
        assert default_split(CorpusSource(path), "tail") == "tail", name
    # The held-out tail of the file is exactly the tail an explicit data.split: tail gives.
    auto, explicit = (corpus_split(DataConfig(corpus=str(single["file"]), split=s))[2] for s in (None, "tail"))
    assert [d.data for d in auto.val_documents()] == [d.data for d in explicit.val_documents()]


def test_named_corpora_keep_their_own_split(data_dir):
    checked = []
    for name, entry in CORPORA.items():
        try:
            source, spec, _ = corpus_split(DataConfig(corpus=name))
        except DataError:  # not in this data directory (e.g. a corpus downloaded on demand)
            continue
        assert spec.method == entry.split, name
        checked.append(name)
    assert {"gutenberg_en", "tinyshakespeare", "mixed_en_zh_ja"} <= set(checked)
