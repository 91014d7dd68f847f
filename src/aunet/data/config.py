"""The ``data`` section of a run config: where the text comes from and how it is split, tokenized and packed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from aunet.errors import ConfigError, excerpt

STREAMS = ("packed", "streamed")
LEGACY_STREAM = "streamed"  # what a run config written before data.stream existed was trained on
MAX_PACK_PROCESSES = 256


@dataclass
class DataConfig:
    """Where the text comes from and how it is split, tokenized and packed.

    Attributes:
        corpus: a named corpus under the data directory (``aunet data list``), a path, a glob, or a list of them.
        text_field: field holding the text in jsonl/parquet corpora.
        split: ``hash`` (by document) or ``tail`` (last bytes of each document); default: the corpus's own (``tail``
            for a corpus of one document, ``hash`` for other paths).
        val_fraction: share of documents (hash) or bytes (tail) held out for validation.
        val_documents: explicit validation documents by name (e.g. ``[pg11, pg84]``); overrides ``val_fraction``.
        val_bytes: validation text used for bits per byte (the first ``val_bytes`` bytes of the validation split).
        stream: how training windows reach the model. ``packed`` (the default): the training split is encoded once
            into shards (:mod:`aunet.data.packer`, cached and shared by every run of the corpus, split and tokenizer)
            and each epoch reads every window once in a seeded order, each rank and DataLoader worker only its own
            share (:mod:`aunet.data.packed`). ``streamed``: documents are encoded inside the training loop and mixed
            in a shuffle buffer (``shuffle_buffer``, ``interleave_bytes``); the stream of every run before packing
            existed, kept so their studies can be extended on the data they were trained on.
        pack_processes: processes that encode when a pack is built (default: every core); not part of the run.
        shuffle_buffer: ``streamed`` only: packed sequences mixed in a seeded buffer (neighbouring windows of a book
            are correlated).
        interleave_bytes: ``streamed`` only: cut training documents into pieces of about this many bytes and draw
            them from a pool of ``interleave_pool`` open documents (:mod:`aunet.data.interleave`), so that a short
            run samples the whole corpus instead of the few documents its seed puts first; None: one document after
            another.
        interleave_pool: documents open at once when interleaving.
        num_workers: DataLoader worker processes (they read the pack's windows; for the streamed data, levels and
            BPE encoding run there).
        tokenizer: BPE only: a ``tokenizer.json`` to use; default: train a byte-level BPE of ``model.vocab_size``
            on the training split (cached by corpus fingerprint and size).
        tokenizer_train_bytes: at most this many training bytes go into BPE training.
    """

    corpus: Union[str, list[str]] = "gutenberg_en"
    text_field: str = "text"
    split: Union[str, None] = None
    val_fraction: float = 0.05
    val_documents: list[str] = field(default_factory=list)
    val_bytes: int = 262_144
    stream: str = "packed"
    pack_processes: Union[int, None] = None
    shuffle_buffer: int = 1024
    interleave_bytes: Union[int, None] = None
    interleave_pool: int = 64
    num_workers: int = 1
    tokenizer: Union[str, None] = None
    tokenizer_train_bytes: int = 64_000_000

    def validate(self) -> None:
        if self.stream not in STREAMS:
            raise ConfigError("data.stream", f"expected {' or '.join(STREAMS)}, got {excerpt(self.stream)}")
        if self.stream == "packed" and self.interleave_bytes is not None:
            raise ConfigError("data.interleave_bytes", "only for data.stream: streamed (the packed stream already "
                                                       "draws its windows from the whole corpus in a seeded order); "
                                                       "remove it or set data.stream: streamed")
        if self.pack_processes is not None and not 1 <= self.pack_processes <= MAX_PACK_PROCESSES:
            raise ConfigError("data.pack_processes", f"must lie in 1..{MAX_PACK_PROCESSES} (or null: every core), "
                                                     f"got {self.pack_processes}")
        if self.split not in (None, "hash", "tail"):
            raise ConfigError("data.split", f"expected hash or tail, got {excerpt(self.split)}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError("data.val_fraction", f"must lie strictly between 0 and 1, got {self.val_fraction}")
        for key in ("val_bytes", "shuffle_buffer", "tokenizer_train_bytes", "interleave_pool"):
            if getattr(self, key) < 1:
                raise ConfigError(f"data.{key}", "must be a positive integer")
        if self.interleave_bytes is not None and self.interleave_bytes < 1024:
            raise ConfigError("data.interleave_bytes", "must be at least 1024 (or null: no interleaving)")
        if self.num_workers < 0:
            raise ConfigError("data.num_workers", "must be 0 or more")
