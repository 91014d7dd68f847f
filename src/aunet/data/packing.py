"""Documents to fixed-length training windows, for bytes (AU-Net) and BPE tokens alike.

Each document becomes ``[BOS] + units + [EOS]``; documents are concatenated into one stream and cut into windows of
``seq_len + 1`` tokens with a stride of ``seq_len``, so every token of the stream is a prediction target exactly once
(window ``k`` holds inputs ``k*S .. k*S+S-1`` and targets one position later). For AU-Net, levels travel with the
bytes: computed once per whole document (append-stable, so identical to what generation computes on prefixes), BOS
at the top level, EOS at 0, and position 0 of every window forced to the top level (P3 in
docs/paper-conformance.md). Training windows pass through a seeded shuffle buffer; the whole stream is a
deterministic function of the corpus and the seed, so a resumed run regenerates it and skips what it has already
consumed.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from aunet.errors import DataError
from aunet.tokenizers.encoders import ByteEncoder, DocumentEncoder, TokenizerEncoder, Window

__all__ = ["PAD", "ByteEncoder", "DocumentEncoder", "TokenizerEncoder", "TrainBatches", "ValidationSet", "Window",
           "pack", "shuffle_buffer", "training_windows", "validation_set", "validation_texts"]

PAD = -1  # padding token in validation windows; never an input, never a target


def pack(encoded: Iterable[Window], window: int, top_level: int | None) -> Iterator[Window]:
    """Cut the concatenation of encoded documents into windows of ``window`` tokens, overlapping by one."""
    tok_buf = np.zeros(0, dtype=np.int64)
    lv_buf: np.ndarray | None = None
    for tokens, levels in encoded:
        tok_buf = np.concatenate([tok_buf, tokens])
        if levels is not None:
            lv_buf = levels if lv_buf is None else np.concatenate([lv_buf, levels])
        start = 0
        while len(tok_buf) - start >= window:
            toks = tok_buf[start : start + window].copy()
            lvs = None
            if lv_buf is not None:
                lvs = lv_buf[start : start + window].copy()
                lvs[0] = top_level  # every window starts with a coarse vector at every stage (P3)
            yield toks, lvs
            start += window - 1
        tok_buf = tok_buf[start:]
        if lv_buf is not None:
            lv_buf = lv_buf[start:]


def shuffle_buffer(items: Iterator[Window], size: int, rng: np.random.Generator) -> Iterator[Window]:
    """A seeded shuffle buffer of ``size`` items (1 = no shuffling)."""
    if size <= 1:
        yield from items
        return
    buffer = list(itertools.islice(items, size))
    for item in items:
        j = int(rng.integers(len(buffer)))
        yield buffer[j]
        buffer[j] = item
    order = rng.permutation(len(buffer))
    for j in order:
        yield buffer[j]


def training_windows(documents: Callable[[int], Iterable[bytes]], encoder: DocumentEncoder, seq_len: int, seed: int,
                     buffer: int) -> Iterator[Window]:
    """The endless, deterministic stream of training windows: epochs of ``documents(epoch)``, packed, shuffled.

    Raises DataError when one epoch of training text is shorter than one window.
    """

    def encoded() -> Iterator[Window]:
        for epoch in itertools.count():
            n_tokens = 0
            for data in documents(epoch):
                tokens, levels = encoder.encode(data)
                n_tokens += len(tokens)
                yield tokens, levels
            if epoch == 0 and n_tokens < seq_len + 1:
                raise DataError(f"the training split holds {n_tokens} tokens, fewer than one sequence of "
                                f"{seq_len + 1}; use a larger corpus or a shorter sequence")

    return shuffle_buffer(pack(encoded(), seq_len + 1, encoder.top_level), buffer, np.random.default_rng([seed, 7]))


@dataclass
class ValidationSet:
    """Fixed validation windows covering the first ``text_bytes`` bytes of the validation split exactly once.

    ``tokens`` ``[N, S+1]`` int64 with PAD after the end; ``levels`` ``[N, S+1]`` uint8 or None.
    """

    tokens: np.ndarray
    levels: np.ndarray | None
    text_bytes: int
    n_documents: int

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def shard(self, rank: int, world_size: int) -> "ValidationSet":
        """This rank's windows (no duplicates: every window is scored once over all ranks)."""
        lv = None if self.levels is None else self.levels[rank::world_size]
        return ValidationSet(self.tokens[rank::world_size], lv, self.text_bytes, self.n_documents)


