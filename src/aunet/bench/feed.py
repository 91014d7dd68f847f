"""The packed data feed under a training step: does the loader of ``aunet train`` keep a GPU busy?

The GPU check (:mod:`aunet.bench.gpu`) runs this where GPUs live, with the cores a GPU host has:

1. **A corpus of a few hundred MB**: the check's text (a few MB of books) repeated into a temporary folder of
   ``.txt`` documents of about a book each (:func:`repeated_corpus`). Repeated text costs what new text costs to
   pack and to read; it only makes a poor training set, and nothing is trained here to be evaluated.
2. **Packing it as a run does** (:func:`prepare_pack`): a :class:`~aunet.data.pipeline.DataPipeline` over that
   folder with ``AUNET_CACHE_DIR`` pointed at a temporary folder, so no tokenizer or pack is found ready: the BPE
   tokenizer of the preset's vocabulary is trained on the text (timed on its own, on at most one copy's worth of
   bytes: further copies repeat every pair count and teach BPE nothing), then the training split is packed with
   every core (:func:`aunet.data.packer.build_pack`). Recorded: MB of text per second and units per second.
3. **Steps fed by the loader** (:func:`time_feed`): a real ``DataLoader`` over the pack's
   :class:`~aunet.data.packed.PackedBatches` with ``W`` worker processes, pinned memory and the prefetch of
   ``aunet train``'s loader, each batch copied to the device as Lightning copies it (``non_blocking``). Per step the
   host time blocked in ``next(loader)`` (the data wait) and the step with its copy, synchronised. Synchronising
   every step makes the wait a GPU idle: the next batch is only asked for once the GPU has finished, so nothing
   of the wait is hidden behind queued kernels. The share of step time spent waiting is therefore an upper bound on
   what the loader costs a training run, which does not synchronise every step.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from aunet.bench.suite import _sync
from aunet.data.config import DataConfig
from aunet.data.packed import PackedBatches
from aunet.data.pipeline import DataPipeline
from aunet.models import load_model_config
from aunet.paths import CACHE_DIR_ENV

# Documents of the repeated corpus: pieces of the text cut at its blank-line gaps (``--prepare-data`` joins whole
# books with one) and merged up to about a book, so a document's BOS/EOS and its packing cost are a book's.
DOCUMENT_BYTES = 256 << 10
# The BPE tokenizer is trained on at most one copy of the text and at most this much: on a few MB a tokenizer of the
# 1e19 rung's vocabulary trains in seconds on a GPU host's cores; more text would only add minutes to the check.
TOKENIZER_TRAIN_BYTES = 8 << 20
# A step "waited on data" when the loader held it for more than this share of its time.
WAITING_STEP_SHARE = 0.05

Step = Callable[[dict[str, torch.Tensor]], None]


@contextmanager
def cache_at(folder: Path) -> Iterator[None]:
    """``AUNET_CACHE_DIR`` set to ``folder`` inside the block (tokenizers and packs go there), restored after."""
    old = os.environ.get(CACHE_DIR_ENV)
    os.environ[CACHE_DIR_ENV] = str(folder)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(CACHE_DIR_ENV, None)
        else:
            os.environ[CACHE_DIR_ENV] = old


def book_documents(text: bytes, document_bytes: int = DOCUMENT_BYTES) -> list[bytes]:
    """``text`` cut at its blank-line gaps (three newlines) into pieces merged up to at least ``document_bytes``
    each (the last may be shorter); the pieces joined again by the gaps give ``text`` back, empty pieces aside."""
    pieces = [p for p in text.split(b"\n\n\n") if p.strip()] or [text]
    documents: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for piece in pieces:
        current.append(piece)
        size += len(piece)
        if size >= document_bytes:
            documents.append(b"\n\n\n".join(current))
            current, size = [], 0
    if current:
        documents.append(b"\n\n\n".join(current))
    return documents


def repeated_corpus(text: bytes, target_bytes: int, folder: Path, document_bytes: int = DOCUMENT_BYTES
                    ) -> dict[str, Any]:
    """Write ``text``'s documents (:func:`book_documents`) into ``folder`` as ``copy-NNN/doc-NNNN.txt``, copy after
    copy, until at least ``target_bytes`` are written (the last copy partial). Returns what was written."""
    documents = book_documents(text, document_bytes)
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    written = files = copy = 0
    while written < target_bytes:
        sub = folder / f"copy-{copy:03d}"
        sub.mkdir()
        for i, data in enumerate(documents):
            (sub / f"doc-{i:04d}.txt").write_bytes(data)
            written += len(data)
            files += 1
            if written >= target_bytes:
                break
        copy += 1
    return {"text_bytes": len(text), "bytes": written, "documents": files, "copies": written / len(text),
            "documents_per_copy": len(documents), "write_seconds": time.perf_counter() - started}


def prepare_pack(preset: str, corpus: Path, tokenizer_bytes: int, seed: int = 0) -> tuple[DataPipeline, dict]:
    """The pipeline of ``preset`` over ``corpus`` with its pack built, and what building cost: the tokenizer's
    training (BPE) timed apart from the packing. Call inside :func:`cache_at` of an empty folder: a tokenizer or a
    pack found ready would time nothing (``built`` says whether the pack was built here)."""
    model = load_model_config(preset)
    # A tail split of 1%: every document is packed (a hash split could hold whole repeated books out), and the
    # validation side, which the split check wants non-empty, is never read here.
    data = DataConfig(corpus=str(corpus), split="tail", val_fraction=0.01, tokenizer_train_bytes=tokenizer_bytes)
    data.validate()
    pipeline = DataPipeline(data, model, seed)
    started = time.perf_counter()
    pipeline.source.fingerprint()  # hashes the corpus once per process: not the tokenizer's cost
    fingerprint_s = time.perf_counter() - started
    started = time.perf_counter()
    pipeline.prepare_tokenizer()  # BPE: trains the tokenizer into the (empty) cache; bytes: checks the split only
    tokenizer_s = time.perf_counter() - started
    started = time.perf_counter()
    pipeline.prepare(progress=False)  # the encoder, the length check and the pack, as rank 0 of a run builds it
    prepare_s = time.perf_counter() - started
    pack = pipeline.ensure_pack()
    meta = pack.meta
    row = {
        "preset": preset, "family": pipeline.family.label, "unit": pipeline.family.unit, "built": pipeline.pack_built,
        "fingerprint_seconds": fingerprint_s,
        "tokenizer_seconds": tokenizer_s if pipeline.family.needs_tokenizer else None,
        "tokenizer_vocab": pipeline.tokenizer.vocab_size if pipeline.tokenizer is not None else None,
        "tokenizer_train_bytes": tokenizer_bytes if pipeline.family.needs_tokenizer else None,
        "prepare_seconds": prepare_s, "pack_seconds": meta.seconds, "processes": meta.processes,
        "text_bytes": meta.text_bytes, "units": meta.n_units, "documents": meta.n_documents,
        "mb_per_s": meta.text_bytes / 1e6 / max(meta.seconds, 1e-9),
        "units_per_s": meta.n_units / max(meta.seconds, 1e-9),
        "bytes_per_unit": meta.text_bytes / max(meta.n_units, 1),
    }
    return pipeline, row


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """A batch on ``device`` as Lightning moves it: asynchronous copies from (pinned) host memory on a GPU."""
    return {k: v.to(device, non_blocking=device.type == "cuda") for k, v in batch.items()}


def time_feed(step: Step, dataset: PackedBatches, workers: int, steps: int, prefetch: int,
              device: torch.device) -> dict[str, Any]:
    """``steps`` training steps fed by a ``DataLoader`` with ``workers`` worker processes (0: in this process) over
    ``dataset``: per step the seconds blocked in ``next(loader)`` and the seconds of the step (copy to the device
    included, synchronised), after one untimed step on the loader's first batch (the workers' start-up, timed as
    ``first_batch_s``). ``step`` takes a batch of ``tokens`` int32 ``[B, S+1]`` (and ``levels`` uint8 ``[B, S+1]``)
    on ``device``."""
    loader = DataLoader(dataset, batch_size=None, num_workers=workers, pin_memory=device.type == "cuda",
                        prefetch_factor=prefetch if workers else None, persistent_workers=False)
    iterator = iter(loader)
    try:
        started = time.perf_counter()
        first = next(iterator)
        first_s = time.perf_counter() - started
        step(to_device(first, device))
        _sync(device)
        waits: list[float] = []
        computes: list[float] = []
        for _ in range(steps):
            begin = time.perf_counter()
            batch = next(iterator)
            got = time.perf_counter()
            step(to_device(batch, device))
            _sync(device)
            waits.append(got - begin)
            computes.append(time.perf_counter() - got)
    finally:
        del iterator  # shuts the workers down before the next loader starts its own
    units = int(first["tokens"].shape[0] * (first["tokens"].shape[1] - 1))
    shares = [w / (w + c) for w, c in zip(waits, computes)]
    total = sum(waits) + sum(computes)
    return {
        "workers": workers, "prefetch_factor": prefetch if workers else None, "pinned": device.type == "cuda",
        "steps": steps, "units_per_step": units, "first_batch_s": first_s,
        "wait_s": waits, "step_s": computes,
        "wait_median_s": statistics.median(waits), "wait_max_s": max(waits),
        "step_median_s": statistics.median(computes),
        "wait_share_median": statistics.median(shares), "wait_share_total": sum(waits) / total,
        "steps_waiting": sum(s > WAITING_STEP_SHARE for s in shares),
        "units_per_s": units * steps / total,
    }


def feed_runs(step: Step, dataset: PackedBatches, workers: list[int], steps: int, prefetch: int,
              device: torch.device) -> dict[str, Any]:
    """:func:`time_feed` at each worker count, one after the other on the same model (it keeps training)."""
    return {"micro_batch": dataset.micro_batch, "seq_len": dataset.seq_len, "windows": dataset.n_windows,
            "workers": {str(w): time_feed(step, dataset, w, steps, prefetch, device) for w in workers}}
