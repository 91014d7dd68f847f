"""The BPE baseline's tokenizer: byte-level BPE trained with HF ``tokenizers``, cached, or loaded from a user's file.

Two kinds of tokenizer share one class, :class:`BPETokenizer`:

* **native** (trained by :meth:`BPETokenizer.train`): every byte 0..255 is mapped to one printable character (the
  GPT-2 style table of :func:`byte_to_char`), and BPE runs over the mapped string. Each character stands for exactly
  one byte, so any byte string (invalid UTF-8 included) encodes, every token is an exact byte string, a token's
  byte length is the length of its string, and decoding is the inverse mapping. Ids 0..255 are the single bytes,
  256 and 257 are ``<|bos|>`` and ``<|eos|>``, merged tokens follow in merge order.
* **external** (any HF ``tokenizer.json``, :meth:`BPETokenizer.load`): documents are decoded as UTF-8 with
  ``errors="replace"`` first. Token byte lengths are exact when the tokenizer is byte-level (a ``ByteLevel``
  pre-tokenizer, decoder or normalizer and nothing that rewrites the text), approximate otherwise
  (``exact_byte_lengths`` says which).

:func:`cached_tokenizer` trains once per (corpus, vocabulary size, byte budget) and reuses the result.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import tokenizers
from tokenizers import AddedToken, Regex, Tokenizer, models, pre_tokenizers, trainers

from aunet.errors import DataError
from aunet.io import atomic_write_text

BOS_TOKEN = "<|bos|>"
EOS_TOKEN = "<|eos|>"
TOKENIZER_FILE = "tokenizer.json"
SIDECAR_FILE = "aunet_tokenizer.json"
# Version of the files we write (sidecar layout, native vocabulary layout, pre-tokenizer regex). Bump it when any
# of them changes: it is part of the cache key, so old cached tokenizers are retrained rather than misread.
FORMAT_VERSION = 1
# Long documents reach the trainer in pieces of this many bytes. Cutting at any byte is harmless: it splits at
# most one pre-token per piece, and pre-tokens are words, a few bytes long.
TRAIN_CHUNK_BYTES = 1 << 20
MIN_VOCAB_SIZE = 258  # 256 bytes + BOS + EOS
NATIVE, EXTERNAL = "native", "external"

# Byte classes of the native pre-tokenizer. Bytes >= 0x80 (the pieces of non-ASCII UTF-8 characters) count as
# letters so that "café" or a run of CJK stays one word instead of being cut between its bytes.
_WHITESPACE = frozenset(b" \t\n\r\x0b\x0c")
_LETTERS = (frozenset(range(ord("a"), ord("z") + 1)) | frozenset(range(ord("A"), ord("Z") + 1))
            | frozenset(range(0x80, 0x100)))
_DIGITS = frozenset(range(ord("0"), ord("9") + 1))
_PUNCT = frozenset(range(256)) - _WHITESPACE - _LETTERS - _DIGITS  # ASCII punctuation and control bytes


# --------------------------------------------------------------------------------------------------------------
# The byte <-> character table


@lru_cache(maxsize=1)
def byte_to_char() -> tuple[str, ...]:
    """The character standing for each byte value; 256 distinct printable characters, indexed by byte.

    Bytes that are printable Latin-1 characters (``!``..``~``, ``¡``..``¬``, ``®``..``ÿ``) stand for themselves;
    the rest (controls, space, DEL, NBSP, soft hyphen) take the code points U+0100, U+0101, ... in byte order. This
    is the same table that HF's ``ByteLevel`` uses, so it also reads the tokens of external byte-level tokenizers.
    """
    printable = set(range(0x21, 0x7F)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    others = iter(range(0x100, 0x200))
    return tuple(chr(byte if byte in printable else next(others)) for byte in range(256))


@lru_cache(maxsize=1)
def char_to_byte() -> dict[str, int]:
    """Inverse of :func:`byte_to_char`: mapped character -> byte value."""
    return {char: byte for byte, char in enumerate(byte_to_char())}


@lru_cache(maxsize=1)
def _byte_code_points() -> np.ndarray:
    """Code point of each byte's character; shape ``[256]``, little-endian uint16 (all lie below U+0200)."""
    return np.array([ord(c) for c in byte_to_char()], dtype="<u2")


