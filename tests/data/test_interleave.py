"""Interleaved training documents: every byte once, each document in order, many documents from the start."""

from __future__ import annotations

import numpy as np
import pytest

from aunet.data.interleave import cut_point, interleave
from aunet.training.config import run_config_from_dict


def docs(n: int = 10, size: int = 5000) -> list[bytes]:
    return [(f"doc{i} line one\n" * (size // 14)).encode() for i in range(n)]


def test_every_byte_once_each_document_in_order():
    documents = docs() + [b"", "short \u00e9t\u00e9\n".encode()]
    pieces = list(interleave(documents, 1024, pool=4, rng=np.random.default_rng(0)))
    for d in documents:
        mine = [p for p in pieces if d and p and d.startswith(p[:8]) and p in d]
        assert b"".join(mine) == d or not d
    assert sum(map(len, pieces)) == sum(map(len, documents))
    assert all(len(p) <= 1024 for p in pieces)


def test_the_first_pieces_come_from_many_documents_and_the_order_is_seeded():
    first = [p[:5] for p in interleave(docs(), 1024, pool=64, rng=np.random.default_rng(1))][:10]
    assert len(set(first)) >= 6  # one document after another would give 1
    again = [p[:5] for p in interleave(docs(), 1024, pool=64, rng=np.random.default_rng(1))][:10]
    other = [p[:5] for p in interleave(docs(), 1024, pool=64, rng=np.random.default_rng(2))][:10]
    assert first == again and first != other


def test_pieces_end_at_a_line_break_or_a_character_boundary():
    data = ("x" * 1000 + "\n" + "y" * 60).encode()
    assert cut_point(data, 0, 1024) == 1001  # after the line break in the last 64 bytes
    accents = ("\u00e9" * 700).encode()  # 2-byte characters, no spaces or breaks
    end = cut_point(accents, 0, 1025)
    assert end % 2 == 0 and accents[:end].decode()  # not inside a character


def test_not_interleaving_keeps_run_ids_from_before_the_option():
    base = {"model": {"preset": "tiny-aunet2"}, "train": {"max_steps": 5}}
    plain = run_config_from_dict({**base, "data": {"stream": "streamed"}})
    assert "interleave_bytes" not in plain.identity()["data"] and "stream" not in plain.identity()["data"]
    mixed = run_config_from_dict({**base, "data": {"stream": "streamed", "interleave_bytes": 65536}})
    assert mixed.run_id() != plain.run_id() and mixed.identity()["data"]["interleave_pool"] == 64
    with pytest.raises(Exception, match="interleave_bytes"):
        run_config_from_dict({**base, "data": {"stream": "streamed", "interleave_bytes": 10}})


def test_interleaving_is_refused_on_the_packed_stream():
    with pytest.raises(Exception, match="data.interleave_bytes: only for data.stream: streamed"):
        run_config_from_dict({"model": {"preset": "tiny-aunet2"}, "train": {"max_steps": 5},
                              "data": {"interleave_bytes": 65536}})
