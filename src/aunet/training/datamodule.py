"""The LightningDataModule of a run: corpus, split, tokenizer, training stream and validation set."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from aunet.data.bpe import BPETokenizer, cached_tokenizer
from aunet.data.interleave import interleave
from aunet.data.packing import (
    PAD,
    ByteEncoder,
    DocumentEncoder,
    TokenizerEncoder,
    TrainBatches,
    ValidationSet,
    training_windows,
    validation_set,
)
from aunet.data.registry import CORPORA, resolve_corpus
from aunet.data.split import CorpusSplit, SplitSpec
from aunet.errors import DataError
from aunet.models import AUNetConfig, BPEConfig
from aunet.training.config import RunConfig


def cache_dir() -> Path:
    """Where trained tokenizers are cached: ``AUNET_CACHE_DIR``, else ``./cache`` (never the read-only data dir)."""
    return Path(os.environ.get("AUNET_CACHE_DIR", "cache")).expanduser()


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


class _ValidationWindows(Dataset):
    def __init__(self, data: ValidationSet) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = {"tokens": torch.from_numpy(self.data.tokens[i])}
        if self.data.levels is not None:
            item["levels"] = torch.from_numpy(self.data.levels[i])
        return item


class CorpusDataModule(L.LightningDataModule):
    """Data for one run.

    Args:
        run: the run config (model, data, train sections are read).
        micro_batch: sequences per device per forward pass.
        tokenizer_dir: where the BPE tokenizer of this run is copied (the run folder), or None.
    """

    def __init__(self, run: RunConfig, micro_batch: int, tokenizer_dir: Path | None = None) -> None:
        super().__init__()
        self.run, self.micro_batch, self.tokenizer_dir = run, micro_batch, tokenizer_dir
        d = run.data
        source, default_method = resolve_corpus(d.corpus)
        if not (isinstance(d.corpus, str) and d.corpus in CORPORA):
            source.text_field = d.text_field
        self.source = source
        self.spec = SplitSpec(method=d.split or default_method, val_fraction=d.val_fraction,
                              val_documents=list(d.val_documents))
        self.split = CorpusSplit(source, self.spec)
        self.model_config = run.model
        self.seq_len = run.model.seq_len
        self.tokenizer: BPETokenizer | None = None
        self.encoder: DocumentEncoder | None = None
        self.val_set: ValidationSet | None = None
        self._prepared = False

    # --- tokenizer -------------------------------------------------------------------------------------------------

    def _tokenizer(self) -> BPETokenizer:
        d, model = self.run.data, self.model_config
        assert isinstance(model, BPEConfig)
        if d.tokenizer:
            tok = BPETokenizer.load(Path(d.tokenizer))
        else:
            tok = cached_tokenizer(
                cache_dir(), self.source.fingerprint() + json.dumps(self.spec.__dict__, sort_keys=True),
                model.vocab_size, lambda: (doc.data for doc in self.split.train_documents(epoch=0, seed=0)),
                max_bytes=d.tokenizer_train_bytes,
            )
        if tok.vocab_size > model.vocab_size:
            raise DataError(
                f"tokenizer has {tok.vocab_size} tokens but model.vocab_size is {model.vocab_size}; "
                "set model.vocab_size to at least the tokenizer's size"
            )
        return tok

    def prepare_data(self) -> None:
        """Rank 0 only: check the split and train or load the BPE tokenizer into the cache."""
        if self._prepared:
            return
        self._prepared = True
        self.split.check()
        if isinstance(self.model_config, BPEConfig):
            self._tokenizer()

    def setup(self, stage: str | None = None) -> None:
        if self.encoder is not None:
            return
        if isinstance(self.model_config, AUNetConfig):
            self.encoder = ByteEncoder(self.model_config.splits)
        else:
            self.tokenizer = self._tokenizer()
            self.encoder = TokenizerEncoder(self.tokenizer)
        self._check_training_length()
        docs = (doc.data for doc in self.split.val_documents())
        self.val_set = validation_set(docs, self.encoder, self.seq_len, self.run.data.val_bytes)

    def _check_training_length(self) -> None:
        """The training split must fill one sequence. Checked here, in the main process, as soon as the encoder
        exists: the training stream finds out only inside a DataLoader worker, whose traceback would be what the
        user sees. Reads documents until one sequence is filled (a prefix of each is enough)."""
        assert self.encoder is not None
        need = self.seq_len + 1
        prefix = need * 16  # bytes: a token is rarely longer than a few bytes
        have = 0
        for doc in self.split.train_documents(epoch=0, seed=self.run.train.seed):
            have += len(self.encoder.encode(doc.data[:prefix])[0])
            if have >= need:
                return
        where = self.source.paths[0] if len(self.source.paths) == 1 else self.source.root()
        unit = "bytes" if isinstance(self.model_config, AUNetConfig) else "tokens"
        raise DataError(f"{where}: the training split holds {have} {unit} (with document markers), fewer than one "
                        f"sequence of {need}; use a larger corpus or a shorter sequence (model.caps[0] or "
                        "model.seq_len)")

    def save_tokenizer(self) -> None:
        """Copy the BPE tokenizer into ``tokenizer_dir`` (nothing for bytes). The run calls it on rank 0 once the
        data is known to be usable and the folder is its own: a run refused for its data, its checkpoint or its
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
        """What the data of this run is: corpus content, split, and tokenizer."""
        parts = {"corpus": self.source.fingerprint(), "split": dict(self.spec.__dict__),
                 "tokenizer": self.tokenizer.fingerprint() if self.tokenizer is not None else "bytes"}
        parts["sha256"] = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
        return parts

    # --- loaders ---------------------------------------------------------------------------------------------------

    def _rank_world(self) -> tuple[int, int]:
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    def train_dataloader(self) -> DataLoader:
        assert self.encoder is not None
        rank, world = self._rank_world()
        start = getattr(self.trainer.lightning_module, "micro_batches_trained", 0) if self.trainer else 0
        seed = self.run.train.seed
        data = self.run.data
        documents = _TrainDocuments(self.split, seed, data.interleave_bytes, data.interleave_pool)
        windows = _Windows(documents, self.encoder, self.seq_len, seed, data.shuffle_buffer)
        dataset = TrainBatches(windows, self.micro_batch, start=start, rank=rank, world_size=world)
        workers = self.run.data.num_workers
        return DataLoader(dataset, batch_size=None, num_workers=workers, persistent_workers=False,
                          pin_memory=torch.cuda.is_available(), prefetch_factor=2 if workers else None)

    def val_dataloader(self) -> DataLoader:
        assert self.val_set is not None
        rank, world = self._rank_world()
        return DataLoader(_ValidationWindows(self.val_set.shard(rank, world)), batch_size=self.micro_batch,
                          shuffle=False, num_workers=0)