def bytes_to_mapped(data: bytes) -> str:
    """``data`` as mapped characters, one per byte (vectorised: a table lookup, then a UTF-16 decode)."""
    codes = _byte_code_points()[np.frombuffer(data, dtype=np.uint8)]
    return codes.tobytes().decode("utf-16-le")  # code points < U+0200: one UTF-16 unit each, no surrogates


def mapped_to_bytes(text: str) -> bytes:
    """Inverse of :func:`bytes_to_mapped`; KeyError for a character outside the table."""
    table = char_to_byte()
    return bytes(table[c] for c in text)


def _char_class(byte_values: Iterable[int]) -> str:
    """A regex character class matching the mapped characters of ``byte_values``, as ranges of ``\\x{...}``."""
    points = sorted(ord(byte_to_char()[b]) for b in byte_values)
    ranges: list[tuple[int, int]] = []
    for p in points:
        if ranges and ranges[-1][1] == p - 1:
            ranges[-1] = (ranges[-1][0], p)
        else:
            ranges.append((p, p))
    parts = [f"\\x{{{a:04X}}}" if a == b else f"\\x{{{a:04X}}}-\\x{{{b:04X}}}" for a, b in ranges]
    return "[" + "".join(parts) + "]"


@lru_cache(maxsize=1)
def native_pretokenizer_pattern() -> str:
    """The GPT-2-like pre-tokenizer regex, written over the mapped characters.

    Alternatives, tried in order: English contractions (``'s``, ``'ll``, ...); an optional space followed by letters;
    an optional space followed by up to 3 digits; an optional space followed by punctuation; a whitespace run that
    leaves its last space to the word after it; any other whitespace run. Every byte belongs to exactly one class,
    so the pattern covers all text. Unlike GPT-2's ``\\s+(?!\\S)``, a run such as ``"\\n\\n"`` before a word stays
    whole: only a space can join the next word, so only a space is held back.
    """
    space = _char_class([ord(" ")])
    letters, digits, punct = _char_class(_LETTERS), _char_class(_DIGITS), _char_class(_PUNCT)
    ws = _char_class(_WHITESPACE)
    not_ws = "[^" + ws[1:]
    return "|".join(["'(?:re|ve|ll|[stmd])",  # the apostrophe and ASCII letters map to themselves
                     f"{space}?{letters}+", f"{space}?{digits}{{1,3}}", f"{space}?{punct}+",
                     f"{ws}+(?={space}{not_ws})", f"{ws}+"])


def _native_pretokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Split(Regex(native_pretokenizer_pattern()), behavior="isolated")


# --------------------------------------------------------------------------------------------------------------
# The tokenizer