def _cut_utf8(data: bytes, limit: int) -> bytes:
    """``data[:limit]`` moved back to a UTF-8 character start, so no character is cut in half."""
    cut = min(limit, len(data))
    while 0 < cut < len(data) and 0x80 <= data[cut] < 0xC0:
        cut -= 1
    return data[:cut]


def validation_texts(documents: Iterable[bytes], max_bytes: int) -> list[bytes]:
    """The validation text every run is scored on: the first ``max_bytes`` bytes of ``documents``, whole documents
    in order and the last one cut back to a UTF-8 character start; empty documents are dropped."""
    texts, total = [], 0
    for data in documents:
        if total >= max_bytes:
            break
        data = _cut_utf8(data, max_bytes - total)
        if data:
            total += len(data)
            texts.append(data)
    return texts


def validation_set(documents: Iterable[bytes], encoder: DocumentEncoder, seq_len: int, max_bytes: int) -> ValidationSet:
    """Pack the first ``max_bytes`` of validation text (:func:`validation_texts`) into windows; the last window is
    padded with PAD."""
    window = seq_len + 1
    texts = validation_texts(documents, max_bytes)
    encoded = [encoder.encode(data) for data in texts]
    total, n_docs = sum(len(data) for data in texts), len(texts)
    if not encoded:
        raise DataError("the validation split is empty; raise data.val_fraction or list data.val_documents")
    tokens = np.concatenate([t for t, _ in encoded])
    has_levels = encoded[0][1] is not None
    levels = np.concatenate([lv for _, lv in encoded]) if has_levels else None
    n_windows = max(1, -(-(len(tokens) - 1) // seq_len))
    padded_len = n_windows * seq_len + 1
    tok_pad = np.full(padded_len, PAD, dtype=np.int64)
    tok_pad[: len(tokens)] = tokens
    starts = np.arange(n_windows) * seq_len
    idx = starts[:, None] + np.arange(window)[None, :]
    lv_out = None
    if levels is not None:
        lv_pad = np.zeros(padded_len, dtype=np.uint8)
        lv_pad[: len(levels)] = levels
        lv_out = lv_pad[idx]
        lv_out[:, 0] = encoder.top_level
    return ValidationSet(tok_pad[idx], lv_out, total, n_docs)


class TrainBatches(IterableDataset):
    """Micro-batches of training windows for one rank, resumable at a micro-batch index.

    The global stream of micro-batches (``micro_batch`` consecutive windows each) is dealt to ranks round-robin;
    each rank's share is dealt to its DataLoader workers round-robin, which is the order in which the DataLoader
    collects them, so the batches a rank sees do not depend on the number of workers. ``start`` micro-batches of
    this rank are skipped (regenerated, not trained on) when resuming.
    """

    def __init__(self, make_windows: Callable[[], Iterator[Window]], micro_batch: int, start: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        super().__init__()
        self.make_windows, self.micro_batch = make_windows, micro_batch
        self.start, self.rank, self.world_size = start, rank, world_size

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        n_workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        windows = self.make_windows()
        for g in itertools.count():
            chunk = list(itertools.islice(windows, self.micro_batch))
            local, mine = divmod(g, self.world_size)
            if mine != self.rank or local < self.start or (local - self.start) % n_workers != worker:
                continue
            batch = {"tokens": torch.from_numpy(np.stack([t for t, _ in chunk]))}
            if chunk[0][1] is not None:
                batch["levels"] = torch.from_numpy(np.stack([lv for _, lv in chunk]))
            yield batch
