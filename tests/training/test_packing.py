"""Packing documents into windows, the validation set, and the resumable training stream."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from aunet.data.packing import (
    PAD,
    ByteEncoder,
    TrainBatches,
    pack,
    shuffle_buffer,
    training_windows,
    validation_set,
    validation_texts,
)
from aunet.errors import DataError
from aunet.splitting import compute_levels

DOCS = [b"The cat sat on the mat. ", "naïve café — 12345 words\n".encode(), b"a b c d e f g h i j k l m n o p",
        b"x" * 40, "中文 text".encode()]


def test_every_stream_token_is_a_target_exactly_once():
    enc = ByteEncoder(["word@1", "word@2"])
    stream = np.concatenate([enc.encode(d)[0] for d in DOCS])
    windows = list(pack((enc.encode(d) for d in DOCS), window=9, top_level=2))
    targets = np.concatenate([w[1:] for w, _ in windows])
    assert np.array_equal(targets, stream[1 : 1 + len(targets)])
    assert len(stream) - 1 - len(targets) < 8  # only the unfinished last window is left over
    for (tokens, levels), k in zip(windows, itertools.count()):
        assert np.array_equal(tokens, stream[8 * k : 8 * k + 9])
        assert levels[0] == 2  # every window starts pooled at every stage


def test_levels_of_a_window_are_those_of_whole_documents():
    enc = ByteEncoder(["word@1"])
    tokens, levels = enc.encode(DOCS[1])
    assert tokens[0] == 256 and tokens[-1] == 257 and levels[0] == 1 and levels[-1] == 0
    assert np.array_equal(levels[1:-1], compute_levels(DOCS[1], ["word@1"]))


def test_validation_set_covers_the_text_once_and_counts_its_bytes():
    enc = ByteEncoder(["word@1"])
    val = validation_set(iter(DOCS), enc, seq_len=16, max_bytes=10_000)
    assert val.text_bytes == sum(len(d) for d in DOCS) and val.n_documents == len(DOCS)
    targets = val.tokens[:, 1:].ravel()
    real = targets[targets != PAD]
    assert int((real < 256).sum()) == val.text_bytes  # each byte of the text is a target once
    assert val.levels is not None and (val.levels[:, 0] == 1).all()


def test_validation_set_truncates_at_a_character_boundary():
    enc = ByteEncoder([])
    val = validation_set(iter([("é" * 10).encode()]), enc, seq_len=8, max_bytes=5)  # 5 bytes would cut an é in half
    assert val.text_bytes == 4


def test_validation_texts_are_the_bytes_the_validation_set_scores():
    # Whole documents in order until max_bytes, the last cut back to a character start, empty ones dropped: the
    # exact text the reference levels are scored on, so it must be what the windows hold.
    docs = [b"", DOCS[0], DOCS[1]]
    limit = len(DOCS[0]) + 3  # DOCS[1] is "na\xc3\xafve...": 3 bytes would cut the two-byte "\xc3\xaf" in half
    texts = validation_texts(iter(docs), limit)
    assert texts == [DOCS[0], b"na"]
    val = validation_set(iter(docs), ByteEncoder([]), seq_len=8, max_bytes=limit)
    targets = val.tokens[:, 1:].ravel()
    assert bytes(targets[(targets >= 0) & (targets < 256)].astype(np.uint8).tolist()) == b"".join(texts)
    assert val.text_bytes == sum(map(len, texts)) and val.n_documents == 2


def test_empty_validation_is_a_data_error():
    with pytest.raises(DataError, match="validation split is empty"):
        validation_set(iter([]), ByteEncoder([]), seq_len=8, max_bytes=100)


def test_shuffle_buffer_is_a_seeded_permutation():
    items = [(np.array([i]), None) for i in range(50)]
    a = [int(t[0]) for t, _ in shuffle_buffer(iter(items), 8, np.random.default_rng(1))]
    b = [int(t[0]) for t, _ in shuffle_buffer(iter(items), 8, np.random.default_rng(1))]
    assert a == b and sorted(a) == list(range(50)) and a != list(range(50))


def _windows():
    enc = ByteEncoder(["word@1"])
    return training_windows(lambda epoch: iter(DOCS), enc, seq_len=12, seed=3, buffer=4)


def _collect(loader, n):
    return [b["tokens"] for b in itertools.islice(iter(loader), n)]


def test_batches_do_not_depend_on_the_number_of_workers_and_resume_skips_exactly():
    plain = _collect(DataLoader(TrainBatches(_windows, micro_batch=2), batch_size=None), 8)
    workers = _collect(DataLoader(TrainBatches(_windows, micro_batch=2), batch_size=None, num_workers=2), 8)
    assert all(torch.equal(a, b) for a, b in zip(plain, workers))
    resumed = _collect(DataLoader(TrainBatches(_windows, micro_batch=2, start=3), batch_size=None), 5)
    assert all(torch.equal(a, b) for a, b in zip(plain[3:], resumed))


def test_ranks_share_the_stream_without_overlap():
    whole = _collect(DataLoader(TrainBatches(_windows, micro_batch=2), batch_size=None), 6)
    rank0 = _collect(DataLoader(TrainBatches(_windows, micro_batch=2, rank=0, world_size=2), batch_size=None), 3)
    rank1 = _collect(DataLoader(TrainBatches(_windows, micro_batch=2, rank=1, world_size=2), batch_size=None), 3)
    assert all(torch.equal(a, b) for a, b in zip(whole[0::2], rank0))
    assert all(torch.equal(a, b) for a, b in zip(whole[1::2], rank1))


def test_corpus_shorter_than_one_sequence_is_a_data_error():
    stream = training_windows(lambda epoch: iter([b"tiny"]), ByteEncoder([]), seq_len=64, seed=0, buffer=1)
    with pytest.raises(DataError, match="fewer than one sequence"):
        next(stream)
