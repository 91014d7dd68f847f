import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aunet.tokenizers import ByteTokenizer


def test_vocabulary_and_specials():
    tok = ByteTokenizer()
    assert (tok.vocab_size, tok.bos_id, tok.eos_id) == (258, 256, 257)
    ids = tok.encode("é!", bos=True, eos=True)
    assert ids.dtype == np.int64
    assert ids.tolist() == [256, 0xC3, 0xA9, ord("!"), 257]
    assert tok.encode(b"ab", bos=False).tolist() == [97, 98]


@given(st.binary(max_size=200))
def test_any_bytes_round_trip(data):
    tok = ByteTokenizer()
    ids = tok.encode(data, bos=True, eos=True)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert tok.decode_bytes(ids) == data  # invalid UTF-8 included


def test_decode_replaces_invalid_utf8_and_rejects_bad_ids():
    tok = ByteTokenizer()
    assert tok.decode([256, 0xFF, ord("a"), 257]) == "\ufffda"
    with pytest.raises(ValueError):
        tok.decode_bytes([300])
