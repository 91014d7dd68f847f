"""The packed training stream: micro-batches of windows of a pack, each rank and DataLoader worker reading only its
own, resumable at any micro-batch in constant time.

Positions: the stream is the endless concatenation of epochs; epoch ``e`` visits all ``N`` windows of the pack in
the seeded order :func:`aunet.data.permutation.permute` gives for ``(seed, e)``. Global micro-batch ``g`` is positions
``[g*B, (g+1)*B)`` (``B`` windows per micro-batch; a micro-batch may straddle two epochs, so no window is dropped or
repeated within an epoch). Micro-batch ``g`` belongs to rank ``g mod W``, whose ``j``-th micro-batch is therefore
``g = j*W + r``; a rank's micro-batches are dealt to its DataLoader workers round-robin, the order in which the
DataLoader collects them. Every reader computes the windows of its own micro-batches directly: nothing is generated
and thrown away, whatever the world size, the number of workers or the micro-batch a run resumes at.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from aunet.data.permutation import permute, round_keys
from aunet.data.shards import Pack


def window_indices(global_batch: int, micro_batch: int, n_windows: int, seed: int,
                   keys_cache: dict[int, np.ndarray] | None = None) -> np.ndarray:
    """The pack windows of global micro-batch ``global_batch``: int64 ``[micro_batch]``."""
    positions = global_batch * micro_batch + np.arange(micro_batch, dtype=np.int64)
    epochs, offsets = np.divmod(positions, n_windows)
    out = np.empty(micro_batch, dtype=np.int64)
    for epoch in np.unique(epochs):
        keys = None if keys_cache is None else keys_cache.get(int(epoch))
        if keys is None:
            keys = round_keys(seed, int(epoch))
            if keys_cache is not None:
                keys_cache.clear()  # one epoch at a time (two while a micro-batch straddles them)
                keys_cache[int(epoch)] = keys
        here = epochs == epoch
        out[here] = permute(offsets[here], n_windows, keys)
    return out


class PackedBatches(IterableDataset):
    """This rank's micro-batches of a pack from its micro-batch ``start`` on, as ``{"tokens": [B, S+1] int32,
    "levels": [B, S+1] uint8 (AU-Net)}``, and ``"window": [B] int64`` (the pack windows read) with ``with_windows``.
    Each tensor of a batch costs a DataLoader worker a shared-memory segment (about a millisecond): the window
    indices are only sent when a check asks for them.

    Args:
        pack: the pack (opened in each worker on first read).
        seq_len: units per window minus one (the model's sequence length).
        micro_batch: windows per micro-batch.
        seed: orders the windows of every epoch.
        top_level: the level forced at position 0 of every window (AU-Net), or None.
        start: micro-batches of this rank already trained (a resume).
        rank, world_size: this process's share of the global stream.
        with_windows: add the window indices to every batch.
    """

    def __init__(self, pack: Pack, seq_len: int, micro_batch: int, seed: int, top_level: int | None,
                 start: int = 0, rank: int = 0, world_size: int = 1, with_windows: bool = False) -> None:
        super().__init__()
        self.with_windows = with_windows
        self.pack, self.seq_len, self.micro_batch, self.seed, self.top_level = pack, seq_len, micro_batch, seed, \
            top_level
        self.start, self.rank, self.world_size = start, rank, world_size
        self.n_windows = pack.n_windows(seq_len)
        if self.n_windows < 1:
            raise ValueError(f"the pack holds {pack.n_units} units, fewer than one window of {seq_len + 1}")

    def global_batch(self, local: int) -> int:
        """The global micro-batch index of this rank's ``local``-th micro-batch."""
        return local * self.world_size + self.rank

    def batch(self, local: int, keys_cache: dict[int, np.ndarray] | None = None) -> dict[str, torch.Tensor]:
        """This rank's ``local``-th micro-batch."""
        windows = window_indices(self.global_batch(local), self.micro_batch, self.n_windows, self.seed, keys_cache)
        tokens, levels = self.pack.windows(windows, self.seq_len, self.top_level)
        out = {"tokens": torch.from_numpy(tokens)}
        if self.with_windows:
            out["window"] = torch.from_numpy(windows)
        if levels is not None:
            out["levels"] = torch.from_numpy(levels)
        return out

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        n_workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        keys_cache: dict[int, np.ndarray] = {}
        for local in itertools.count(self.start + worker, n_workers):
            yield self.batch(local, keys_cache)
