"""The BPE baseline's tokenizer: exact byte round trips, byte lengths, training, files, cache, external tokenizers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from aunet.data import bpe
from aunet.data.bpe import (
    BPETokenizer,
    byte_to_char,
    bytes_per_token,
    bytes_to_mapped,
    cached_tokenizer,
    mapped_to_bytes,
)
from aunet.errors import DataError

TRAIN_BYTES = 100_000
VOCAB = 1024


@pytest.fixture(scope="module")
def tok(english_text: bytes) -> BPETokenizer:
    """A native tokenizer trained on the first 100 KB of English text (well under a second)."""
    return BPETokenizer.train([english_text[:TRAIN_BYTES]], VOCAB)


# Arbitrary bytes; UTF-8 of arbitrary text; UTF-8 text with stray invalid bytes spliced in.
utf8_text = st.text(max_size=300).map(lambda s: s.encode("utf-8"))
mixed = st.lists(st.one_of(utf8_text, st.binary(max_size=8)), max_size=8).map(b"".join)
any_bytes = st.one_of(st.binary(max_size=400), utf8_text, mixed)


# -- the byte table


def test_byte_table_is_printable_and_matches_hf_byte_level():
    chars = byte_to_char()
    assert len(set(chars)) == 256 and all(c.isprintable() for c in chars)
    assert chars[ord("a")] == "a" and chars[ord(" ")] == "\u0120" and chars[ord("\n")] == "\u010a"
    assert set(chars) == set(pre_tokenizers.ByteLevel.alphabet())
    # HF's ByteLevel maps valid UTF-8 through the same table (it cannot show bytes that never occur in UTF-8).
    text = "Hello,\tworld!\n\u00a0caf\u00e9 \u2014 \u65e5\u672c \U0001f600\x00\x7f"
    hf = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False).pre_tokenize_str(text)
    assert "".join(piece for piece, _ in hf) == bytes_to_mapped(text.encode("utf-8"))
    every_byte = bytes(range(256))
    assert mapped_to_bytes(bytes_to_mapped(every_byte)) == every_byte


def test_pre_tokenizer_keeps_the_space_with_the_next_word():
    pre = bpe._native_pretokenizer()
    pieces = [mapped_to_bytes(p) for p, _ in pre.pre_tokenize_str(bytes_to_mapped(b"Hi there,  you 12345!\n\nok"))]
    assert pieces == [b"Hi", b" there", b",", b" ", b" you", b" 123", b"45", b"!", b"\n\n", b"ok"]


# -- round trips and byte lengths


@given(any_bytes)
def test_round_trip_any_bytes(tok, data):
    ids = tok.encode(data)
    assert ids.dtype == np.int64 and ids.ndim == 1
    assert tok.decode_bytes(ids) == data
    assert tok.token_byte_lengths()[ids].sum() == len(data)


def test_encode_batch_matches_encode(tok, english_text):
    docs = [english_text[150_000:160_000], b"", b"\xff\xfe invalid", "text as str"]
    batch = tok.encode_batch(docs)
    for doc, ids in zip(docs, batch):
        assert np.array_equal(ids, tok.encode(doc))
    assert tok.decode_bytes(batch[-1]) == b"text as str"


def test_specials_and_byte_ids(tok):
    assert (tok.bos_id, tok.eos_id) == (256, 257)
    assert tok.kind == "native" and tok.exact_byte_lengths
    lengths = tok.token_byte_lengths()
    assert lengths.shape == (tok.vocab_size,) and lengths.dtype == np.int64
    assert lengths[tok.bos_id] == 0 and lengths[tok.eos_id] == 0
    assert (np.delete(lengths, [tok.bos_id, tok.eos_id]) >= 1).all()
    assert np.array_equal(tok.encode(bytes(range(256)))[:1], [0])  # single bytes are their own ids
    assert all(tok.encode(bytes([b])).tolist() == [b] for b in range(256))
    # A literal special in a document is text, never the special id.
    ids = tok.encode(b"<|bos|>x<|eos|>")
    assert tok.bos_id not in ids and tok.eos_id not in ids
    assert tok.decode_bytes([tok.bos_id, *ids.tolist(), tok.eos_id]) == b"<|bos|>x<|eos|>"
    with pytest.raises(ValueError):
        tok.decode_bytes([tok.vocab_size])


def test_vocab_size_respected_and_merges_compress_english(tok, english_text):
    assert tok.vocab_size == VOCAB
    ids = tok.encode(english_text)
    assert ids.max() < VOCAB
    # About 2.7 on the training text and 2.4 on unseen Shakespeare (short verse lines, archaic spelling); raw bytes
    # would be 1.0.
    seen, held_out = english_text[:TRAIN_BYTES], english_text[TRAIN_BYTES:]
    assert bytes_per_token(tok, [seen[i : i + 5000] for i in range(0, len(seen), 5000)]) > 2.5
    assert bytes_per_token(tok, [held_out]) > 2.2
    small = BPETokenizer.train([english_text[:TRAIN_BYTES]], 300)
    assert small.vocab_size == 300 and small.encode(english_text[:5000]).max() < 300


def test_max_bytes_and_chunking(monkeypatch):
    monkeypatch.setattr(bpe, "TRAIN_CHUNK_BYTES", 7)
    chunks = list(bpe._training_chunks([b"a" * 20, b"b" * 5, b"c" * 9], max_bytes=30))
    assert [len(c) for c in chunks] == [7, 7, 6, 5, 5]
    assert mapped_to_bytes("".join(chunks)) == b"a" * 20 + b"b" * 5 + b"c" * 5
    assert BPETokenizer.train([b"abab" * 100], 400, max_bytes=0).vocab_size == 258  # nothing seen: bytes only


def test_too_small_vocab_is_a_data_error():
    with pytest.raises(DataError, match="258"):
        BPETokenizer.train([b"hello"], 257)


def test_bytes_per_token_of_nothing_is_a_data_error(tok):
    with pytest.raises(DataError):
        bytes_per_token(tok, [b""])


# -- files


def test_save_load_round_trip(tok, english_text, tmp_path):
    path = tok.save(tmp_path / "tok")
    assert path == tmp_path / "tok" / "tokenizer.json"
    meta = json.loads((tmp_path / "tok" / "aunet_tokenizer.json").read_text())
    assert meta["kind"] == "native" and meta["bos_token"] == "<|bos|>" and meta["version"] == bpe.FORMAT_VERSION
    assert not [p for p in (tmp_path / "tok").iterdir() if p.name.endswith(".tmp")]
    sample = english_text[:20_000] + b"\xff\xc3"
    for source in (path, path.parent):
        loaded = BPETokenizer.load(source)
        assert loaded.kind == "native" and (loaded.bos_id, loaded.eos_id) == (tok.bos_id, tok.eos_id)
        assert loaded.fingerprint() == tok.fingerprint()
        assert np.array_equal(loaded.encode(sample), tok.encode(sample))
        assert np.array_equal(loaded.token_byte_lengths(), tok.token_byte_lengths())


def test_corrupt_or_missing_files_are_data_errors(tok, tmp_path):
    bad = tmp_path / "tokenizer.json"
    bad.write_text('{"model": "not a tokenizer"')
    with pytest.raises(DataError, match="not a tokenizer.json") as err:
        BPETokenizer.load(bad)
    assert str(bad) in str(err.value)
    with pytest.raises(DataError, match="no such file"):
        BPETokenizer.load(tmp_path / "missing.json")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DataError, match="no tokenizer.json"):
        BPETokenizer.load(tmp_path / "empty_dir")
    good = tok.save(tmp_path / "good")
    (good.parent / "aunet_tokenizer.json").write_text("{oops")
    with pytest.raises(DataError, match="aunet_tokenizer.json"):
        BPETokenizer.load(good)


def test_fingerprint_tracks_content(tok, english_text):
    other = BPETokenizer.train([english_text[:TRAIN_BYTES]], 512)
    assert len(tok.fingerprint()) == 64 and other.fingerprint() != tok.fingerprint()


# -- cache


def test_cached_tokenizer_trains_once(english_text, tmp_path, monkeypatch):
    calls = []
    real_train = BPETokenizer.train.__func__

    def counting_train(cls, documents, vocab_size, **kwargs):
        calls.append(vocab_size)
        return real_train(cls, documents, vocab_size, **kwargs)

    monkeypatch.setattr(BPETokenizer, "train", classmethod(counting_train))
    docs = lambda: [english_text[:20_000]]  # noqa: E731
    first = cached_tokenizer(tmp_path, "corpus-a", 300, docs)
    second = cached_tokenizer(tmp_path, "corpus-a", 300, docs)
    assert calls == [300] and first.fingerprint() == second.fingerprint()
    cached_tokenizer(tmp_path, "corpus-a", 320, docs)
    cached_tokenizer(tmp_path, "corpus-b", 300, docs)
    cached_tokenizer(tmp_path, "corpus-a", 300, docs, max_bytes=5_000)
    assert calls == [300, 320, 300, 300]
    entries = sorted(p.name for p in (tmp_path / "bpe").iterdir())
    assert len(entries) == 4 and not any(name.startswith(".") for name in entries)  # no temp dirs left behind


def test_cached_tokenizer_loses_a_race_gracefully(english_text, tmp_path, monkeypatch):
    """A run that finishes training after another run cached the same key loads the cached one."""
    docs = lambda: [english_text[:20_000]]  # noqa: E731
    winner = BPETokenizer.train(docs(), 300)
    key_dir = tmp_path / "bpe" / bpe.cache_key("corpus", 300, None)
    real_train = BPETokenizer.train.__func__

    def train_while_another_run_saves(cls, documents, vocab_size, **kwargs):
        result = real_train(cls, documents, vocab_size, **kwargs)
        winner.save(key_dir)  # the other run's rename lands first
        return result

    monkeypatch.setattr(BPETokenizer, "train", classmethod(train_while_another_run_saves))
    loaded = cached_tokenizer(tmp_path, "corpus", 300, docs)
    assert loaded.fingerprint() == winner.fingerprint()
    assert [p.name for p in (tmp_path / "bpe").iterdir()] == [key_dir.name]


# -- external tokenizers


def _train_hf(tokenizer: Tokenizer, trainer, text: str) -> Tokenizer:
    tokenizer.train_from_iterator([text[i : i + 2000] for i in range(0, len(text), 2000)], trainer=trainer)
    return tokenizer


def test_external_byte_level_tokenizer_is_exact(english_text, tmp_path):
    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=500, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<s>"],
        show_progress=False,
    )
    _train_hf(hf, trainer, english_text[:50_000].decode("utf-8"))
    hf.save(str(tmp_path / "tokenizer.json"))

    ext = BPETokenizer.load(tmp_path / "tokenizer.json", bos_token="<s>")
    assert ext.kind == "external" and ext.exact_byte_lengths
    assert ext.bos_id == hf.token_to_id("<s>")  # an existing token is reused
    assert ext.eos_id == ext.vocab_size - 1  # a missing one is added as a special token
    lengths = ext.token_byte_lengths()
    assert lengths[ext.bos_id] == 0 and lengths[ext.eos_id] == 0
    text = "Good morrow, caf\u00e9 \u65e5\u672c! 12345\n".encode("utf-8") + english_text[60_000:62_000]
    ids = ext.encode(text)
    assert lengths[ids].sum() == len(text)
    assert ext.decode_bytes([ext.bos_id, *ids.tolist(), ext.eos_id]) == text
    assert ext.replaced_documents == 0
    ext.encode_batch([b"ok", b"bad \xff byte"])
    assert ext.replaced_documents == 1
    # Save/load keeps the added EOS and the chosen BOS.
    again = BPETokenizer.load(ext.save(tmp_path / "saved"))
    assert (again.kind, again.bos_id, again.eos_id) == ("external", ext.bos_id, ext.eos_id)
    assert again.fingerprint() == ext.fingerprint() and np.array_equal(again.encode(text), ids)


def test_external_word_level_tokenizer_is_approximate(tmp_path):
    hf = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    hf.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["[UNK]"], show_progress=False)
    _train_hf(hf, trainer, "the cat sat on the mat . the dog sat too .")
    path = tmp_path / "words.json"
    hf.save(str(path))

    ext = BPETokenizer.load(path)
    assert ext.kind == "external" and not ext.exact_byte_lengths
    assert {ext.bos_id, ext.eos_id} == {ext.vocab_size - 2, ext.vocab_size - 1}
    ids = ext.encode(b"the cat sat")
    assert [hf.id_to_token(i) for i in ids] == ["the", "cat", "sat"]
    assert ext.token_byte_lengths()[ids].tolist() == [3, 3, 3]
    assert ext.decode_bytes(ids) == b"the cat sat"


# -- real corpus (a few seconds)


@pytest.mark.slow
def test_gutenberg_round_trip_and_compression(data_dir):
    books = sorted((data_dir / "corpora" / "gutenberg_en" / "books").glob("*.txt"))
    if len(books) < 2:
        pytest.skip("the Gutenberg corpus is not in the data directory")
    train_books, test_book = books[1:], books[0].read_bytes()
    tok = BPETokenizer.train((p.read_bytes() for p in train_books), 2048, max_bytes=4_000_000)
    assert tok.vocab_size == 2048
    ids = tok.encode(test_book)
    assert tok.decode_bytes(ids) == test_book
    assert tok.token_byte_lengths()[ids].sum() == len(test_book)
    assert len(test_book) / len(ids) > 2.8


def test_external_tokenizer_that_rewrites_text_is_not_exact(english_text, tmp_path):
    """A prefix space or a normalizer changes the bytes before tokenization: token bytes no longer sum to the text."""
    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    _train_hf(hf, trainer, english_text[:20_000].decode("utf-8"))
    hf.save(str(tmp_path / "seq.json"))
    assert BPETokenizer.load(tmp_path / "seq.json").exact_byte_lengths  # ByteLevel inside a Sequence is found

    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    hf.save(str(tmp_path / "prefix.json"))
    assert not BPETokenizer.load(tmp_path / "prefix.json").exact_byte_lengths
