"""``aunet bench --data``: does the data stream keep every GPU fed? Measured side by side in one process.

For the 1e19-rung presets (``ladder/bpe-1e19``, ``ladder/aunet2-1e19``) on a corpus (default ``gutenberg_en``):

1. **Packing**: MB of text per second encoded into a pack with one process and with every core (fresh packs in a
   temporary cache, so nothing is found ready), of 100 MB: the corpus's training split repeated as needed.
2. **Feed per rank**: units per second delivered to one rank (rank 3, or 0 at world size 1) of simulated world sizes
   1, 8 and 64, through a DataLoader with 1 and 4 worker processes, micro-batch 4; the streamed data (encoded in the
   loop, every rank generating the whole global stream; shuffle buffer of 4) beside it at world sizes 1 and 8 in
   the main process.
3. **Resume**: seconds to the first micro-batch when a rank starts at micro-batch 0, 1e3, 1e5 and 1e6 (the streamed
   data at 0 and 100, where it regenerates what it skips).
4. **Feed against consumption**: each feed rate over what one GPU consumes at the same rung, from the recorded GPU
   check (``benchmarks/bench-gpu-check-cuda.json``: bytes/s per GPU, BPE tokens at its measured bytes per token).
"""

from __future__ import annotations

import functools
import json
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from aunet.data.config import DataConfig
from aunet.data.packed import PackedBatches
from aunet.data.packer import build_pack, default_processes
from aunet.data.pipeline import DataPipeline
from aunet.errors import UserError
from aunet.models import family_of, load_model_config

PRESETS = {"bpe": "ladder/bpe-1e19", "aunet2": "ladder/aunet2-1e19"}
GPU_CHECK = Path(__file__).resolve().parents[3] / "benchmarks" / "bench-gpu-check-cuda.json"
WORLDS = (1, 8, 64)
WORKERS = (1, 4)
RESUMES = (0, 1_000, 100_000, 1_000_000)
MICRO_BATCH = 4
ROUNDS = 3
# MB of text packed per measurement (the corpus's training split repeated as needed).
PACK_MB, PACK_MB_QUICK = 100.0, 8.0


def gpu_consumption(path: Path = GPU_CHECK) -> dict[str, Any]:
    """Units per second one GPU trains at the 1e19 rung, per family, from a recorded GPU check (None if absent)."""
    if not path.is_file():
        return {}
    check = json.loads(path.read_text())
    train = check.get("train", {})
    out = {}
    for family, preset in PRESETS.items():
        if family in train:
            # the GPU check's bytes/s of BPE assume its bytes per token: back to the tokens it trained on
            per_unit = family_of(load_model_config(preset)).bytes_per_unit(check.get("bpe_bytes_per_token", 1.0))
            out[family] = {"bytes_per_s": train[family]["bytes_per_s"],
                           "units_per_s": train[family]["bytes_per_s"] / per_unit,
                           "device": check.get("device_name"), "measured_at": check.get("measured_at")}
    return out


def _units_per_s(dataset, workers: int, batches: int) -> float:
    """Units per second a DataLoader over ``dataset`` delivers, after its first batch (worker start-up excluded)."""
    loader = DataLoader(dataset, batch_size=None, num_workers=workers, prefetch_factor=4 if workers else None)
    it = iter(loader)
    first = next(it)
    units = first["tokens"].shape[0] * (first["tokens"].shape[1] - 1)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    seconds = time.perf_counter() - start
    del it
    return units * batches / seconds


