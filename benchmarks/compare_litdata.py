"""aunet's packed format against litdata's, side by side in one process, over the same token stream.

For the 1e19-rung presets (``ladder/bpe-1e19``, ``ladder/aunet2-1e19``) on a corpus (default ``gutenberg_en``), the
pack that ``aunet data pack PRESET`` built is read once; its token stream is then:

- **ours**: read through :class:`aunet.data.packed.PackedBatches` (windows of ``seq_len + 1`` units with stride
  ``seq_len``, a seeded Feistel permutation of the windows per epoch, micro-batch ``g`` to rank ``g mod W``);
- **litdata**: written with ``litdata.optimize`` into chunks for ``litdata.TokensLoader(block_size=seq_len + 1)``
  (one item per block of ``seq_len + 1`` units, so no chunk holds a partial block) and read through
  ``litdata.StreamingDataset(shuffle=True)`` / ``litdata.StreamingDataLoader(batch_size=4)``. AU-Net units carry a
  level: they are stored as one uint16 per unit, ``token | level << 9`` (byte ids with BOS/EOS need 9 bits, the levels
  of a 2- or 3-stage AU-Net 1 or 2 more), and split back in the loader's collate function (in the worker), which
  also sets position 0 of every window to the top level, as ours does. BPE ids (75k vocabulary) stay uint32.

Measured:

a. **Writing**: the token stream (already encoded), written ``--write-copies`` times over (4: a 25 MB pack is
   written in a fraction of a second, which process start-up would dominate) into each format: ours with
   ``ShardWriter`` (one process, fsync), litdata with ``optimize`` (1 and 2 worker processes). Encoding text is the
   same code for both formats (our encoders), so the pack build time of ``meta.json`` (encode + write, all cores)
   is printed beside it for scale. Best of ``--repeats``.
b. **Feed per rank**: units/s delivered to rank 3 of a simulated world of 8 or 64 (rank 0 of 1), 1 and 4 DataLoader
   workers, micro-batch 4, over ``--batches`` batches after the first (worker start-up excluded), and the CPU
   seconds this process and its loader workers spent per million units meanwhile (``/proc/PID/stat``: less moved
   by other work on a shared machine than the wall clock). Best of ``--repeats`` rounds, the two formats alternating
   in each. The world is simulated in one process:
   litdata takes its world from ``litdata.utilities.env._DistributedEnv.detect()`` (``torch.distributed`` when it is
   initialised, else a world of 1), called by ``StreamingDataset.__init__``, its cache and reader, and
   ``StreamingDataLoader.load_state_dict``; the script replaces that classmethod for the duration of a measurement
   (DataLoader workers are forked, so they inherit it). Ours takes ``rank`` and ``world_size`` as arguments.
   litdata's epochs end (ours is one endless stream): a measurement that needs more batches than a rank's epoch
   re-iterates the loader (persistent workers), which is what a training loop over a litdata loader does.
c. **Resume**: seconds from nothing to the first micro-batch of rank 3 of 8 when it resumes at its micro-batch
   1e3, 1e5, 1e6 (and 0), in the main process (``num_workers=0``), best of 3. litdata: the state dict is made by
   litdata's own ``StreamingDataLoader.state_dict()`` after setting the loader's counters to that position (epoch and
   samples yielded in it: ``current_epoch``, ``_num_samples_yielded_streaming``, ``_latest_worker_idx``, and the
   dataset's epoch); at micro-batch 10 the script checks that this state equals the one saved after really iterating
   10 batches, and that the batch after resuming equals the 11th batch of an uninterrupted loader. Then
   ``load_state_dict`` on a fresh dataset and loader, and ``next(iter(loader))`` is timed. Ours: ``PackedBatches
   (start=...)``.
d. **Coverage**: whether every window is read once per epoch across the ranks. litdata: the windows its shuffler
   assigns to every (rank, worker) of an epoch (``shuffler.get_chunks_and_intervals_per_workers``), counted against
   the blocks in the dataset, and how many of the blocks dropped in epoch 1 are dropped again in epoch 2; at world
   size 8 also every rank really iterated (0 workers), each block it returned identified by its content and its
   levels compared with the pack's, and the share of micro-batches whose windows all lie in one chunk's span of the
   stream (litdata reads a micro-batch from one chunk; ours draws every window from the whole pack). Ours: the
   windows of the first ``N`` positions of the global stream (``N`` windows: one epoch, whatever the world size).

Run with a Python environment that has litdata installed (it is not an aunet dependency; this one keeps it out of
the project's environment, with the CPU build of torch)::

    python3 -m venv /tmp/litvenv
    /tmp/litvenv/bin/pip install torch==2.13.0+cpu   # the CPU wheel first, so nothing pulls a CUDA build
    /tmp/litvenv/bin/pip install --no-deps litdata   # its torchvision dependency is only for images
    /tmp/litvenv/bin/pip install lightning-utilities filelock numpy boto3 requests urllib3 tifffile obstore \\
        regex pyyaml tqdm tokenizers pyarrow
    AUNET_DATA_DIR=/work/shared/data AUNET_CACHE_DIR=$PWD/cache PYTHONPATH=src \\
        /tmp/litvenv/bin/python benchmarks/compare_litdata.py [--corpus gutenberg_en] [--json OUT.json]

The packs must exist (``aunet data pack ladder/bpe-1e19`` and ``ladder/aunet2-1e19`` on the corpus). Timings are
best-of-N on a shared machine: compare the two formats within one run, not across runs.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("LITDATA_DISABLE_VERSION_CHECK", "1")  # no PyPI request at StreamingDataset()
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

try:
    import litdata  # noqa: E402
    from litdata import StreamingDataLoader, StreamingDataset, TokensLoader, optimize  # noqa: E402
    from litdata.utilities.env import _DistributedEnv, _WorkerEnv  # noqa: E402
except ImportError:  # pragma: no cover - the message is the point
    sys.exit("litdata is not installed in this environment: pip install litdata (see this file's docstring)")

from aunet.bench.data import _pipeline  # noqa: E402
from aunet.data.packed import PackedBatches, window_indices  # noqa: E402
from aunet.data.shards import Pack, PackMeta, ShardWriter, write_meta  # noqa: E402

PRESETS = {"bpe": "ladder/bpe-1e19", "aunet2": "ladder/aunet2-1e19"}
MICRO_BATCH = 4
WORLDS = (1, 8, 64)
WORKERS = (1, 4)
RESUMES = (0, 1_000, 100_000, 1_000_000)
RESUME_RANK, RESUME_WORLD = 3, 8
LEVEL_SHIFT = 9  # AU-Net units: byte ids 0..257 need 9 bits
BLOCKS_PER_SLAB = 64  # optimize inputs: 64 blocks each; one item per block


# --- the simulated world -------------------------------------------------------------------------------------------

@contextlib.contextmanager
def simulated_world(world: int, rank: int):
    """litdata sees a world of ``world`` processes and is rank ``rank`` in it (see the module docstring)."""
    original = _DistributedEnv.__dict__["detect"]
    _DistributedEnv.detect = classmethod(lambda cls: cls(world_size=world, global_rank=rank, num_nodes=1))
    try:
        yield
    finally:
        _DistributedEnv.detect = original


# --- writing -------------------------------------------------------------------------------------------------------

def _litdata_blocks(span: tuple[int, int], pack: Pack, block: int) -> Any:
    """optimize's function: blocks ``[first, first + count)`` of ``block`` units of the pack's stream, one item each
    (uint16 ``token | level << 9`` for AU-Net, the token dtype otherwise)."""
    first, count = span
    tokens, levels = pack.read(first * block, count * block)
    if levels is not None:
        units = (tokens.astype(np.uint16) | (levels.astype(np.uint16) << LEVEL_SHIFT)).astype(np.uint16)
    else:
        units = tokens.astype(np.dtype(pack.meta.token_dtype))
    for i in range(count):
        yield units[i * block:(i + 1) * block]


def write_litdata(pack: Pack, block: int, out: Path, workers: int, chunk_blocks: int, copies: int) -> float:
    """Write the pack's stream (its whole blocks of ``block`` units), ``copies`` times over, with
    ``litdata.optimize``; seconds taken."""
    if pack.meta.has_levels:
        tokens, levels = pack.read(0, min(pack.n_units, 1 << 20))
        assert int(tokens.max()) < (1 << LEVEL_SHIFT) and int(levels.max()) < (1 << (16 - LEVEL_SHIFT))
    n_blocks = pack.n_units // block
    spans = [(s, min(BLOCKS_PER_SLAB, n_blocks - s)) for s in range(0, n_blocks, BLOCKS_PER_SLAB)] * copies
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
        optimize(fn=functools.partial(_litdata_blocks, pack=pack, block=block), inputs=spans, output_dir=str(out),
                 chunk_size=chunk_blocks * block, item_loader=TokensLoader(), num_workers=workers,
                 mode="overwrite", verbose=False, start_method="fork")
    return time.perf_counter() - start


def write_ours(pack: Pack, out: Path, copies: int) -> float:
    """Write the pack's stream, ``copies`` times over, into a new pack folder with our ShardWriter (what
    ``build_pack`` does after encoding); seconds taken."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    start = time.perf_counter()
    writer = ShardWriter(out, np.dtype(pack.meta.token_dtype), pack.meta.has_levels)
    slab = BLOCKS_PER_SLAB * 8192
    for _ in range(copies):
        for first in range(0, pack.n_units, slab):
            tokens, levels = pack.read(first, min(slab, pack.n_units - first))
            writer.append(tokens, levels)
    writer.close_files()
    meta = PackMeta(key="copy", identity={}, token_dtype=pack.meta.token_dtype, has_levels=pack.meta.has_levels,
                    n_units=pack.n_units * copies, shards=writer.shards)
    write_meta(out, meta)
    return time.perf_counter() - start


