"""The data of one run, without Lightning: corpus and split, the family's encoder (and BPE tokenizer), the training
stream and the validation set, and the fingerprint that says which data a checkpoint was trained on.

Training wraps it in a thin LightningDataModule (:class:`aunet.training.datamodule.CorpusDataModule`); planning,
benchmarks and the analysis's reference levels use it directly.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from aunet.data.bpe import BPETokenizer, cached_tokenizer
from aunet.data.config import DataConfig
from aunet.data.corpus import CorpusSource, suffix_of
from aunet.data.interleave import interleave
from aunet.data.packed import PackedBatches
from aunet.data.packer import build_pack, find_pack
from aunet.data.packing import PAD, DocumentEncoder, TrainBatches, ValidationSet, training_windows, validation_set
from aunet.data.registry import CORPORA, resolve_corpus
from aunet.data.shards import FORMAT as PACK_FORMAT
from aunet.data.shards import Pack
from aunet.data.split import CorpusSplit, SplitSpec, default_split
from aunet.errors import DataError
from aunet.formatting import plural
from aunet.models import ModelConfig, family_of
from aunet.paths import cache_dir


def corpus_split(data: DataConfig) -> tuple[CorpusSource, SplitSpec, CorpusSplit]:
    """The corpus of ``data`` (a named corpus keeps its own text field), its split spec and the split."""
    source, default_method = resolve_corpus(data.corpus)
    if not (isinstance(data.corpus, str) and data.corpus in CORPORA):
        source.text_field = data.text_field
    spec = SplitSpec(method=data.split or default_split(source, default_method), val_fraction=data.val_fraction,
                     val_documents=list(data.val_documents))
    return source, spec, CorpusSplit(source, spec)


def training_documents(data: DataConfig) -> list[bytes]:
    """The documents of the training split, in their unshuffled order."""
    return [doc.data for doc in corpus_split(data)[2].train_documents(epoch=0, seed=0)]


class _TrainDocuments:
    """``epoch -> document bytes`` of the training split (a class, so DataLoader workers can pickle it), interleaved
    in pieces when ``piece_bytes`` is set (:mod:`aunet.data.interleave`)."""

    def __init__(self, split: CorpusSplit, seed: int, piece_bytes: int | None = None, pool: int = 64) -> None:
        self.split, self.seed, self.piece_bytes, self.pool = split, seed, piece_bytes, pool

    def __call__(self, epoch: int) -> Iterator[bytes]:
        documents = (doc.data for doc in self.split.train_documents(epoch=epoch, seed=self.seed))
        if self.piece_bytes is None:
            return documents
        return interleave(documents, self.piece_bytes, self.pool, np.random.default_rng([self.seed, epoch, 11]))


class _Windows:
    def __init__(self, documents: _TrainDocuments, encoder: DocumentEncoder, seq_len: int, seed: int, buffer: int):
        self.documents, self.encoder, self.seq_len, self.seed, self.buffer = documents, encoder, seq_len, seed, buffer

    def __call__(self) -> Iterator:
        return training_windows(self.documents, self.encoder, self.seq_len, self.seed, self.buffer)


class ValidationWindows(Dataset):
    """The validation set as a map-style dataset of ``{"tokens": [S+1], "levels": [S+1]}`` items."""

    def __init__(self, data: ValidationSet) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = {"tokens": torch.from_numpy(self.data.tokens[i])}
        if self.data.levels is not None:
            item["levels"] = torch.from_numpy(self.data.levels[i])
        return item


class DataPipeline:
    """Data for one run: :meth:`prepare` (once, rank 0: check the split, train or load the tokenizer, build the
    pack), then :meth:`setup` (every process: encoder, the validation set, a length check, the pack). Measuring and
    scoring need only :meth:`prepare_tokenizer` and :meth:`setup_validation`.

    Args:
        data: the run's data section.
        model: its model config (the family decides the encoder; ``seq_len`` the windows).
        seed: the training seed (data order).
        tokenizer_dir: where a trained tokenizer is copied (the run folder), or None.
    """

    def __init__(self, data: DataConfig, model: ModelConfig, seed: int, tokenizer_dir: Path | None = None) -> None:
        self.config, self.model_config, self.seed, self.tokenizer_dir = data, model, seed, tokenizer_dir
        self.source, self.spec, self.split = corpus_split(data)
        self.family = family_of(model)
        self.seq_len = model.seq_len
        self.tokenizer: BPETokenizer | None = None
        self.encoder: DocumentEncoder | None = None
        self.val_set: ValidationSet | None = None
        self.pack: Pack | None = None
        self.pack_built = False  # whether this pipeline built its pack (else it found it)
        self._prepared = False
        self._trainable = False

    # --- tokenizer -------------------------------------------------------------------------------------------------

    def _tokenizer(self) -> BPETokenizer:
        d, model = self.config, self.model_config
        if d.tokenizer:
            tok = BPETokenizer.load(Path(d.tokenizer))
        else:
            tok = cached_tokenizer(
                cache_dir(), self.source.fingerprint() + json.dumps(self.spec.__dict__, sort_keys=True),
                model.vocab_size, lambda: (doc.data for doc in self.split.train_documents(epoch=0, seed=0)),
                max_bytes=d.tokenizer_train_bytes,
            )
        if tok.vocab_size > model.vocab_size:
            raise DataError(f"tokenizer has {tok.vocab_size} tokens but model.vocab_size is {model.vocab_size}; set "
                            "model.vocab_size to at least the tokenizer's size")
        return tok

    def _keep_tokenizer(self) -> BPETokenizer:
        self.tokenizer = self._tokenizer()
        return self.tokenizer

    def prepare_tokenizer(self) -> None:
        """Check the split and train or load the tokenizer into the cache (once)."""
        if self._prepared:
            return
        self._prepared = True
        self.split.check()
        d = self.config
        if d.split is None and self.spec.method == "tail" and not (isinstance(d.corpus, str) and d.corpus in CORPORA):
            # Chosen for the user (a path's default is hash): say so, once, naming the file (as given) and the share
            # held out.
            where = self.source.paths[0] if len(self.source.paths) == 1 else self.source.files()[0]
            print(f"{where}: one document, so its last {d.val_fraction * 100:g}% of bytes is the "
                  "validation split (set data.split or data.val_fraction to choose)", file=sys.stderr)
        if self.family.needs_tokenizer:
            self._tokenizer()

    def prepare(self, progress: bool = True) -> None:
        """Everything a run needs built once (rank 0, before the others set up, so they find it): the split
        checked, the tokenizer, and the pack of a packed stream (built with a progress bar when missing)."""
        self.prepare_tokenizer()
        if self.packed:
            self._encoder()
            self._check_training_length()  # a corpus too short to train on is refused before it is packed
            self.ensure_pack(progress)

    def setup_validation(self) -> None:
        """The encoder (with the tokenizer) and the validation set (once): what scoring and measuring need."""
        if self.val_set is None:
            docs = (doc.data for doc in self.split.val_documents())
            self.val_set = validation_set(docs, self._encoder(), self.seq_len, self.config.val_bytes)

    def setup(self) -> None:
        """What a run needs in every process: the validation set, a check that one sequence fits, and the pack of
        a packed stream (once)."""
        self.setup_validation()
        if not self._trainable:
            self._check_training_length()
            if self.packed:
                self._check_pack_length(self.ensure_pack())
            self._trainable = True

    def _encoder(self) -> DocumentEncoder:
        if self.encoder is None:
            self.encoder = self.family.encoder(self._keep_tokenizer)
        return self.encoder

    # --- the packed stream -----------------------------------------------------------------------------------------

    @property
    def packed(self) -> bool:
        return self.config.stream == "packed"

    def pack_identity(self) -> dict[str, Any]:
        """What the pack of this run's training split holds: corpus content, split, and the encoder's identity (the
        BPE tokenizer's fingerprint, or the AU-Net's split rules). Runs that agree on these share one pack."""
        return {"corpus": self.source.fingerprint(), "split": dict(self.spec.__dict__),
                "encoder": self._encoder().identity()}

    def find_pack(self) -> Pack | None:
        """The pack of this run's data if it was built (BPE: trains or loads the tokenizer to name it)."""
        return find_pack(cache_dir(), self.pack_identity())

    def ensure_pack(self, progress: bool = True) -> Pack:
        """The pack of this run's training split, built on first use (every core, cached, atomic; see
        :mod:`aunet.data.packer`) with a line saying what was packed; found and opened otherwise."""
        if self.pack is not None:
            return self.pack
        files = self.source.files()
        plain = all(suffix_of(f) in (".txt", ".jsonl") for f in files)  # file sizes are text sizes
        label = f"packing {self.corpus_label()} for {self.family.unit}s ({self.encoder_label()})"
        pack, built = build_pack(
            cache_dir(), self.pack_identity(),
            lambda: (doc.data for doc in self.split.train_documents(epoch=0, seed=0)), self._encoder(),
            processes=self.config.pack_processes, total_bytes=sum(f.stat().st_size for f in files) if plain else None,
            label=label, progress=progress)
        self.pack_built = built
        if built:
            m = pack.meta
            rate = m.text_bytes / 1e6 / max(m.seconds, 1e-9)
            print(f"{label}: {plural(m.n_documents, 'document')}, {m.text_bytes / 1e6:.1f} MB -> {m.n_units:,} units "
                  f"in {m.seconds:.1f} s ({rate:.1f} MB/s, {m.processes} process{'es' if m.processes > 1 else ''}): "
                  f"{pack.folder}", file=sys.stderr)
        self.pack = pack
        return pack

    def corpus_label(self) -> str:
        corpus = self.config.corpus
        return corpus if isinstance(corpus, str) else "+".join(map(str, corpus))

    def encoder_label(self) -> str:
        identity = self._encoder().identity()
        if identity.get("units") == "tokens":
            return f"tokenizer {identity['tokenizer'][:10]}"
        return f"split rules {', '.join(identity['rules'])}" if identity.get("rules") else "no levels"

    def _check_pack_length(self, pack: Pack) -> None:
        if pack.n_windows(self.seq_len) < 1:
            self._too_short(pack.n_units)

    def _check_training_length(self) -> None:
        """The training split must fill one sequence. Checked here, in the main process, as soon as the encoder
        exists: the training stream finds out only inside a DataLoader worker, whose traceback would be what the
        user sees. Reads documents until one sequence is filled (a prefix of each is enough)."""
        assert self.encoder is not None
        need = self.seq_len + 1
        prefix = need * 16  # bytes: a token is rarely longer than a few bytes
        have = 0
        for doc in self.split.train_documents(epoch=0, seed=self.seed):
            have += len(self.encoder.encode(doc.data[:prefix])[0])
            if have >= need:
                return
        self._too_short(have)

    def _too_short(self, have: int) -> None:
        where = self.source.paths[0] if len(self.source.paths) == 1 else self.source.root()
        raise DataError(f"{where}: the training split holds {have} {self.family.unit}s (with document markers), "
                        f"fewer than one sequence of {self.seq_len + 1}; use a larger corpus or a shorter sequence "
                        "(model.caps[0] or model.seq_len)")

    def save_tokenizer(self) -> None:
        """Copy the trained tokenizer into ``tokenizer_dir`` (nothing for bytes). The run calls it on rank 0 once
        the data is known to be usable and the folder is its own: a run refused for its data, its checkpoint or its
        lock leaves nothing in the folder."""
        if self.tokenizer is not None and self.tokenizer_dir is not None:
            self.tokenizer.save(self.tokenizer_dir)

    # --- facts the module and the records need ---------------------------------------------------------------------

    @property
    def token_bytes(self) -> list[int]:
        assert self.encoder is not None
        return self.encoder.token_bytes().tolist()

    @property
    def val_text_bytes(self) -> int:
        assert self.val_set is not None
        return self.val_set.text_bytes

    def bytes_per_token(self) -> float:
        """UTF-8 bytes per text token on the validation text (1.0 for bytes): converts token counts to bytes."""
        assert self.val_set is not None and self.encoder is not None
        tokens = self.val_set.tokens[:, 1:].ravel()
        lengths = self.encoder.token_bytes()
        n_text = int((lengths[np.clip(tokens, 0, None)][tokens != PAD] > 0).sum())
        return self.val_set.text_bytes / max(1, n_text)

    def fingerprint(self) -> dict[str, Any]:
        """What the data of this run is: corpus content, split, tokenizer, and the stream's format (absent for the
        streamed data, so runs from before packing keep their fingerprints). Loads (or trains) the tokenizer, not
        the pack."""
        self._encoder()
        parts = {"corpus": self.source.fingerprint(), "split": dict(self.spec.__dict__),
                 "tokenizer": self.tokenizer.fingerprint() if self.tokenizer is not None else "bytes"}
        if self.packed:
            parts["stream"] = PACK_FORMAT
        parts["sha256"] = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
        return parts

    # --- datasets --------------------------------------------------------------------------------------------------

    def train_batches(self, micro_batch: int, start: int = 0, rank: int = 0, world_size: int = 1
                      ) -> PackedBatches | TrainBatches:
        """This rank's micro-batches of the training stream, from micro-batch ``start`` on (a resume): read from the
        pack (:class:`~aunet.data.packed.PackedBatches`: each rank and worker reads only its own windows, a resume
        costs what a start costs), or encoded on the fly for the streamed data (:class:`TrainBatches`)."""
        assert self.encoder is not None
        if self.packed:
            return PackedBatches(self.ensure_pack(), self.seq_len, micro_batch, self.seed, self.encoder.top_level,
                                 start=start, rank=rank, world_size=world_size)
        data = self.config
        documents = _TrainDocuments(self.split, self.seed, data.interleave_bytes, data.interleave_pool)
        windows = _Windows(documents, self.encoder, self.seq_len, self.seed, data.shuffle_buffer)
        return TrainBatches(windows, micro_batch, start=start, rank=rank, world_size=world_size)

    def validation_windows(self, rank: int = 0, world_size: int = 1) -> ValidationWindows:
        assert self.val_set is not None
        return ValidationWindows(self.val_set.shard(rank, world_size))


def measured_bytes_per_token(data: DataConfig, model: ModelConfig, seed: int = 0) -> float:
    """Bytes per token of ``model``'s tokenizer for ``data`` (trained, or found in the cache), measured on the
    validation text."""
    pipeline = DataPipeline(data, model, seed)
    pipeline.prepare_tokenizer()
    pipeline.setup_validation()
    return pipeline.bytes_per_token()