def _first_batch_s(make, repeats: int = 5) -> float:
    """Seconds from making a dataset to its first micro-batch: the best of ``repeats`` (timer and page-cache noise
    only ever add time)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        next(iter(make()))
        best = min(best, time.perf_counter() - start)
    return best


def repeated_split(split: Any, min_bytes: int) -> Iterator[bytes]:
    """The training documents of ``split`` (a :class:`~aunet.data.split.CorpusSplit`), pass after pass, each pass in
    its epoch's file order under seed 0, until at least ``min_bytes`` bytes were yielded (the last pass whole).
    Raises :class:`~aunet.errors.UserError` when a pass yields no byte (an empty training split would loop)."""
    total, epoch = 0, 0
    while total < min_bytes:
        before = total
        for doc in split.train_documents(epoch=epoch, seed=0):
            total += len(doc.data)
            yield doc.data
        if total == before:
            raise UserError("bench --data: the corpus's training split holds no text; give a corpus with training "
                            "documents")
        epoch += 1


def _pipeline(preset: str, corpus: str, stream: str, cache: Path | None = None) -> DataPipeline:
    model = load_model_config(preset)
    # A small shuffle buffer for the streamed data: its rate is then the encoding rate, not a buffer being drained.
    data = DataConfig(corpus=corpus, stream=stream, val_bytes=4096, num_workers=0, shuffle_buffer=4)
    data.validate()
    pipeline = DataPipeline(data, model, seed=0)
    pipeline.prepare_tokenizer()
    pipeline.setup_validation()
    return pipeline


def _family(preset: str, corpus: str, cores: int, batches: int, pack_mb: float) -> dict[str, Any]:
    """Packing, feed and resume of one preset's data (see the module docstring)."""
    pipeline = _pipeline(preset, corpus, "packed")
    row: dict[str, Any] = {"pack_processes": cores, "unit": pipeline.family.unit}
    encoder, seq = pipeline.encoder, pipeline.seq_len

    # The training split repeated to at least pack_mb: on the 26 MB of books, starting the packing processes (each
    # imports torch) took as long as packing with them.
    documents = functools.partial(repeated_split, pipeline.split, int(pack_mb * 1e6))

    with tempfile.TemporaryDirectory() as tmp:
        for processes in sorted({1, cores}):
            pack, _ = build_pack(Path(tmp) / f"p{processes}", pipeline.pack_identity(), documents, encoder,
                                 processes=processes, progress=False)
            row[f"pack_mb_per_s_{processes}"] = pack.meta.text_bytes / 1e6 / pack.meta.seconds
        row["text_mb"] = pack.meta.text_bytes / 1e6

        def packed(rank: int, world: int, start: int = 0) -> PackedBatches:
            return PackedBatches(pack, seq, MICRO_BATCH, seed=0, top_level=encoder.top_level, start=start, rank=rank,
                                 world_size=world)

        # Every rate is timed in ROUNDS interleaved rounds and the best kept: another process on the machine only
        # ever slows a loader, and interleaving puts the ranks compared side by side under the same load.
        feed = {f"{world}x{workers}": 0.0 for world in WORLDS for workers in WORKERS}
        for _ in range(ROUNDS):
            for key in feed:
                world, workers = map(int, key.split("x"))
                feed[key] = max(feed[key], _units_per_s(packed(min(3, world - 1), world), workers, batches))
        row["feed_units_per_s"] = feed
        row["resume_first_batch_s"] = {str(s): _first_batch_s(functools.partial(packed, 3, 8, s)) for s in RESUMES}
    streamed = _pipeline(preset, corpus, "streamed")
    row["streamed_units_per_s"] = {
        f"{world}x0": _units_per_s(streamed.train_batches(MICRO_BATCH, rank=min(3, world - 1), world_size=world), 0,
                                   max(5, batches // (4 if world > 1 else 1)))
        for world in (1, 8)}
    row["streamed_resume_first_batch_s"] = {
        str(s): _first_batch_s(functools.partial(streamed.train_batches, MICRO_BATCH, start=s), repeats=1)
        for s in (0, 100)}
    return row


def run(corpus: str = "gutenberg_en", quick: bool = False, presets: dict[str, str] | None = None,
        batches: int | None = None, pack_mb: float | None = None) -> dict[str, Any]:
    """Every measurement of the module docstring, as one JSON-ready dict (``presets``, ``batches`` and ``pack_mb``
    replace the 1e19 rung, the batches timed per rate and the MB of text packed, for tests)."""
    batches = batches or (20 if quick else 100)
    pack_mb = pack_mb if pack_mb is not None else (PACK_MB_QUICK if quick else PACK_MB)
    load = os.getloadavg()[0]  # what else ran: every rate here is a floor under load
    presets = presets or PRESETS
    out: dict[str, Any] = {"corpus": corpus, "micro_batch": MICRO_BATCH, "presets": presets,
                           "consumption": gpu_consumption() if presets == PRESETS else {}, "families": {}}
    cores = default_processes()
    for family, preset in presets.items():
        row = _family(preset, corpus, cores, batches, pack_mb)
        consumption = out["consumption"].get(family)
        if consumption:
            row["feed_over_consumption"] = {k: v / consumption["units_per_s"]
                                            for k, v in row["feed_units_per_s"].items()}
            row["streamed_feed_over_consumption"] = {k: v / consumption["units_per_s"]
                                                     for k, v in row["streamed_units_per_s"].items()}
        out["families"][family] = row
    out["machine"] = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                      "cores": cores, "threads": torch.get_num_threads(),
                      "load_average_at_start": load}
    return out


def summary(r: dict[str, Any]) -> str:
    """The data section of BENCHMARKS.md."""
    load = r.get("machine", {}).get("load_average_at_start")
    lines = [f"corpus {r['corpus']} (training split, repeated to the MB packed), micro-batch {r['micro_batch']}, "
             "presets " + ", ".join(f"{f} `{p}`" for f, p in r["presets"].items())
             + (f"; load average {load:.1f} at the start (other work on the machine lowers every rate)"
                if load is not None else ""), ""]
    lines += ["| family | text | pack MB/s, 1 process | pack MB/s, all ({n}) |".format(
        n=next(iter(r["families"].values()))["pack_processes"]), "|---|---|---|---|"]
    for family, row in r["families"].items():
        n = row["pack_processes"]
        lines.append(f"| {family} | {row['text_mb']:.1f} MB | {row['pack_mb_per_s_1']:.1f} | "
                     f"{row[f'pack_mb_per_s_{n}']:.1f} |")
    for family, row in r["families"].items():
        cons = r["consumption"].get(family)
        unit = row["unit"] + "s"
        lines += ["", f"{family}: {unit}/s delivered to one rank (rank 3 of W; 0 of 1)" + (
            f", and over one GPU's consumption ({cons['units_per_s']:,.0f} {unit}/s, {cons['device']})"
            if cons else "") + ":", "",
            "| stream | world size | loader workers | units/s | feed / consumption |", "|---|---|---|---|---|"]
        ratios = row.get("feed_over_consumption", {})
        for key, value in row["feed_units_per_s"].items():
            world, workers = key.split("x")
            ratio = f"{ratios[key]:.1f}" if key in ratios else "-"
            lines.append(f"| packed | {world} | {workers} | {value:,.0f} | {ratio} |")
        sratios = row.get("streamed_feed_over_consumption", {})
        for key, value in row["streamed_units_per_s"].items():
            world = key.split("x")[0]
            ratio = f"{sratios[key]:.2f}" if key in sratios else "-"
            lines.append(f"| streamed | {world} | 0 (in process) | {value:,.0f} | {ratio} |")
        base = row["feed_units_per_s"]
        lines += ["", f"rank 3 of 8 against rank 0 of 1, one worker each: "
                      f"{base['8x1'] / base['1x1']:.2f}x; streamed, in process: "
                      f"{row['streamed_units_per_s']['8x0'] / row['streamed_units_per_s']['1x0']:.2f}x"]
        resume = row["resume_first_batch_s"]
        lines.append("first micro-batch after resuming (packed, s): " + ", ".join(
            f"at {int(k):,} {v:.4f}" for k, v in resume.items()) + f" (at 1e5 {resume['100000'] / resume['0']:.2f}x "
            "the start); streamed: " + ", ".join(f"at {int(k):,} {v:.3f}"
                                                 for k, v in row["streamed_resume_first_batch_s"].items()))
    return "\n".join(lines)


def targets(r: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """``(target, measured, met)`` of issue 24's acceptance."""
    rows = []
    for family, row in r["families"].items():
        feed, resume = row["feed_units_per_s"], row["resume_first_batch_s"]
        ratio = feed["8x1"] / feed["1x1"]
        rows.append((f"{family}: rank 3 of 8 >= 0.7x rank 0 of 1", f"{ratio:.2f}x", ratio >= 0.7))
        late = resume["100000"] / resume["0"]
        rows.append((f"{family}: first batch at micro-batch 1e5 within 2x of 0", f"{late:.2f}x", late <= 2.0))
        if "feed_over_consumption" in row:
            over = row["feed_over_consumption"]["64x4"]
            rows.append((f"{family}: feed / consumption >= 3 at 64 ranks, 4 workers", f"{over:.1f}", over >= 3))
    return rows