class BPETokenizer:
    """A BPE tokenizer over bytes: ``encode`` bytes -> ids, ``decode_bytes`` ids -> bytes.

    Build one with :meth:`train`, :meth:`load` or :func:`cached_tokenizer`, not with the constructor.
    ``encode`` never adds BOS/EOS; the caller places ``bos_id`` / ``eos_id`` where it wants them.

    Attributes:
        vocab_size: number of ids (one more than the largest id), specials included.
        bos_id, eos_id: ids of the BOS and EOS tokens.
        exact_byte_lengths: whether :meth:`token_byte_lengths` is exact (always for native tokenizers).
        kind: ``"native"`` or ``"external"``.
        replaced_documents: external only: how many encoded documents were not valid UTF-8 (decoded with U+FFFD).
    """

    vocab_size: int
    bos_id: int
    eos_id: int
    exact_byte_lengths: bool

    def __init__(self, hf: Tokenizer, *, kind: str, bos_token: str, eos_token: str, source: Path | None = None) -> None:
        self._hf = hf
        self.kind = kind
        self.bos_token, self.eos_token = bos_token, eos_token
        self.source = source
        self.replaced_documents = 0
        where = str(source) if source is not None else "tokenizer"
        if kind == NATIVE:
            self._init_native(where)
        elif kind == EXTERNAL:
            self._init_external()
        else:
            raise DataError(f"{where}: unknown tokenizer kind {kind!r}; expected {NATIVE!r} or {EXTERNAL!r}")

    # -- construction helpers

    def _init_native(self, where: str) -> None:
        vocab = self._hf.get_vocab(with_added_tokens=True)
        missing = [c for c in byte_to_char() if c not in vocab]
        for special in (self.bos_token, self.eos_token):
            if special not in vocab:
                missing.append(special)
        if missing:
            raise DataError(f"{where}: not a native aunet BPE tokenizer ({len(missing)} byte or special tokens "
                            f"missing, e.g. {missing[0]!r}); delete it and retrain, or remove {SIDECAR_FILE} to load "
                            "it as external")
        self.vocab_size = max(vocab.values()) + 1
        self.bos_id, self.eos_id = vocab[self.bos_token], vocab[self.eos_token]
        # Bytes of every id, for decoding; specials (and any id gap) decode to nothing.
        token_bytes = [b""] * self.vocab_size
        for token, idx in vocab.items():
            if idx not in (self.bos_id, self.eos_id):
                try:
                    token_bytes[idx] = mapped_to_bytes(token)
                except KeyError:
                    raise DataError(f"{where}: token {token!r} (id {idx}) is not made of mapped bytes; delete it "
                                    "and retrain") from None
        self._token_bytes = token_bytes
        self._lengths = np.array([len(b) for b in token_bytes], dtype=np.int64)
        self.exact_byte_lengths = True

    def _init_external(self) -> None:
        # Documents are data, not control text: a literal "<|endoftext|>" in a book must not become the special id.
        self._hf.encode_special_tokens = True
        to_add = [t for t in (self.bos_token, self.eos_token) if self._hf.token_to_id(t) is None]
        if to_add:
            self._hf.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in to_add])
        vocab = self._hf.get_vocab(with_added_tokens=True)
        self.vocab_size = max(vocab.values()) + 1
        self.bos_id, self.eos_id = vocab[self.bos_token], vocab[self.eos_token]
        added = self._hf.get_added_tokens_decoder().items()
        self._specials = {self.bos_id, self.eos_id} | {idx for idx, tok in added if tok.special}
        self._lengths, self.exact_byte_lengths = _external_byte_lengths(self._hf, vocab, self._specials)

    # -- encoding

    def encode(self, data: bytes | str) -> np.ndarray:
        """Ids of ``data``, no specials; shape ``[num_tokens]``, int64."""
        return self.encode_batch([data])[0]

    def encode_batch(self, docs: Sequence[bytes | str]) -> list[np.ndarray]:
        """Ids of each document (no specials), encoded in parallel by the Rust batch encoder; shapes
        ``[num_tokens_i]``."""
        raw = [d.encode("utf-8") if isinstance(d, str) else bytes(d) for d in docs]
        if self.kind == NATIVE:
            texts = [bytes_to_mapped(d) for d in raw]
        else:
            texts = [self._external_text(d) for d in raw]
        # encode_batch_fast skips offset tracking, which we never use.
        encodings = self._hf.encode_batch_fast(texts, add_special_tokens=False)
        return [np.asarray(e.ids, dtype=np.int64) for e in encodings]

    def _external_text(self, data: bytes) -> str:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            self.replaced_documents += 1
            return data.decode("utf-8", errors="replace")

    # -- decoding and byte lengths

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes of ``ids`` (shape ``[n]``), specials dropped; the exact inverse of ``encode`` for native
        tokenizers."""
        arr = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids), dtype=np.int64).reshape(-1)
        if arr.size and (arr.min() < 0 or arr.max() >= self.vocab_size):
            raise ValueError(f"token ids must lie in 0..{self.vocab_size - 1}")
        if self.kind == NATIVE:
            table = self._token_bytes
            return b"".join([table[i] for i in arr.tolist()])
        keep = arr[~np.isin(arr, list(self._specials))]
        return self._hf.decode(keep.tolist(), skip_special_tokens=True).encode("utf-8")

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """Text of ``ids`` (specials dropped); invalid UTF-8 becomes U+FFFD unless ``errors`` says otherwise."""
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    def token_byte_lengths(self) -> np.ndarray:
        """Bytes each id stands for; 0 for specials. Shape ``[vocab_size]``, int64 (a copy)."""
        return self._lengths.copy()

    # -- files

    def to_json(self) -> str:
        """The tokenizer as HF ``tokenizer.json`` text (what :meth:`save` writes and :meth:`fingerprint` hashes)."""
        return self._hf.to_str(pretty=True)

    def fingerprint(self) -> str:
        """sha256 (hex) of the serialized ``tokenizer.json``: equal fingerprints encode identically."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()

    def save(self, directory: Path) -> Path:
        """Write ``tokenizer.json`` and the ``aunet_tokenizer.json`` sidecar into ``directory``; returns the former.

        Each file is written to a temporary name and renamed, so a reader never sees half a file.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"format": "aunet-bpe", "version": FORMAT_VERSION, "kind": self.kind, "bos_token": self.bos_token,
                "eos_token": self.eos_token, "vocab_size": self.vocab_size,
                "tokenizers_version": tokenizers.__version__}
        path = directory / TOKENIZER_FILE
        atomic_write_text(path, self.to_json())
        atomic_write_text(directory / SIDECAR_FILE, json.dumps(meta, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: Path, *, bos_token: str | None = None, eos_token: str | None = None) -> "BPETokenizer":
        """Load a ``tokenizer.json`` (or a directory holding one).

        With an ``aunet_tokenizer.json`` sidecar beside it, its kind and BOS/EOS tokens are used; without one the
        file is an external tokenizer whose BOS/EOS are ``bos_token`` / ``eos_token`` (default ``<|bos|>`` /
        ``<|eos|>``), added as special tokens when the vocabulary lacks them.
        """
        file = _tokenizer_file(Path(path))
        try:
            hf = Tokenizer.from_str(file.read_text(encoding="utf-8"))
        except Exception as err:  # HF raises a bare Exception; a bad encoding raises UnicodeDecodeError
            raise DataError(f"{file}: not a tokenizer.json ({_one_line(err)}); replace it with a valid HF "
                            "tokenizer.json or delete it to retrain") from None
        meta = _read_sidecar(file.parent / SIDECAR_FILE)
        kind = meta.get("kind", EXTERNAL)
        bos = bos_token or meta.get("bos_token") or BOS_TOKEN
        eos = eos_token or meta.get("eos_token") or EOS_TOKEN
        return cls(hf, kind=kind, bos_token=bos, eos_token=eos, source=file)

    @classmethod
    def train(cls, documents: Iterable[bytes], vocab_size: int, *, min_frequency: int = 2,
              max_bytes: int | None = None) -> "BPETokenizer":
        """Train a native tokenizer of at most ``vocab_size`` ids (specials included) on ``documents``.

        Documents are streamed: the corpus is never held in memory. Training stops after ``max_bytes`` bytes
        (all of them when None). The vocabulary is smaller than asked when the text has too few frequent pairs.
        """
        if vocab_size < MIN_VOCAB_SIZE:
            raise DataError(f"BPE vocab_size={vocab_size} is too small: a byte-level BPE tokenizer needs at least "
                            f"{MIN_VOCAB_SIZE} ids (256 bytes + {BOS_TOKEN} + {EOS_TOKEN}); set vocab_size >= "
                            f"{MIN_VOCAB_SIZE}")
        hf = Tokenizer(models.BPE())
        hf.pre_tokenizer = _native_pretokenizer()
        # The specials are added afterwards (ids 256 and 257); every byte is encodable, seen in training or not.
        trainer = trainers.BpeTrainer(vocab_size=vocab_size - 2, min_frequency=min_frequency,
                                      initial_alphabet=list(byte_to_char()), special_tokens=[], show_progress=False)
        hf.train_from_iterator(_training_chunks(documents, max_bytes), trainer=trainer)
        return cls(_with_byte_ids(hf), kind=NATIVE, bos_token=BOS_TOKEN, eos_token=EOS_TOKEN)

    def __repr__(self) -> str:
        return (f"BPETokenizer(kind={self.kind}, vocab_size={self.vocab_size}, "
                f"exact_byte_lengths={self.exact_byte_lengths})")


# --------------------------------------------------------------------------------------------------------------
# Helpers: training, native layout, external byte lengths, files


def _training_chunks(documents: Iterable[bytes], max_bytes: int | None) -> Iterator[str]:
    """Mapped strings of at most ``TRAIN_CHUNK_BYTES`` bytes each, ``max_bytes`` in all."""
    left = max_bytes if max_bytes is not None else None
    for doc in documents:
        data = doc.encode("utf-8") if isinstance(doc, str) else bytes(doc)
        for start in range(0, len(data), TRAIN_CHUNK_BYTES):
            if left is not None and left <= 0:
                return
            piece = data[start : start + TRAIN_CHUNK_BYTES]
            if left is not None:
                piece = piece[:left]
                left -= len(piece)
            yield bytes_to_mapped(piece)
        if left is not None and left <= 0:
            return


def _with_byte_ids(trained: Tokenizer) -> Tokenizer:
    """The trained tokenizer renumbered: byte b -> id b, BOS 256, EOS 257, merged tokens from 258 in merge order.

    Only ids change; BPE applies merges by rank, so encodings are the same tokens. The specials live in the model's
    vocabulary only, not as HF "added tokens": HF would otherwise match a literal "<|bos|>" in a document (whose
    bytes map to themselves) and break the exact round trip. Merges never build them, so encode never emits them.
    """
    model = json.loads(trained.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in model["merges"]]
    vocab: dict[str, int] = {c: b for b, c in enumerate(byte_to_char())}
    vocab[BOS_TOKEN], vocab[EOS_TOKEN] = 256, 257
    for token, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1]):
        vocab.setdefault(token, len(vocab))
    hf = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    hf.pre_tokenizer = _native_pretokenizer()
    return hf


def _has_type(node: Any, type_name: str) -> bool:
    """Whether a tokenizer.json component (or any component nested in it, e.g. in a Sequence) has ``type_name``."""
    if isinstance(node, dict):
        return node.get("type") == type_name or any(_has_type(v, type_name) for v in node.values())
    if isinstance(node, list):
        return any(_has_type(v, type_name) for v in node)
    return False


def _prefix_space(node: Any) -> bool:
    """Whether a ByteLevel component inside ``node`` adds a space before the text (changing its bytes)."""
    if isinstance(node, dict):
        if node.get("type") == "ByteLevel" and node.get("add_prefix_space"):
            return True
        return any(_prefix_space(v) for v in node.values())
    if isinstance(node, list):
        return any(_prefix_space(v) for v in node)
    return False


def _external_byte_lengths(hf: Tokenizer, vocab: dict[str, int], specials: set[int]) -> tuple[np.ndarray, bool]:
    """Bytes per id (shape ``[vocab_size]``, int64; 0 for specials) and whether they are exact.

    Byte-level tokenizers: each model token is read back through the ByteLevel table (exact). Added tokens are
    matched on raw text, so they count their UTF-8 bytes. Otherwise, or for a token outside the table, the length of
    the token decoded on its own is used, which a decoder may change (e.g. a stripped leading space): approximate.
    Lengths are only exact if nothing rewrites the text first (a normalizer, or ByteLevel's add_prefix_space).
    """
    state = json.loads(hf.to_str())
    normalizer = state.get("normalizer")
    byte_level = any(_has_type(state.get(k), "ByteLevel") for k in ("pre_tokenizer", "decoder", "normalizer"))
    rewrites = ((normalizer is not None and not _only_byte_level(normalizer))
                or _prefix_space(state.get("pre_tokenizer")))
    size = max(vocab.values()) + 1
    lengths = np.zeros(size, dtype=np.int64)
    added = {idx: tok.content for idx, tok in hf.get_added_tokens_decoder().items()}
    table = char_to_byte()
    exact = byte_level and not rewrites
    approximate: list[int] = []
    for token, idx in vocab.items():
        if idx in specials:
            continue
        if idx in added:
            lengths[idx] = len(added[idx].encode("utf-8"))
        elif byte_level and all(c in table for c in token):
            lengths[idx] = len(token)  # one mapped character per byte
        else:
            approximate.append(idx)
    if approximate:
        exact = False
        decoded = hf.decode_batch([[i] for i in approximate], skip_special_tokens=True)
        lengths[approximate] = [len(s.encode("utf-8")) for s in decoded]
    return lengths, exact


def _only_byte_level(normalizer: dict) -> bool:
    """Whether a normalizer is ByteLevel (possibly inside a Sequence): it maps bytes without changing them."""
    if normalizer.get("type") == "Sequence":
        return all(_only_byte_level(n) for n in normalizer.get("normalizers", []))
    return normalizer.get("type") == "ByteLevel"


def _tokenizer_file(path: Path) -> Path:
    """``path`` itself or ``path/tokenizer.json``; DataError when neither exists."""
    if path.is_dir():
        file = path / TOKENIZER_FILE
        if not file.is_file():
            raise DataError(f"{path}: no {TOKENIZER_FILE} in this directory; pass a tokenizer.json or a directory "
                            "with one")
        return file
    if not path.is_file():  # a pipe is not "no such file": it exists, and reading it would wait for a writer
        what = "not a regular file (a pipe or device)" if path.exists() else "no such file"
        raise DataError(f"{path}: {what}; pass the path of a tokenizer.json or a directory with one")
    return path


def _read_sidecar(path: Path) -> dict:
    """The sidecar's metadata, or ``{}`` when there is none; DataError when it is unreadable."""
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: unreadable tokenizer metadata ({_one_line(err)}); delete it and its directory to "
                        "retrain") from None
    if not isinstance(meta, dict) or meta.get("kind") not in (NATIVE, EXTERNAL):
        raise DataError(f"{path}: not aunet tokenizer metadata (no valid 'kind'); delete it and its directory to "
                        "retrain")
    if int(meta.get("version", 0)) > FORMAT_VERSION:
        raise DataError(f"{path}: written by a newer aunet (format {meta.get('version')}); upgrade aunet or retrain")
    return meta


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text[:200] + ("..." if len(text) > 200 else "")


