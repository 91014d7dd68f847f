"""The packed stream over real ranks (gloo on CPU): two ranks with two DataLoader workers each read every window of an
epoch exactly once. Kept apart from the training tests so the spawned ranks import only torch and aunet.data."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DataLoader

from aunet.data.packed import PackedBatches
from aunet.data.packer import build_pack
from aunet.data.shards import Pack
from aunet.tokenizers.encoders import ByteEncoder

SEQ, MICRO_BATCH, WORLD = 16, 3, 2


def _read_share(rank: int, pack: Pack, batches: int, init_file: str, out: str) -> None:
    """One rank: its micro-batches through a DataLoader with two workers, gathered on rank 0 over gloo."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    dataset = PackedBatches(pack, SEQ, MICRO_BATCH, seed=3, top_level=1, rank=rank, world_size=WORLD,
                            with_windows=True)
    loader = DataLoader(dataset, batch_size=None, num_workers=2)
    windows = torch.stack([b["window"] for b in itertools.islice(iter(loader), batches)])  # [batches, MICRO_BATCH]
    gathered = [torch.zeros_like(windows) for _ in range(WORLD)]
    dist.all_gather(gathered, windows)
    if rank == 0:
        torch.save(torch.stack(gathered), out)  # [WORLD, batches, MICRO_BATCH]
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_with_two_workers_read_every_window_of_an_epoch_once(tmp_path):
    text = (b"Packed windows are read by index, each rank and worker its own share. " * 40)
    docs = [text[i:] for i in range(0, 400, 37)]
    pack, _ = build_pack(tmp_path / "cache", {"test": "ddp"}, lambda: iter(docs), ByteEncoder(["word@1"]),
                         progress=False)
    n = pack.n_windows(SEQ)
    batches = -(-n // (MICRO_BATCH * WORLD)) + 1  # past the end of the first epoch on every rank
    out = tmp_path / "windows.pt"
    # spawn, not fork: forking a process whose OpenMP pool has run (earlier tests) can deadlock the children
    mp.spawn(_read_share, args=(pack, batches, str(tmp_path / "init"), str(out)), nprocs=WORLD, join=True)
    gathered = torch.load(out, weights_only=True)
    # Global micro-batch g is rank g % WORLD's (g // WORLD)-th: interleave the ranks back into the global order.
    order = gathered.permute(1, 0, 2).reshape(-1)
    assert sorted(order[:n].tolist()) == list(range(n)), "a window of epoch 0 was read twice or never"
