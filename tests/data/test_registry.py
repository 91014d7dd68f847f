"""Named corpora: resolving names and paths, listing, and downloads that fail cleanly without a network."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from aunet.data import registry
from aunet.data.registry import CORPORA, list_corpora, prepare_corpus, resolve_corpus
from aunet.errors import DataError


def _block_network(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def test_required_names_are_registered():
    assert {"gutenberg_en", "tinyshakespeare", "zh_cmrc2018", "ja_wikipedia_kyoto", "gutenberg_multilingual",
            "fineweb_edu_sample"} <= set(CORPORA)
    assert all(c.split in ("hash", "tail") for c in CORPORA.values())


def test_resolve_real_corpora(data_dir):
    books, split = resolve_corpus("gutenberg_en")
    assert split == "hash" and len(books.files()) == 34
    assert all(p.resolve().is_relative_to(data_dir) for p in books.files())  # data_dir is resolved
    shakespeare, split = resolve_corpus("tinyshakespeare")
    assert split == "tail" and [d.key for d in shakespeare.documents()] == ["input.txt"]
    for name in ("zh_cmrc2018", "ja_wikipedia_kyoto"):
        first = next(resolve_corpus(name)[0].documents())
        assert first.key.endswith(".jsonl:0") and first.data.decode("utf-8")
    rows = {r["name"]: r for r in list_corpora()}
    assert rows["gutenberg_en"]["available"] and rows["gutenberg_en"]["documents"] == 34
    assert rows["tinyshakespeare"]["size"] == 1_115_394 and rows["zh_cmrc2018"]["documents"] is None


def test_mixed_corpus_resolves_every_part_and_holds_out_only_rows(data_dir):
    """mixed_en_zh_ja: four English books (all on the training side) with the Chinese and Japanese rows."""
    from aunet.data.split import CorpusSplit, SplitSpec

    source, split = resolve_corpus("mixed_en_zh_ja")
    files = source.files()
    assert split == "hash" and len(files) == 6
    assert all(p.resolve().is_relative_to(data_dir / "corpora") for p in files)
    spec = SplitSpec()
    val_keys = [d.key for _, d in zip(range(2000), CorpusSplit(source, spec).val_documents())]
    assert val_keys and not any(k.startswith("gutenberg_en/") for k in val_keys)
    rows = {r["name"]: r for r in list_corpora()}
    mixed = rows["mixed_en_zh_ja"]
    assert mixed["available"] and Path(mixed["path"]).resolve() == data_dir / "corpora"


def test_mixed_corpus_with_a_missing_part_names_it(tmp_path, monkeypatch):
    monkeypatch.setenv("AUNET_DATA_DIR", str(tmp_path))
    (tmp_path / "corpora" / "gutenberg_en" / "books").mkdir(parents=True)
    with pytest.raises(DataError, match="pg11.txt; copy the files there"):
        resolve_corpus("mixed_en_zh_ja")
    assert not {r["name"]: r for r in list_corpora()}["mixed_en_zh_ja"]["available"]


def test_resolve_paths_and_unknown_names(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"x")
    source, split = resolve_corpus(str(tmp_path / "*.txt"))
    assert split == "hash" and [p.name for p in source.files()] == ["a.txt"]
    assert resolve_corpus([tmp_path / "a.txt"])[0].files() == source.files()
    with pytest.raises(DataError, match="unknown corpus 'gutenberg'; did you mean 'gutenberg_en'"):
        resolve_corpus("gutenberg")


def test_named_corpus_needs_the_data_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("AUNET_DATA_DIR", raising=False)
    with pytest.raises(DataError, match="AUNET_DATA_DIR is not set"):
        resolve_corpus("gutenberg_en")
    assert all(not r["available"] and r["path"].startswith("$AUNET_DATA_DIR/") for r in list_corpora())
    monkeypatch.setenv("AUNET_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match="run 'aunet data prepare tinyshakespeare'"):
        resolve_corpus("tinyshakespeare")


def test_prepare_without_network_is_one_line(tmp_path, monkeypatch):
    _block_network(monkeypatch)
    with pytest.raises(DataError) as info:
        prepare_corpus("tinyshakespeare", dest_root=tmp_path, timeout=1)
    message = str(info.value)
    target = tmp_path / "corpora" / "tinyshakespeare" / "input.txt"
    assert "\n" not in message and "network is unreachable" in message
    assert CORPORA["tinyshakespeare"].url in message and str(target) in message
    assert not target.parent.exists()  # no partial download, no empty folder left behind


def test_prepare_writes_once_and_checks_the_content(tmp_path, monkeypatch):
    body = b"First Citizen:\nBefore we proceed any further, hear me speak.\n"
    entry = dataclasses.replace(CORPORA["tinyshakespeare"], sha256=hashlib.sha256(body).hexdigest())
    monkeypatch.setitem(registry.CORPORA, "tinyshakespeare", entry)
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: io.BytesIO(body))
    path = prepare_corpus("tinyshakespeare", dest_root=tmp_path)
    assert path == tmp_path / "corpora" / "tinyshakespeare" / "input.txt" and path.read_bytes() == body
    _block_network(monkeypatch)
    assert prepare_corpus("tinyshakespeare", dest_root=tmp_path) == path  # present: no download
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: io.BytesIO(b"<html>rate limited</html>"))
    with pytest.raises(DataError, match="has sha256"):
        prepare_corpus("tinyshakespeare", dest_root=tmp_path / "other")


def test_prepare_refusals(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="gutenberg_en: not downloadable as a whole; copy its files to"):
        prepare_corpus("gutenberg_en", dest_root=tmp_path)
    # conftest sets HF_HUB_OFFLINE=1: fineweb must fail before importing or reaching the hub
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match=r"offline mode .* from https://huggingface.co/datasets/HuggingFaceFW"):
        prepare_corpus("fineweb_edu_sample", dest_root=tmp_path)
    monkeypatch.delenv("AUNET_DATA_DIR", raising=False)
    with pytest.raises(DataError, match="AUNET_DATA_DIR is not set .*raw.githubusercontent.com"):
        prepare_corpus("tinyshakespeare")
    with pytest.raises(DataError, match="unknown corpus 'shakespeare'; did you mean 'tinyshakespeare'"):
        prepare_corpus("shakespeare")
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(DataError, match="cannot write to"):
        prepare_corpus("tinyshakespeare", dest_root=blocker)