# --------------------------------------------------------------------------------------------------------------
# Cache and statistics


def cache_key(corpus_fingerprint: str, vocab_size: int, max_bytes: int | None) -> str:
    """sha256 (hex) naming a cached tokenizer: the corpus, the vocabulary size, the byte budget, the file format."""
    payload = json.dumps({"corpus": corpus_fingerprint, "vocab_size": vocab_size, "max_bytes": max_bytes,
                          "format": FORMAT_VERSION}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def cached_tokenizer(cache_dir: Path, corpus_fingerprint: str, vocab_size: int,
                     documents: Callable[[], Iterable[bytes]], max_bytes: int | None = None) -> BPETokenizer:
    """The native tokenizer for this corpus and size from ``cache_dir/bpe/<key>/``, trained and saved on a miss.

    ``documents`` is called only on a miss. The tokenizer is saved into a temporary directory that is then renamed
    into place, so a concurrent or interrupted run never sees a half-written tokenizer; when two runs race, the
    first rename wins and the other loads its result.
    """
    root = Path(cache_dir) / "bpe"
    final = root / cache_key(corpus_fingerprint, vocab_size, max_bytes)
    if final.is_dir():
        return BPETokenizer.load(final)
    tokenizer = BPETokenizer.train(documents(), vocab_size, max_bytes=max_bytes)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        tokenizer.save(tmp)
        try:
            os.replace(tmp, final)
        except OSError:
            if not final.is_dir():  # not a lost race: a real failure
                raise
            # Another run finished first; use its tokenizer (same key, same training) and drop ours.
            return BPETokenizer.load(final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return BPETokenizer.load(final)


def bytes_per_token(tokenizer: BPETokenizer, documents: Iterable[bytes], batch_size: int = 64) -> float:
    """Total bytes of ``documents`` over the total number of tokens they encode to (no specials).

    Documents are encoded ``batch_size`` at a time, so a large corpus is never held in memory at once.
    """
    total_bytes = total_tokens = 0
    batch: list[bytes] = []

    def flush() -> None:
        nonlocal total_tokens
        total_tokens += sum(len(ids) for ids in tokenizer.encode_batch(batch))
        batch.clear()

    for doc in documents:
        data = doc.encode("utf-8") if isinstance(doc, str) else bytes(doc)
        total_bytes += len(data)
        batch.append(data)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    if total_tokens == 0:
        raise DataError("bytes_per_token: the documents encode to no tokens; pass at least one non-empty document")
    return total_bytes / total_tokens
