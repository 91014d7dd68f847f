"""The data benchmark's text: the training split repeated to a size, refused when it is empty."""

from __future__ import annotations

from pathlib import Path

import pytest

from aunet.bench.data import repeated_split
from aunet.data.corpus import CorpusSource
from aunet.data.split import CorpusSplit, SplitSpec
from aunet.errors import UserError


def _split(folder: Path, texts: dict[str, bytes]) -> CorpusSplit:
    folder.mkdir()
    for name, data in texts.items():
        (folder / f"{name}.txt").write_bytes(data)
    return CorpusSplit(CorpusSource([str(folder)]), SplitSpec(val_documents=["val"]))


def test_the_split_is_repeated_pass_after_pass_until_enough_bytes(tmp_path):
    split = _split(tmp_path / "c", {"a": b"a" * 100, "b": b"b" * 50, "val": b"v" * 10})
    out = list(repeated_split(split, 400))
    assert sum(map(len, out)) == 450 and len(out) == 6  # three whole passes of 150 bytes: the last pass whole
    assert sorted(out[:2]) == sorted([b"a" * 100, b"b" * 50]) and b"v" * 10 not in out
    assert list(repeated_split(split, 0)) == []


def test_an_empty_training_split_is_refused_instead_of_looping(tmp_path):
    split = _split(tmp_path / "c", {"a": b"", "val": b"v" * 10})
    with pytest.raises(UserError, match="training split holds no text"):
        list(repeated_split(split, 10))
