"""A deterministic train/validation split by document, streamed.

``method: hash`` puts a document in validation when a salted hash of its key falls below ``val_fraction`` (or when
it is listed in ``val_documents``): whole documents (books) are held out, and adding documents never moves old ones.
``method: tail`` is for corpora of one or a few documents (Tiny Shakespeare): the last ``val_fraction`` of every
document's bytes is validation, cut at a UTF-8 character boundary. It is the default of a corpus of one document
(:func:`default_split`): a hash split would put that document on one side and leave the other empty.

Default salt: with the first salt, ``aunet-split-v1``, none of the 34 books of ``gutenberg_en`` hashed below 5%, so
the default validation side was empty. ``aunet-split-v2`` (the next version, not searched further) holds out
``pg16.txt`` (Peter Pan) and ``pg33.txt`` (The Scarlet Letter), 2.8% of the corpus's bytes.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Iterator

import numpy as np

from aunet.data.corpus import SUFFIXES, CorpusSource, Document, suffix_of
from aunet.errors import ConfigError, DataError, excerpt

METHODS = ("hash", "tail")
DEFAULT_SALT = "aunet-split-v2"


@dataclass
class SplitSpec:
    """How to split a corpus (the ``data:`` keys ``split``, ``val_fraction``, ``val_documents``, ``split_salt``).

    ``val_documents`` lists keys that are validation (``method: hash`` only); an entry matches a document's full key,
    its file's relative path, file name, or file name without suffix (``pg11`` matches ``pg11.txt`` and every row of
    ``pg11.jsonl``). When non-empty, exactly the listed documents are validation and ``val_fraction`` is ignored.
    """

    method: str = "hash"
    val_fraction: float = 0.05
    val_documents: list[str] = field(default_factory=list)
    salt: str = DEFAULT_SALT

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError("data.split",
                              f"unknown split method {excerpt(self.method)}; use one of {', '.join(METHODS)}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError("data.val_fraction", f"{self.val_fraction} is outside [0, 1); use e.g. 0.05")


def is_one_document(source: CorpusSource) -> bool:
    """Whether the corpus is a single document: one ``.txt`` file (not read), or one jsonl/parquet file of one row
    (at most two rows read)."""
    files = source.files()
    if len(files) != 1:
        return False
    return suffix_of(files[0]) == ".txt" or sum(1 for _ in itertools.islice(source.documents(), 2)) == 1


def default_split(source: CorpusSource, corpus_default: str) -> str:
    """The split of a corpus whose config sets none: ``tail`` for a single document, else the corpus's own default
    (``hash`` for paths). Decided by the corpus alone, so it is deterministic; the data fingerprint records it."""
    if corpus_default == "hash" and is_one_document(source):
        return "tail"
    return corpus_default


def _key_names(key: str) -> set[str]:
    """The names a ``val_documents`` entry may use for ``key``: full key, file path, file name, name sans suffix."""
    file_part = key
    head, sep, row = key.rpartition(":")
    if sep and row.isdigit():  # "relpath:ROW" of a row-based file
        file_part = head
    name = PurePosixPath(file_part).name
    names = {key, file_part, name}
    for suffix in SUFFIXES:
        if name.lower().endswith(suffix):
            names.add(name[: -len(suffix)])
    return names


def hash_fraction(key: str, salt: str) -> float:
    """A uniform number in [0, 1) fixed by ``salt + key`` (big-endian 64-bit blake2b)."""
    digest = hashlib.blake2b((salt + key).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def is_validation_key(key: str, spec: SplitSpec) -> bool:
    """Whether the document ``key`` is on the validation side of a hash split.

    Each key is decided on its own (no ranking among documents), so adding documents never moves old ones.
    """
    if spec.val_documents:
        return not _key_names(key).isdisjoint(spec.val_documents)
    return hash_fraction(key, spec.salt) < spec.val_fraction


def tail_cut(data: bytes, val_fraction: float) -> int:
    """The byte offset where the validation tail of ``data`` starts, moved forward to a UTF-8 character start."""
    cut = len(data) - int(len(data) * val_fraction)
    while cut < len(data) and 0x80 <= data[cut] <= 0xBF:  # continuation byte: inside a multi-byte character
        cut += 1
    return cut


class CorpusSplit:
    """The train and validation sides of a corpus, both streamed."""

    def __init__(self, source: CorpusSource, spec: SplitSpec) -> None:
        self.source = source
        self.spec = spec

    def train_documents(self, epoch: int = 0, seed: int = 0) -> Iterator[Document]:
        """Training documents; file order shuffled by ``(seed, epoch)``, rows within a file kept in order.

        Shuffling files, not rows, keeps reading sequential (rows of a jsonl/parquet file are read in one pass).
        """
        files = self.source.files()
        order = np.random.default_rng([seed, epoch]).permutation(len(files))
        for doc in self.source.documents([files[i] for i in order]):
            if self.spec.method == "tail":
                cut = tail_cut(doc.data, self.spec.val_fraction)
                if cut:
                    yield Document(doc.key + "#train", doc.data[:cut])
            elif not is_validation_key(doc.key, self.spec):
                yield doc

    def val_documents(self) -> Iterator[Document]:
        """Validation documents in ``files()`` order, never shuffled (so every evaluation sees the same bytes)."""
        for doc in self.source.documents():
            if self.spec.method == "tail":
                cut = tail_cut(doc.data, self.spec.val_fraction)
                if cut < len(doc.data):
                    yield Document(doc.key + "#val", doc.data[cut:])
            elif is_validation_key(doc.key, self.spec):
                yield doc

    def check(self) -> None:
        """Raise DataError when either side has no byte; streams and stops as soon as both sides are seen."""
        spec = self.spec
        seen_train = seen_val = False
        for doc in self.source.documents():
            if not doc.data:
                continue
            if spec.method == "tail":
                cut = tail_cut(doc.data, spec.val_fraction)
                seen_train = seen_train or cut > 0
                seen_val = seen_val or cut < len(doc.data)
            elif is_validation_key(doc.key, spec):
                seen_val = True
            else:
                seen_train = True
            if seen_train and seen_val:
                return
        files = self.source.files()
        where = files[0] if len(files) == 1 else self.source.root(files)  # name the file of a one-file corpus
        if not seen_val:
            if spec.method == "tail":
                fix = "raise data.val_fraction (each document's tail is shorter than one character)"
            elif spec.val_documents:
                fix = f"no key matches data.val_documents {spec.val_documents}; list keys such as file names"
            else:
                fix = "raise data.val_fraction, list data.val_documents, or use data.split: tail"
            raise DataError(f"{where}: no validation document; {fix}")
        if spec.method == "tail":
            fix = "lower data.val_fraction"
        elif spec.val_documents:
            fix = "data.val_documents lists every document; list fewer"
        else:
            fix = "lower data.val_fraction or add documents"
        raise DataError(f"{where}: no training document; {fix}")