# --- reading -------------------------------------------------------------------------------------------------------

class Decode:
    """litdata collate function: items (numpy ``[S+1]``) to ours' batch layout, ``tokens`` int32 ``[B, S+1]`` (and
    ``levels`` uint8 ``[B, S+1]``, position 0 at the top level)."""

    def __init__(self, has_levels: bool, top_level: int | None) -> None:
        self.has_levels, self.top_level = has_levels, top_level

    def __call__(self, items: list[np.ndarray]) -> dict[str, torch.Tensor]:
        units = np.stack(items)
        if not self.has_levels:
            return {"tokens": torch.from_numpy(units.astype(np.int32))}
        tokens = (units & ((1 << LEVEL_SHIFT) - 1)).astype(np.int32)
        levels = (units >> LEVEL_SHIFT).astype(np.uint8)
        levels[:, 0] = self.top_level
        return {"tokens": torch.from_numpy(tokens), "levels": torch.from_numpy(levels)}


class Family:
    """One preset's pack, its litdata copy and the makers of both readers."""

    def __init__(self, name: str, preset: str, corpus: str, tmp: Path, chunk_blocks: int) -> None:
        pipeline = _pipeline(preset, corpus, "packed")
        pack = pipeline.find_pack()
        if pack is None:
            sys.exit(f"no pack of {preset} on {corpus} under $AUNET_CACHE_DIR: run `aunet data pack {preset}`")
        self.name, self.preset, self.pack, self.seq = name, preset, pack, pipeline.seq_len
        self.block = self.seq + 1
        self.top_level = pipeline.encoder.top_level
        self.lit_dir = tmp / f"{name}-litdata"
        self.chunk_blocks = chunk_blocks
        self.decode = Decode(pack.meta.has_levels, self.top_level)

    def ours(self, rank: int, world: int, start: int = 0, with_windows: bool = False) -> PackedBatches:
        return PackedBatches(self.pack, self.seq, MICRO_BATCH, seed=0, top_level=self.top_level, start=start,
                             rank=rank, world_size=world, with_windows=with_windows)

    def lit_dataset(self) -> StreamingDataset:
        """Made inside :func:`simulated_world`, as a rank of a real world would."""
        return StreamingDataset(str(self.lit_dir), item_loader=TokensLoader(block_size=self.block), shuffle=True,
                                seed=0)

    def lit_loader(self, dataset: StreamingDataset, workers: int) -> StreamingDataLoader:
        return StreamingDataLoader(dataset, batch_size=MICRO_BATCH, num_workers=workers, collate_fn=self.decode,
                                   persistent_workers=workers > 0, prefetch_factor=4 if workers else None)

    def lit_blocks(self) -> int:
        return self.pack.n_units // self.block


def _units(batch: dict[str, torch.Tensor]) -> int:
    return batch["tokens"].shape[0] * (batch["tokens"].shape[1] - 1)


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(iterator: Any) -> float:
    """CPU seconds (user + system) of this process and of the DataLoader worker processes of ``iterator`` so far."""
    total = time.process_time()
    for worker in getattr(iterator, "_workers", []):
        with open(f"/proc/{worker.pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime
    return total


def _timed(it: Any, iterator: Any, batches: int) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, units per batch) of ``batches`` micro-batches of ``it`` after its first."""
    units = _units(next(it))
    iterator = iterator() if callable(iterator) else iterator
    cpu, start = _cpu_seconds(iterator), time.perf_counter()
    for _ in range(batches):
        next(it)
    return time.perf_counter() - start, _cpu_seconds(iterator) - cpu, units


def ours_feed(dataset: PackedBatches, workers: int, batches: int) -> tuple[float, float]:
    """(units/s, CPU seconds per million units) delivered by a DataLoader over ``dataset``."""
    loader = DataLoader(dataset, batch_size=None, num_workers=workers, prefetch_factor=4 if workers else None)
    it = iter(loader)
    wall, cpu, units = _timed(it, it, batches)
    del it
    return units * batches / wall, cpu / (units * batches) * 1e6


def lit_feed(fam: Family, world: int, rank: int, workers: int, batches: int) -> tuple[float, float, int]:
    """(units/s, CPU seconds per million units, micro-batches in this rank's epoch)."""
    with simulated_world(world, rank):
        loader = fam.lit_loader(fam.lit_dataset(), workers)
        per_epoch = len(loader)

        def endless():
            while True:
                yield from loader

        it = endless()
        wall, cpu, units = _timed(it, lambda: loader._iterator, batches)  # persistent workers: one iterator
        it.close()
        _shutdown(loader)
    return units * batches / wall, cpu / (units * batches) * 1e6, per_epoch


def _shutdown(loader: DataLoader) -> None:
    """Stop a loader's persistent workers now (left to the garbage collector, a later fork inherits the iterator
    and its finaliser fails there)."""
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()
    loader._iterator = None


# --- resume --------------------------------------------------------------------------------------------------------

def lit_state_at(fam: Family, local: int, batches_per_epoch: int) -> dict[str, Any]:
    """litdata's own state dict of rank ``RESUME_RANK`` of ``RESUME_WORLD`` (0 workers) after ``local`` micro-batches.

    litdata's epochs count from 1; a state saved at the end of an epoch (all its samples yielded) resumes with the
    next epoch, one saved with none yielded would replay nothing of the epoch it names and skip to the one after it,
    so a position on an epoch boundary is the end of the epoch before."""
    epoch, within = divmod(local, batches_per_epoch)
    epoch += 1
    if within == 0 and local > 0:
        epoch, within = epoch - 1, batches_per_epoch
    loader = fam.lit_loader(fam.lit_dataset(), 0)
    loader.current_epoch = epoch
    loader.dataset.set_epoch(epoch)
    loader._num_samples_yielded_streaming = within * MICRO_BATCH
    loader._latest_worker_idx = 0
    return loader.state_dict()


def lit_resume_first_batch(fam: Family, state: dict[str, Any] | None) -> dict[str, torch.Tensor]:
    loader = fam.lit_loader(fam.lit_dataset(), 0)
    if state is not None:
        loader.load_state_dict(state)
    return next(iter(loader))


def check_lit_resume(fam: Family, batches_per_epoch: int, at: int = 10) -> str:
    """Compare the constructed state with the one saved after ``at`` real batches, and the batch after resuming with
    the next batch of an uninterrupted loader. Returns 'ok' or what differs."""
    with simulated_world(RESUME_WORLD, RESUME_RANK):
        loader = fam.lit_loader(fam.lit_dataset(), 0)
        it = iter(loader)
        for _ in range(at):
            next(it)
        saved = loader.state_dict()
        saved = json.loads(json.dumps(saved, default=str))
        expected_next = next(it)
        del it
        made = json.loads(json.dumps(lit_state_at(fam, at, batches_per_epoch), default=str))
        diff = sorted(k for k in set(saved["dataset"]) | set(made["dataset"])
                      if saved["dataset"].get(k) != made["dataset"].get(k))
        diff += sorted(k for k in ("current_epoch", "num_samples_yielded", "latest_worker_idx")
                       if saved.get(k) != made.get(k))
        got = lit_resume_first_batch(fam, made)
    same = torch.equal(got["tokens"], expected_next["tokens"])
    if diff or not same:
        return f"differs: state keys {diff}, next batch {'equal' if same else 'NOT equal'}"
    return "ok"


def ours_resume_first_batch(fam: Family, local: int) -> dict[str, torch.Tensor]:
    dataset = fam.ours(RESUME_RANK, RESUME_WORLD, local)
    return next(iter(DataLoader(dataset, batch_size=None, num_workers=0)))


def best_first_batch(make, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        make()
        best = min(best, time.perf_counter() - start)
    return best


# --- coverage ------------------------------------------------------------------------------------------------------

def _lit_plan(fam: Family, world: int, workers: int, epoch: int) -> tuple[list[int], int, str]:
    """The blocks litdata's shuffler assigns over all (rank, worker) of ``epoch``, the blocks in the dataset, and the
    shuffler's class."""
    items: list[int] = []
    with simulated_world(world, 0):
        ds = fam.lit_dataset()
        fam.lit_loader(ds, 0)  # sets the dataset's batch size, as a real loader does
        cache = ds._create_cache(worker_env=_WorkerEnv(world_size=workers, rank=0))
        shuffler = ds._create_shuffler(cache)
        _, intervals = shuffler.get_chunks_and_intervals_per_workers(ds.distributed_env, workers, MICRO_BATCH, epoch)
        total = sum(iv[2] - iv[1] for iv in cache.get_chunk_intervals())
    for worker_intervals in intervals:
        for iv in worker_intervals:
            items.extend(range(iv[1], iv[2]))
    return items, total, type(shuffler).__name__


def lit_plan_coverage(fam: Family, world: int, workers: int) -> dict[str, Any]:
    """Blocks litdata reads in epoch 1 over all (rank, worker), against the blocks in the dataset; and how many of
    the blocks it drops in epoch 1 it drops again in epoch 2."""
    items, total, shuffler = _lit_plan(fam, world, workers, 1)
    unique = set(items)
    items2, _, _ = _lit_plan(fam, world, workers, 2)
    dropped1, dropped2 = set(range(total)) - unique, set(range(total)) - set(items2)
    return {"blocks": total, "read": len(items), "unique": len(unique), "dropped": total - len(unique),
            "repeated": len(items) - len(unique), "dropped_again_epoch_2": len(dropped1 & dropped2),
            "shuffler": shuffler}


def _region_spread(offsets: np.ndarray, region_units: int) -> float:
    """Share of micro-batches (rows of ``offsets``, the windows' first units) whose windows all lie in one region of
    ``region_units`` units of the stream (one litdata chunk)."""
    regions = offsets // region_units
    return float(np.mean(np.all(regions == regions[:, :1], axis=1)))


def lit_iterated_coverage(fam: Family, world: int) -> dict[str, Any]:
    """Every rank of a simulated world iterated for one epoch (0 workers); blocks identified by content, their
    levels checked against the pack; and the share of micro-batches whose windows all come from one chunk's span of
    the stream, against ours over the same number of micro-batches."""
    stream_blocks = fam.lit_blocks()
    ids: dict[bytes, int] = {}
    for k in range(0, stream_blocks, BLOCKS_PER_SLAB):
        n = min(BLOCKS_PER_SLAB, stream_blocks - k)
        tokens, _ = fam.pack.read(k * fam.block, n * fam.block)
        for i in range(n):
            key = hashlib.blake2b(tokens[i * fam.block:(i + 1) * fam.block].astype(np.int32).tobytes(),
                                  digest_size=16).digest()
            ids.setdefault(key, k + i)
    seen: list[int] = []
    per_batch: list[list[int]] = []
    level_mismatch = 0
    for rank in range(world):
        with simulated_world(world, rank):
            for batch in fam.lit_loader(fam.lit_dataset(), 0):
                rows = []
                for r, row in enumerate(batch["tokens"]):
                    block = ids.get(hashlib.blake2b(row.numpy().astype(np.int32).tobytes(), digest_size=16).digest(),
                                    -1)
                    rows.append(block)
                    if block >= 0 and "levels" in batch:
                        _, levels = fam.pack.read(block * fam.block, fam.block)
                        levels[0] = fam.top_level
                        level_mismatch += int(not np.array_equal(levels, batch["levels"][r].numpy()))
                seen.extend(rows)
                per_batch.append(rows)
    unique = len(set(seen) - {-1})
    chunk_units = fam.chunk_blocks * fam.block
    lit_offsets = np.array([[b * fam.block for b in rows] for rows in per_batch if -1 not in rows])
    n = fam.pack.n_windows(fam.seq)
    ours_offsets = np.stack([window_indices(g, MICRO_BATCH, n, 0) for g in range(len(per_batch))]) * fam.seq
    return {"blocks": stream_blocks, "read": len(seen), "unique": unique, "dropped": stream_blocks - unique,
            "repeated": len(seen) - unique - seen.count(-1), "unknown": seen.count(-1),
            "level_mismatches": level_mismatch, "one_chunk_batches_litdata": _region_spread(lit_offsets, chunk_units),
            "one_chunk_batches_ours": _region_spread(ours_offsets, chunk_units)}


def ours_coverage(fam: Family, world: int) -> dict[str, int]:
    """Our windows of positions ``[0, N)`` (one epoch of the global stream), and the steps the ranks take to read
    them: after ``ceil(N / (W * B))`` micro-batches per rank, the ranks have read every window of epoch 0 once and
    the first ``steps * W * B - N`` windows of epoch 1."""
    n = fam.pack.n_windows(fam.seq)
    batches = -(-n // MICRO_BATCH)
    windows = np.concatenate([window_indices(g, MICRO_BATCH, n, 0) for g in range(batches)])[:n]
    unique = len(np.unique(windows))
    steps = -(-n // (world * MICRO_BATCH))
    return {"blocks": n, "read": n, "unique": unique, "dropped": n - unique, "repeated": n - unique,
            "steps_per_rank": steps, "into_next_epoch": steps * world * MICRO_BATCH - n}


# --- the run -------------------------------------------------------------------------------------------------------

def run_family(fam: Family, batches: int, repeats: int, copies: int, log) -> dict[str, Any]:
    row: dict[str, Any] = {"preset": fam.preset, "seq_len": fam.seq, "units": fam.pack.n_units,
                           "text_mb": fam.pack.meta.text_bytes / 1e6, "token_dtype": fam.pack.meta.token_dtype,
                           "has_levels": fam.pack.meta.has_levels, "chunk_blocks": fam.chunk_blocks}
    meta = fam.pack.meta
    row["pack_build"] = {"seconds": meta.seconds, "processes": meta.processes,
                         "text_mb_per_s": meta.text_bytes / 1e6 / meta.seconds}

    # a. writing
    log(f"{fam.name}: writing")
    tmp_ours = fam.lit_dir.parent / f"{fam.name}-ours"
    ours_s = min(write_ours(fam.pack, tmp_ours, copies) for _ in range(repeats))
    ours_bytes = sum(f.stat().st_size for f in tmp_ours.glob("*.bin"))
    shutil.rmtree(tmp_ours, ignore_errors=True)
    lit = {}
    for workers in (1, 2):
        lit[workers] = min(write_litdata(fam.pack, fam.block, fam.lit_dir, workers, fam.chunk_blocks, copies)
                           for _ in range(repeats))
    lit_bytes = sum(f.stat().st_size for f in fam.lit_dir.glob("*.bin"))
    lit_units = fam.lit_blocks() * fam.block * copies
    write_litdata(fam.pack, fam.block, fam.lit_dir, 1, fam.chunk_blocks, 1)  # the dataset read below: one copy
    row["write_copies"] = copies
    row["write"] = {"ours": {"seconds": ours_s, "units": fam.pack.n_units * copies, "bytes": ours_bytes,
                             "processes": 1},
                    **{f"litdata_{w}": {"seconds": s, "units": lit_units, "bytes": lit_bytes, "processes": w}
                       for w, s in lit.items()}}
    row["lit_chunks"] = len(list(fam.lit_dir.glob("*.bin")))

    # b. feed per rank
    row["feed"] = {}
    for world in WORLDS:
        rank = min(3, world - 1)
        for workers in WORKERS:
            log(f"{fam.name}: feed, world {world}, {workers} workers")
            ours_rate = lit_rate = 0.0
            ours_cpu = lit_cpu = float("inf")
            for _ in range(repeats):  # alternating, best of each: load from other work only ever slows a round
                rate, cpu = ours_feed(fam.ours(rank, world), workers, batches)
                ours_rate, ours_cpu = max(ours_rate, rate), min(ours_cpu, cpu)
                rate, cpu, per_epoch = lit_feed(fam, world, rank, workers, batches)
                lit_rate, lit_cpu = max(lit_rate, rate), min(lit_cpu, cpu)
            row["feed"][f"{world}x{workers}"] = {"ours": ours_rate, "litdata": lit_rate, "ours_cpu_s_per_m": ours_cpu,
                                                 "litdata_cpu_s_per_m": lit_cpu,
                                                 "litdata_batches_per_epoch": per_epoch}

    # c. resume
    log(f"{fam.name}: resume")
    with simulated_world(RESUME_WORLD, RESUME_RANK):
        per_epoch = len(fam.lit_loader(fam.lit_dataset(), 0))
    row["resume_check"] = check_lit_resume(fam, per_epoch)
    row["resume"] = {}
    for local in RESUMES:
        with simulated_world(RESUME_WORLD, RESUME_RANK):
            state = lit_state_at(fam, local, per_epoch) if local else None
            lit_s = best_first_batch(functools.partial(lit_resume_first_batch, fam, state), repeats)
        ours_s = best_first_batch(functools.partial(ours_resume_first_batch, fam, local), repeats)
        row["resume"][str(local)] = {"ours": ours_s, "litdata": lit_s,
                                     "litdata_epoch": None if state is None else state["current_epoch"]}

    # d. coverage
    log(f"{fam.name}: coverage")
    row["coverage"] = {f"{world}x{workers}": {"ours": ours_coverage(fam, world),
                                              "litdata": lit_plan_coverage(fam, world, workers)}
                       for world in WORLDS for workers in WORKERS}
    row["coverage_iterated_8"] = lit_iterated_coverage(fam, 8)
    return row


def table(r: dict[str, Any]) -> str:
    lines = [f"litdata {r['litdata']}, torch {r['torch']}, numpy {r['numpy']}; corpus {r['corpus']}, micro-batch "
             f"{MICRO_BATCH}; {r['machine']}; load average at start {r['load_start']}, at end {r['load_end']}; "
             f"{r['seconds']:.0f} s", ""]
    for name, row in r["families"].items():
        unit = "tokens" if name == "bpe" else "bytes"
        w = row["write"]
        lines += [f"### {name} (`{row['preset']}`): {row['units']:,} {unit} ({row['token_dtype']}"
                  f"{' + uint8 levels' if row['has_levels'] else ''}), {row['text_mb']:.1f} MB of text, windows of "
                  f"{row['seq_len'] + 1}; litdata: {row['lit_chunks']} chunks of {row['chunk_blocks']} blocks", "",
                  f"writing the encoded stream, {row['write_copies']} times over (best of {r['repeats']})", "",
                  "| writer | processes | seconds | M units/s | text-equivalent MB/s |",
                  "|---|---|---|---|---|"]
        for key, label in (("ours", "ours (ShardWriter, fsync)"), ("litdata_1", "litdata optimize"),
                           ("litdata_2", "litdata optimize")):
            v = w[key]
            frac = v["units"] / row["units"]  # text the units written stand for
            lines.append(f"| {label} | {v['processes']} | {v['seconds']:.2f} | {v['units'] / v['seconds'] / 1e6:.1f} | "
                         f"{row['text_mb'] * frac / v['seconds']:.0f} |")
        b = row["pack_build"]
        lines += [f"| (pack build from text once, encode + write, meta.json) | {b['processes']} | "
                  f"{b['seconds']:.2f} | {row['units'] / b['seconds'] / 1e6:.1f} | {b['text_mb_per_s']:.1f} |", "",
                  f"units/s to one rank, {r['batches']} micro-batches after the first, best of {r['repeats']} "
                  "alternating rounds", "",
                  f"| world | rank | loader workers | ours {unit}/s | litdata {unit}/s | litdata / ours | "
                  f"ours CPU s per M {unit} | litdata CPU s per M {unit} | litdata micro-batches per rank-epoch |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for key, v in row["feed"].items():
            world, workers = key.split("x")
            lines.append(f"| {world} | {min(3, int(world) - 1)} | {workers} | {v['ours']:,.0f} | {v['litdata']:,.0f} | "
                         f"{v['litdata'] / v['ours']:.2f} | {v['ours_cpu_s_per_m']:.3f} | "
                         f"{v['litdata_cpu_s_per_m']:.3f} | {v['litdata_batches_per_epoch']} |")
        lines += ["", f"first micro-batch after resuming, rank {RESUME_RANK} of {RESUME_WORLD}, in process (best of "
                  f"{r['repeats']}); litdata resume check at micro-batch 10: {row['resume_check']}", "",
                  "| resume at micro-batch | ours s | litdata s | litdata epoch |", "|---|---|---|---|"]
        for key, v in row["resume"].items():
            lines.append(f"| {int(key):,} | {v['ours']:.4f} | {v['litdata']:.4f} | {v['litdata_epoch'] or 1} |")
        lines += ["", "windows read in one epoch, all ranks together (ours: positions [0, N) of the global stream; "
                  "litdata: its shuffler's plan for epoch 1)", "",
                  "| world | workers | ours windows | ours dropped / repeated | litdata blocks | litdata read | "
                  "litdata dropped / repeated | of those dropped again in epoch 2 | litdata shuffler |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for key, v in row["coverage"].items():
            world, workers = key.split("x")
            o, li = v["ours"], v["litdata"]
            lines.append(f"| {world} | {workers} | {o['blocks']:,} | {o['dropped']} / {o['repeated']} | "
                         f"{li['blocks']:,} | {li['read']:,} | {li['dropped']} / {li['repeated']} | "
                         f"{li['dropped_again_epoch_2']} | {li['shuffler']} |")
        it = row["coverage_iterated_8"]
        lines += ["", f"litdata, all 8 ranks iterated for an epoch (0 workers): {it['read']:,} of {it['blocks']:,} "
                  f"blocks read, {it['dropped']} dropped, {it['repeated']} repeated, {it['unknown']} unidentified, "
                  f"{it['level_mismatches']} with levels unlike the pack's; micro-batches whose {MICRO_BATCH} windows "
                  f"all lie in one chunk's span of the stream ({row['chunk_blocks']} blocks): litdata "
                  f"{it['one_chunk_batches_litdata']:.0%}, ours {it['one_chunk_batches_ours']:.0%}", ""]
    return "\n".join(lines)


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default="gutenberg_en")
    parser.add_argument("--batches", type=int, default=100, help="micro-batches timed per feed measurement")
    parser.add_argument("--repeats", type=int, default=3, help="best of N for writing and resume timings")
    parser.add_argument("--chunk-blocks", type=int, default=64, help="litdata chunk size, in blocks of seq_len + 1")
    parser.add_argument("--write-copies", type=int, default=4,
                        help="write the stream this many times over (startup costs less of the rate)")
    parser.add_argument("--families", default="bpe,aunet2")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    out: dict[str, Any] = {"litdata": litdata.__version__, "torch": torch.__version__, "numpy": np.__version__,
                           "corpus": args.corpus, "repeats": args.repeats, "batches": args.batches,
                           "load_start": _load(),
                           "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
                           "families": {}}

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {msg}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="compare-litdata-") as tmp:
        for name in args.families.split(","):
            fam = Family(name, PRESETS[name], args.corpus, Path(tmp), args.chunk_blocks)
            out["families"][name] = run_family(fam, args.batches, args.repeats, args.write_copies, log)
    out["load_end"] = _load()
    out["seconds"] = time.perf_counter() - started
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str))
    print(table(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
