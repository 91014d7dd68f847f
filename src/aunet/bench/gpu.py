"""The GPU check: the paper's 1e19-rung models trained on one GPU under a clock, and cascaded generation timed.

    python -m aunet.bench.gpu --out DIR [--data FILE]          # on a GPU: what scripts/gpu-check.sh runs
    python -m aunet.bench.gpu --device cpu --micro --out DIR   # the same code on microscopic models (tests)
    python -m aunet.bench.gpu --record DIR/gpu-check.json      # BENCHMARKS.md section + benchmarks/ JSON

For each training preset (default ``ladder/bpe-1e19``, ``ladder/aunet2-1e19``, ``ladder/aunet3-1e19``, at the
paper's sequence lengths of 2048 tokens and 8192 bytes), the training step of ``aunet train`` is run as Lightning's
``bf16-mixed`` runs it: fp32 weights under bf16 autocast, the forward and the float32 cross-entropy
``torch.compile``-d as :class:`~aunet.training.module.LanguageModelModule` compiles them, backward, gradient
clipping at 0.2 and the AdamW of training. Per preset it reports:

* bytes/s and FLOP/s by our formula (:func:`aunet.flops.flops_report`); BPE bytes are tokens times
  ``--bpe-bytes-per-token`` (4.56, the paper's LLaMA-3 tokenizer on DCLM: our suite has no 128k-token tokenizer, and a
  token's id does not change the work), AU-Net batches are real text with real word boundaries;
* utilisation against a dense bf16 matmul measured in the same process and against the chip's datasheet peak;
* the allocator's peak memory over the timed steps;
* whether one step makes any host-device synchronisation (``torch.cuda.set_sync_debug_mode("error")``);
* how many graphs and graph breaks TorchDynamo finds in the forward (``torch._dynamo.explain``), and how many graphs
  were compiled while training (the forward and the loss: a recompilation would show as more);
* a profile of two steps: the share of GPU kernel time in matmuls, attention and everything else, the share of the
  step in which the GPU is idle (launch and host overhead), and the top kernels, saved with the numbers.

Then cascaded generation against full recomputation at 1k and 4k bytes of context for the 1e19 AU-Nets
(:mod:`aunet.bench.generation`), with a profile of the cascade: kernels launched and GPU busy time per byte.

And the packed data feed (``--feed``, on by default; :mod:`aunet.bench.feed`): before training, the check's text is
repeated into a corpus of ``--feed-mb`` MB (the books repeated: the output says so), the BPE tokenizer of
``ladder/bpe-1e19``'s vocabulary is trained on it and the packs of ``ladder/bpe-1e19`` and ``ladder/aunet2-1e19`` are
built with every core in a temporary cache (tokenizer seconds, pack MB/s); after each of these presets' timed steps,
the same compiled model trains ``--feed-steps`` more steps from a ``DataLoader`` over its pack with each of
``--feed-workers`` worker processes, timing the host's wait for every batch against the step (the data wait's share of
step time, the steps that waited over 5%, units/s). The feed reuses the compiled model: the preloaded batches have the
packed stream's dtypes (int32 tokens, uint8 levels), so the loader's batches compile nothing new.

Results are written to ``--out`` as one JSON file after every part, so a run stopped at its time limit keeps what it
measured. Step times come from CUDA events (host clock plus synchronisation on CPU), medians over the timed steps.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import Any

import torch

from aunet.bench.feed import (
    TOKENIZER_TRAIN_BYTES,
    WAITING_STEP_SHARE,
    cache_at,
    feed_runs,
    prepare_pack,
    repeated_corpus,
    to_device,
)
from aunet.bench.generation import measure
from aunet.bench.record import write_section
from aunet.bench.suite import _native_stderr_silenced, _sync, stack_windows
from aunet.data.packed import PackedBatches
from aunet.data.packing import pack
from aunet.evaluation.checkpoint import LoadedModel
from aunet.evaluation.generation import generate
from aunet.flops import flops_report
from aunet.io import atomic_write_json
from aunet.models import ModelConfig, build_model, family_of, load_model_config
from aunet.models.loss import compiled_next_unit_loss, next_unit_loss
from aunet.paths import data_dir
from aunet.training.optim import adamw, default_precision
from aunet.training.records import library_versions

TRAIN_PRESETS = ("ladder/bpe-1e19", "ladder/aunet2-1e19", "ladder/aunet3-1e19")
GENERATION_PRESETS = ("ladder/aunet2-1e19", "ladder/aunet3-1e19")
MICRO_TRAIN_PRESETS = ("tiny-bpe", "tiny-aunet2", "tiny-aunet3")
MICRO_GENERATION_PRESETS = ("tiny-aunet2",)
# The packed data feed (--feed): presets whose packs are built and whose training is fed by the loader, the corpus
# size in MB and the loader's worker counts. A few hundred MB: BPE encodes about 0.3-0.5 M tokens/s per core, so
# 256 MB is tens of seconds on a GPU host's 16 cores, bytes a few seconds; the microscopic (CPU) mode packs 1 MB.
FEED_PRESETS = ("ladder/bpe-1e19", "ladder/aunet2-1e19")
MICRO_FEED_PRESETS = ("tiny-bpe", "tiny-aunet2")
FEED_MB, MICRO_FEED_MB = 256.0, 1.0
FEED_WORKERS, MICRO_FEED_WORKERS = "4,8", "0,2"
FEED_PREFETCH = 2  # aunet train's DataLoader (training/datamodule.py)
# The target: the data wait at most this share of a training step's time, with 1 or more workers. Why 2%: the GPU
# study's plan (`aunet sweep plan --throughput`) is computed from this check's bytes/s on preloaded batches, so a
# wait under 2% keeps real training within 2% of the planned time, well inside the differences between families the
# check reports (AU-Net-2 at 0.95x BPE's FLOP rate). And it is reachable: a worker builds a micro-batch from a pack
# in milliseconds (copies out of memory-mapped shards; `aunet bench --data`) against steps of about a tenth of a
# second at the 1e19 rung (BENCHMARKS.md), so with workers prefetching, a larger wait is the pipeline stalling
# (worker hand-over, pinning, the host's loop), which is worth finding before a study pays for it.
FEED_WAIT_TARGET = 0.02
# The paper's bytes per token (LLaMA-3 tokenizer on DCLM), used to convert BPE tokens/s to bytes/s.
PAPER_BYTES_PER_TOKEN = 4.56
GRAD_CLIP = 0.2  # training's default (train.grad_clip)
# Dense bf16 tensor-core peak (no sparsity) from the vendors' datasheets, SXM parts; matched on the device name.
DATASHEET_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12}
# The paper's 1B models (Table 2) with their training throughput per H100 in bytes/s: the anchor the GPU numbers are
# read against. Our rate per FLOP at the 1e19 rung, applied to these models' FLOPs per byte, says what a study at the
# paper's scale would cost with this suite (a lower bound on speed: wider models use a GPU better).
PAPER_1B = {"bpe": ("paper-bpe-1b", 210e3), "aunet2": ("paper-aunet2-1b", 225e3), "aunet3": ("paper-aunet3-1b", 180e3)}


# --- timing helpers --------------------------------------------------------------------------------------------------


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds of one call of ``fn``: CUDA events on a GPU (no host clock error), host clock plus sync on CPU."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    begin = time.perf_counter()
    fn()
    return time.perf_counter() - begin


def dense_matmul_rate(device: torch.device, size: int, repeats: int = 10) -> float:
    """FLOP/s of a ``size``-cubed matmul on random data, bf16 on a GPU and fp32 on CPU: the median of ``repeats``
    timed products after three warm-ups (random data: zeros run faster than real weights do)."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    seconds = statistics.median(timed(lambda: a @ b, device) for _ in range(repeats))
    return 2.0 * size**3 / seconds


def datasheet_peak(device: torch.device) -> tuple[str, float | None]:
    """``(device name, dense bf16 datasheet FLOP/s or None when the chip is not in the table)``."""
    if device.type != "cuda":
        return platform.processor() or platform.machine(), None
    name = torch.cuda.get_device_name(device)
    peak = next((v for k, v in DATASHEET_BF16_FLOPS.items() if k in name), None)
    return name, peak


# --- batches ---------------------------------------------------------------------------------------------------------


def as_packed(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A batch in the dtypes the packed stream delivers (:class:`~aunet.data.packed.PackedBatches`): ``tokens`` int32
    ``[B, S+1]``, ``levels`` uint8 ``[B, S+1]``. Timed steps then compile the graphs training compiles, and the
    loader-fed steps of the feed part run on them without compiling anything new."""
    out = {"tokens": batch["tokens"].to(torch.int32)}
    if "levels" in batch:
        out["levels"] = batch["levels"].to(torch.uint8)
    return out


def byte_batches(config: ModelConfig, text: bytes, micro_batch: int, count: int,
                 device: torch.device) -> list[dict[str, torch.Tensor]]:
    """``count`` AU-Net batches of real text, ``tokens`` int32 and ``levels`` uint8 ``[micro_batch, seq_len + 1]``,
    packed by the training pipeline's encoder (the text is cycled when it is shorter than the batches need)."""

    encoder = family_of(config).encoder()
    documents = [d for d in text.split(b"\n\n\n") if d.strip()] or [text]

    def cycled():
        while True:
            yield from (encoder.encode(d) for d in documents)

    windows = pack(cycled(), config.seq_len + 1, encoder.top_level)
    return [as_packed(b) for b in stack_windows(windows, micro_batch, count, device)]


# --- the training step -----------------------------------------------------------------------------------------------


def training_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor],
                  loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = next_unit_loss) -> torch.Tensor:
    """The loss of :meth:`LanguageModelModule.training_step`: float32 cross-entropy of next-unit logits."""
    logits, targets, _ = family_of(model.config).forward_batch(model, batch)
    return loss_fn(logits, targets)


def make_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, device: torch.device,
              compiled_loss: bool) -> Callable[[dict[str, torch.Tensor]], None]:
    """One optimizer step on one micro-batch, as Lightning's ``bf16-mixed`` with ``gradient_clip_val`` runs it
    (``compiled_loss``: the loss compiled, as ``LanguageModelModule(compile=True)`` does)."""
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda" else nullcontext
    loss_fn = compiled_next_unit_loss() if compiled_loss else next_unit_loss

    def step(batch: dict[str, torch.Tensor]) -> None:
        with autocast():
            loss = training_loss(model, batch, loss_fn)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP, foreach=device.type == "cuda")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def prepared_step(model: torch.nn.Module, device: torch.device, compile: bool, compiled_loss: bool
                  ) -> tuple[torch.optim.Optimizer, Callable[[dict[str, torch.Tensor]], None]]:
    """The AdamW of training over ``model`` and its training step (:func:`make_step`), the forward compiled first
    with ``compile`` as ``LanguageModelModule(compile=True)`` compiles it (default options)."""
    optimizer = adamw(model.parameters(), default_precision(device.type), lr=1e-4)
    if compile:
        model.compile()
    return optimizer, make_step(model, optimizer, device, compiled_loss)


def graph_report(model: torch.nn.Module, batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, Any]:
    """Graphs and graph breaks TorchDynamo finds in the forward on ``batch``, with the first break reasons."""
    import torch._dynamo

    args = family_of(model.config).inputs(batch)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    with autocast, torch.no_grad():
        explanation = torch._dynamo.explain(model)(*args)
    torch._dynamo.reset()  # explain's compilation must not count as the training compilation
    return {"graphs": explanation.graph_count, "graph_breaks": explanation.graph_break_count,
            "break_reasons": [str(r.reason)[:200] for r in explanation.break_reasons[:3]]}


def sync_check(step: Callable[[dict[str, torch.Tensor]], None], batch: dict[str, torch.Tensor],
               device: torch.device) -> dict[str, Any]:
    """Run one (warm) step with CUDA's sync debug mode set to error: any host-device synchronisation raises."""
    if device.type != "cuda":
        return {"checked": False, "sync_free": None, "error": "no CUDA device: nothing to synchronise with"}
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step(batch)
        error = None
    except RuntimeError as exc:  # the message names the synchronising call
        error = str(exc).splitlines()[0][:300]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    return {"checked": True, "sync_free": error is None, "error": error}


ATTENTION_KERNELS = ("fmha", "flash", "attention", "attn")
MATMUL_KERNELS = ("gemm", "nvjet", "xmma", "cutlass", "cublas", "triton_tem", "matmul", "aten::mm", "aten::addmm",
                  "aten::bmm", "aten::_grouped_mm")


def kernel_category(name: str) -> str:
    """``"attention"``, ``"matmul"`` or ``"other"`` for a GPU kernel (or, on CPU, an operator) name."""
    lower = name.lower()
    if any(k in lower for k in ATTENTION_KERNELS) or "scaled_dot_product" in lower:
        return "attention"
    if any(k in lower for k in MATMUL_KERNELS):
        return "matmul"
    return "other"


def profile_work(fn: Callable[[], Any], device: torch.device, rows: int = 15) -> dict[str, Any]:
    """Profile one call of ``fn``: wall seconds, seconds of device work by category (CUDA kernels; on CPU, operators'
    self time), kernels launched, and the busiest kernels as a text table."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    _sync(device)
    with _native_stderr_silenced(), profile(activities=activities) as prof:
        wall = timed(fn, device)
    split = {"matmul": 0.0, "attention": 0.0, "other": 0.0}
    per_kernel: dict[str, list[float]] = {}
    launches = 0
    for event in prof.events():
        on_device = device.type == "cuda" and str(event.device_type).endswith("CUDA")
        if device.type == "cuda" and not on_device:
            continue
        seconds = (event.time_range.elapsed_us() if on_device else event.self_cpu_time_total) * 1e-6
        if seconds <= 0:
            continue
        launches += 1
        split[kernel_category(event.name)] += seconds
        per_kernel.setdefault(event.name, []).append(seconds)
    busy = sum(split.values())
    top = sorted(per_kernel.items(), key=lambda kv: -sum(kv[1]))[:rows]
    table = [f"{sum(v) * 1e3:9.3f} ms {len(v):6d}x  {kernel_category(k):9s} {k[:110]}" for k, v in top]
    return {"wall_s": wall, "busy_s": busy, "launches": launches,
            "shares": {k: v / busy if busy else 0.0 for k, v in split.items()},
            "idle_share": max(0.0, 1.0 - busy / wall) if device.type == "cuda" and wall > 0 else None,
            "top_kernels": table}


def _graphs_compiled() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def train_preset(preset: str, text: bytes, micro_batch: int, steps: int, warmup: int, compile: bool,
                 device: torch.device, bpe_bytes_per_token: float, eager_loss: bool = False,
                 feed: Callable[[Callable[[dict[str, torch.Tensor]], None]], dict[str, Any]] | None = None
                 ) -> dict[str, Any]:
    """Every training figure of the module docstring for one preset (see there); ``eager_loss`` keeps the loss
    uncompiled even with ``compile`` (the comparison that shows what compiling it gains). ``feed``, if given, is
    called with the warm training step once everything else is measured (the loader-fed steps of the feed part,
    on the compiled model); what it returns is the row's ``"feed"``."""

    config = load_model_config(preset)
    report = flops_report(config)
    family = family_of(config)
    torch.manual_seed(0)
    model = build_model(config).to(device)
    n_batches = min(steps + warmup + 3, 8)
    # Real text where the family reads bytes (word boundaries set the work); uniform token ids otherwise: the work
    # of a step does not depend on which ids it reads, and no tokenizer of the paper's 128k vocabulary is at hand.
    if family.needs_tokenizer:
        generator = torch.Generator().manual_seed(0)
        batches = [as_packed({"tokens": family.synthetic_batch(micro_batch, generator)["tokens"].to(device)})
                   for _ in range(n_batches)]
    else:
        batches = byte_batches(config, text, micro_batch, n_batches, device)
    graphs = graph_report(model, batches[0], device)
    optimizer, step = prepared_step(model, device, compile, compile and not eager_loss)
    before = _graphs_compiled()
    first = time.perf_counter()
    for i in range(warmup):  # the first step compiles
        step(batches[i % n_batches])
    _sync(device)
    warmup_s = time.perf_counter() - first
    sync = sync_check(step, batches[0], device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = [timed(lambda b=batches[i % n_batches]: step(b), device) for i in range(steps)]
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    compiled_graphs = _graphs_compiled() - before
    two = [batches[0], batches[1 % n_batches]]
    profile = profile_work(lambda: [step(b) for b in two], device)
    fed = feed(step) if feed is not None else None
    units = micro_batch * report.seq_len
    bytes_per_unit = family.bytes_per_unit(bpe_bytes_per_token)
    median = statistics.median(seconds)
    out = {
        "preset": preset, "family": family.label + ("-eager-loss" if eager_loss else ""),
        "loss": "compiled" if compile and not eager_loss else "eager", "params": report.params,
        "flops_per_unit": report.flops_per_unit, "flops_per_byte": report.flops_per_unit / bytes_per_unit,
        "seq_len": report.seq_len, "micro_batch": micro_batch, "bytes_per_unit": bytes_per_unit,
        "steps": steps, "seconds_per_step": median, "seconds_min": min(seconds), "seconds_max": max(seconds),
        "bytes_per_s": units * bytes_per_unit / median, "flops_per_s": units * report.flops_per_unit / median,
        "warmup_seconds": warmup_s, "compiled": compile, "graphs_compiled_in_training": compiled_graphs,
        "dynamo": graphs, "sync": sync, "peak_memory_bytes": peak, "profile_two_steps": profile,
    }
    if fed is not None:
        out["feed"] = fed
    del model, optimizer, batches
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def generation_preset(preset: str, text: bytes, contexts: list[int], new_bytes: int, repeats: int,
                      device: torch.device) -> dict[str, Any]:
    """Cascaded generation against recomputation (random weights, greedy), plus a profile of one cascaded run."""
    config = load_model_config(preset)
    torch.manual_seed(0)
    loaded = LoadedModel(build_model(config).to(device).eval(), config)
    rows = []
    for n in contexts:
        prompt = text[:n].decode("utf-8", errors="ignore").encode()
        rows.append(measure(loaded, prompt, new_bytes, repeats))
    prompt = text[: contexts[-1]].decode("utf-8", errors="ignore").encode()
    profile = profile_work(lambda model=loaded: generate(model, prompt, max_new_units=new_bytes, stop_at_eos=False,
                                                         max_prompt=len(prompt) + 1), device)
    profile["per_byte_launches"] = profile["launches"] / new_bytes
    del loaded
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"preset": preset, "rows": rows, "profile_cascade": profile}


# --- the whole check -------------------------------------------------------------------------------------------------


def _text(path: str | None, need: int) -> bytes:
    if path:
        file = Path(path)
    else:
        root = data_dir()
        if root is None:
            raise SystemExit("error: no --data file and no data directory (set AUNET_DATA_DIR)")
        file = root / "corpora" / "gutenberg_en" / "books"
    if file.is_dir():
        data = b"\n\n\n".join(p.read_bytes() for p in sorted(file.glob("*.txt"))[:4])
    else:
        data = file.read_bytes()
    if len(data) < need:
        raise SystemExit(f"error: {file} holds {len(data)} bytes, fewer than the {need} needed")
    return data


def _write(out_dir: Path, result: dict[str, Any]) -> None:
    atomic_write_json(out_dir / "gpu-check.json", result)


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


# --- the packed data feed (aunet.bench.feed) ------------------------------------------------------------------------


def feed_packs(text: bytes, megabytes: float, presets: list[str], micro_batch: int, cache: Path,
               source: str) -> tuple[dict[str, Any], dict[str, PackedBatches]]:
    """The feed part's corpus and packs: ``text`` repeated to ``megabytes`` MB in a temporary folder (removed once
    packed), each preset's tokenizer and pack built into the empty ``cache``. Returns the part's record and each
    preset's training stream of ``micro_batch`` windows (reading the packs in ``cache``)."""
    # What the packing's spawned processes re-import first (multiprocessing runs the parent's main module again):
    # this module, run with -m, imports torch and the suite, seconds a process that the pack time then includes;
    # scripts/gpu-check.sh starts it with -c, where there is nothing to re-import (None).
    main_module = sys.modules["__main__"]
    spawn_main = getattr(main_module.__spec__, "name", None) or getattr(main_module, "__file__", None)
    record: dict[str, Any] = {"source": source, "spawn_reimports": spawn_main, "packs": {}, "runs": {}}
    datasets: dict[str, PackedBatches] = {}
    with tempfile.TemporaryDirectory(prefix="aunet-feed-corpus-") as tmp:
        folder = Path(tmp) / "books"
        record["corpus"] = repeated_corpus(text, int(megabytes * 1e6), folder)
        c = record["corpus"]
        print(f"[gpu-check]   corpus: {source} ({c['text_bytes'] / 1e6:.1f} MB of books) repeated to "
              f"{c['bytes'] / 1e6:.0f} MB ({c['copies']:.1f} copies) in {c['documents']} documents, written in "
              f"{c['write_seconds']:.1f} s", flush=True)
        # One copy's worth at most: further copies scale every pair count alike and change no merge.
        tokenizer_bytes = min(len(text), c["bytes"], TOKENIZER_TRAIN_BYTES)
        with cache_at(cache):
            for preset in presets:
                pipeline, row = prepare_pack(preset, folder, tokenizer_bytes)
                record["packs"][row["family"]] = row
                datasets[preset] = pipeline.train_batches(micro_batch)
                tok = (f"tokenizer {row['tokenizer_seconds']:.1f} s (vocabulary {row['tokenizer_vocab']:,}), "
                       if row["tokenizer_seconds"] is not None else "")
                print(f"[gpu-check]   {preset}: {tok}pack {row['text_bytes'] / 1e6:.0f} MB -> {row['units']:,} "
                      f"{row['unit']}s in {row['pack_seconds']:.1f} s: {row['mb_per_s']:.1f} MB/s on "
                      f"{row['processes']} process{'es' if row['processes'] > 1 else ''}", flush=True)
    return record, datasets


def feed_hook(dataset: PackedBatches, workers: list[int], steps: int, prefetch: int, device: torch.device
              ) -> Callable[[Callable[[dict[str, torch.Tensor]], None]], dict[str, Any]]:
    """What :func:`train_preset` calls with its warm step: :func:`aunet.bench.feed.feed_runs`, with the graphs
    compiled meanwhile (0 when the loader's batches reuse the compiled model) and a failure recorded, not raised."""

    def run(step: Callable[[dict[str, torch.Tensor]], None]) -> dict[str, Any]:
        before = _graphs_compiled()
        try:
            out = feed_runs(step, dataset, workers, steps, prefetch, device)
        except Exception as exc:  # the feed is new: its failure must not cost the rest of the check
            return {"error": _error(exc)}
        out["graphs_compiled"] = _graphs_compiled() - before
        return out

    return run


def feed_alone(preset: str, dataset: PackedBatches, warmup: int, compile: bool, device: torch.device,
               hook: Callable[[Callable[[dict[str, torch.Tensor]], None]], dict[str, Any]]) -> dict[str, Any]:
    """The feed of a preset the check does not otherwise train: its model built and compiled as
    :func:`train_preset` does, ``warmup`` steps on the pack's first micro-batches, then ``hook``."""
    import torch._dynamo

    torch._dynamo.reset()  # as train_preset's graph report leaves it: each model compiles from a clean slate
    torch.manual_seed(0)
    model = build_model(load_model_config(preset)).to(device)
    optimizer, step = prepared_step(model, device, compile, compile)
    started = time.perf_counter()
    for i in range(warmup):
        step(to_device(dataset.batch(i), device))
    _sync(device)
    out = {**hook(step), "warmup_seconds": time.perf_counter() - started}
    del model, optimizer, step
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def _report_feed(family: str, run: dict[str, Any], train: dict[str, Any]) -> None:
    """Each worker count's step against the same preset's preloaded step (when trained), and a log line."""
    if "error" in run:
        print(f"[gpu-check]   {family} fed by the packed loader: FAILED {run['error']}", flush=True)
        return
    for w in run["workers"].values():
        if family in train:
            w["step_vs_preloaded"] = w["step_median_s"] / train[family]["seconds_per_step"]
        print(f"[gpu-check]   {family} fed by the packed loader, {w['workers']} workers: data wait "
              f"{w['wait_share_median']:.2%} of a step (median), {w['wait_share_total']:.2%} in all, "
              f"{w['steps_waiting']} of {w['steps']} steps over {WAITING_STEP_SHARE:.0%}; "
              f"{w['units_per_s']:,.0f} units/s; first batch {w['first_batch_s']:.2f} s", flush=True)


def run_check(args: argparse.Namespace) -> dict[str, Any]:
    """The check of the module docstring; writes ``gpu-check.json`` into ``args.out`` after every part."""
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but torch sees no CUDA device")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    micro = args.micro
    train_presets = args.presets.split(",") if args.presets else list(MICRO_TRAIN_PRESETS if micro else TRAIN_PRESETS)
    gen_presets = (args.generation_presets.split(",") if args.generation_presets is not None
                   else list(MICRO_GENERATION_PRESETS if micro else GENERATION_PRESETS))
    gen_presets = [p for p in gen_presets if p]
    contexts = [int(c) for c in args.contexts.split(",")]
    compile = args.compile if args.compile is not None else device.type == "cuda"
    if args.eager_loss_presets is None:
        args.eager_loss_presets = "ladder/bpe-1e19" if device.type == "cuda" and not micro else ""
    feed_presets = (args.feed_presets.split(",") if args.feed_presets is not None
                    else list(MICRO_FEED_PRESETS if micro else FEED_PRESETS))
    feed_presets = [p for p in feed_presets if p]
    feed_mb = args.feed_mb if args.feed_mb is not None else (MICRO_FEED_MB if micro else FEED_MB)
    feed_workers = [int(w) for w in (args.feed_workers or (MICRO_FEED_WORKERS if micro else FEED_WORKERS)).split(",")]
    text = _text(args.data, max(contexts) + 1)
    name, peak = datasheet_peak(device)
    from datetime import datetime, timezone

    result: dict[str, Any] = {
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "versions": library_versions(),
        "device": device.type, "device_name": name, "micro": micro, "label": args.label,
        "command": " ".join(["python -m aunet.bench.gpu", *sys.argv[1:]]),
        "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
        "datasheet_bf16_flops_per_s": peak, "bpe_bytes_per_token": args.bpe_bytes_per_token, "train": {},
        "generation": {}, "elapsed_s": {}, "errors": [],
    }
    started = time.perf_counter()

    def done(part: str) -> None:  # seconds since the start at the end of each part (the budget), then the file
        result["elapsed_s"][part] = round(time.perf_counter() - started, 1)
        _write(out_dir, result)

    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # as in the paper's runs; bf16 autocast does the matmuls
    result["dense_matmul_flops_per_s"] = dense_matmul_rate(device, 8192 if device.type == "cuda" else 256)
    result["dense_matmul_dtype"] = "bfloat16" if device.type == "cuda" else "float32"
    done("dense matmul")
    with ExitStack() as stack:  # the feed's packs live until the last loader-fed step
        datasets: dict[str, PackedBatches] = {}
        if args.feed:
            # Packed first (CPU work): the loader-fed steps then run on each preset's model while it is compiled.
            print(f"[gpu-check] packed data feed: packing {', '.join(feed_presets)} ...", flush=True)
            cache = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="aunet-feed-cache-")))
            source = args.data or "the first books of the data directory"
            try:
                result["feed"], datasets = feed_packs(text, feed_mb, feed_presets, args.micro_batch, cache, source)
            except Exception as exc:  # the feed is new: its failure must not cost the rest of the check
                result["feed"] = {"error": _error(exc), "packs": {}, "runs": {}}
                result["errors"].append(f"feed packing: {result['feed']['error']}")
                print(f"[gpu-check]   FAILED {result['feed']['error']}", flush=True)
            done("feed packing")

        def hook(preset: str) -> Callable[[Callable[[dict[str, torch.Tensor]], None]], dict[str, Any]]:
            return feed_hook(datasets[preset], feed_workers, args.feed_steps, args.feed_prefetch, device)

        def keep_feed(preset: str, family: str, run: dict[str, Any]) -> None:
            result["feed"]["runs"][family] = {"preset": preset, **run}
            if "error" in run:
                result["errors"].append(f"feed {preset}: {run['error']}")
            _report_feed(family, result["feed"]["runs"][family], result["train"])

        eager_loss = [p for p in (args.eager_loss_presets or "").split(",") if p] if compile else []
        for preset, eager in [(p, False) for p in train_presets] + [(p, True) for p in eager_loss]:
            print(f"[gpu-check] training {preset}{' (loss not compiled)' if eager else ''} ...", flush=True)
            fed = not eager and preset in datasets
            row = train_preset(preset, text, args.micro_batch, args.steps, args.warmup, compile, device,
                               args.bpe_bytes_per_token, eager_loss=eager, feed=hook(preset) if fed else None)
            row["utilization_measured"] = row["flops_per_s"] / result["dense_matmul_flops_per_s"]
            row["utilization_datasheet"] = row["flops_per_s"] / peak if peak else None
            run = row.pop("feed", None)
            result["train"][row["family"]] = row
            print(f"[gpu-check]   {row['bytes_per_s']:.4g} bytes/s, {row['flops_per_s']:.3g} FLOP/s "
                  f"({row['utilization_measured']:.0%} of the dense matmul), step "
                  f"{row['seconds_per_step'] * 1e3:.1f} ms, warm-up {row['warmup_seconds']:.0f} s", flush=True)
            if run is not None:
                keep_feed(preset, row["family"], run)
            done(f"train {preset}{' eager loss' if eager else ''}")
        for preset in [p for p in datasets if p not in train_presets]:
            print(f"[gpu-check] packed data feed: training {preset} ...", flush=True)
            family = family_of(load_model_config(preset)).label
            try:
                run = feed_alone(preset, datasets[preset], args.warmup, compile, device, hook(preset))
            except Exception as exc:  # building or compiling the model: recorded as the feed's failure
                run = {"error": _error(exc)}
            keep_feed(preset, family, run)
            done(f"feed {preset}")
    if "bpe" in result["train"]:
        bpe = result["train"]["bpe"]
        for row in result["train"].values():  # against BPE as trained (the compiled loss when compiling)
            row["bytes_per_s_vs_bpe"] = row["bytes_per_s"] / bpe["bytes_per_s"]
            row["flops_per_s_vs_bpe"] = row["flops_per_s"] / bpe["flops_per_s"]
    for preset in gen_presets:
        print(f"[gpu-check] generation {preset} ...", flush=True)
        result["generation"][preset] = generation_preset(preset, text, contexts, args.new_bytes, args.repeats,
                                                         device)
        done(f"generation {preset}")
    result["complete"] = True
    done("end")
    return result


# --- reading and recording -------------------------------------------------------------------------------------------


def targets(result: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """``(target, measured, met)`` for each target of the GPU issue; ``met`` None where the part was not measured."""
    train, rows = result.get("train", {}), []
    if "aunet2" in train and "bpe" in train:
        ratio = train["aunet2"]["bytes_per_s_vs_bpe"]
        per_flop = train["aunet2"]["flops_per_s_vs_bpe"]
        rows.append(("AU-Net-2 training bytes/s at least BPE's at the 1e19 rung (paper: 1.07x)",
                     f"{ratio:.2f}x (FLOP/s, i.e. at matched FLOPs per byte: {per_flop:.2f}x)", ratio >= 1.0))
    for family in ("bpe", "aunet2", "aunet3"):
        if family in train:
            u = train[family]["utilization_measured"]
            rows.append((f"{family} at least 40% of the measured dense bf16 rate", f"{u:.0%}", u >= 0.4))
    speedups = [r["speedup"] for g in result.get("generation", {}).values() for r in g["rows"]
                if r["context_bytes"] >= 4000]
    if speedups:
        rows.append(("cascaded generation at least 5x recomputation at 4k bytes",
                     " / ".join(f"{s:.1f}x" for s in speedups), all(s >= 5 for s in speedups)))
    feed = result.get("feed") or {}
    if "error" in feed:
        rows.append(("the packed data feed ran", feed["error"][:80], False))
    for family, run in feed.get("runs", {}).items():
        if "error" in run:
            rows.append((f"{family}: the packed data feed ran", run["error"][:80], False))
            continue
        fed = [w for w in run["workers"].values() if w["workers"] > 0]  # 0 workers: the reference, not the loader
        if fed:
            worst = max(fed, key=lambda w: w["wait_share_total"])
            rows.append((f"{family}: data wait at most {FEED_WAIT_TARGET:.0%} of step time with the packed loader "
                         f"({', '.join(str(w['workers']) for w in fed)} workers)",
                         f"{worst['wait_share_total']:.2%} at {worst['workers']} workers ({worst['steps_waiting']} of "
                         f"{worst['steps']} steps over {WAITING_STEP_SHARE:.0%})",
                         worst["wait_share_total"] <= FEED_WAIT_TARGET))
    for family, t in train.items():
        if t["sync"]["checked"]:
            rows.append((f"{family}: a training step makes no host-device synchronisation",
                         "none" if t["sync"]["sync_free"] else t["sync"]["error"][:80], t["sync"]["sync_free"]))
        if t["compiled"]:
            ok = t["dynamo"]["graphs"] == 1 and t["dynamo"]["graph_breaks"] == 0
            rows.append((f"{family}: one graph, no breaks", f"{t['dynamo']['graphs']} graph(s), "
                         f"{t['dynamo']['graph_breaks']} break(s)", ok))
    return rows


def paper_scale(result: dict[str, Any]) -> list[dict[str, Any]]:
    """For each measured family with a paper 1B model: that model's FLOPs per byte by our formula, the bytes/s it
    would train at with the FLOP rate measured here, and the ratio to the paper's measured bytes/s."""
    if result.get("micro"):
        return []
    rows = []
    for family, t in result.get("train", {}).items():
        if family not in PAPER_1B:
            continue
        preset, paper_rate = PAPER_1B[family]
        per_byte = flops_report(load_model_config(preset)).flops_per_unit / t["bytes_per_unit"]
        rate = t["flops_per_s"] / per_byte
        rows.append({"preset": preset, "flops_per_byte": per_byte, "bytes_per_s": rate,
                     "paper_bytes_per_s": paper_rate, "ratio": rate / paper_rate})
    return rows


def feed_summary(feed: dict[str, Any] | None) -> list[str]:
    """The Markdown lines of the feed part: the corpus, the packs, and the loader-fed steps."""
    if not feed:
        return []
    if "error" in feed:
        return ["", f"Packed data feed: **failed** while packing: `{feed['error']}`"]
    c = feed["corpus"]
    lines = ["", f"Packed data feed: {feed['source']} ({c['text_bytes'] / 1e6:.1f} MB of books) **repeated** to "
             f"{c['bytes'] / 1e6:.0f} MB ({c['copies']:.1f} copies) in {c['documents']} documents; the tokenizer "
             "and the packs built in an empty cache, as the first run on a corpus builds them, with every core"
             + (f" (each packing process first re-imported `{feed['spawn_reimports']}`: included in the pack time)"
                if feed.get("spawn_reimports") else "") + ":", "",
             "| preset | tokenizer training | text packed | units | pack time | MB/s | units/s | processes |",
             "|---|---|---|---|---|---|---|---|"]
    for row in feed["packs"].values():
        tok = (f"{row['tokenizer_seconds']:.1f} s on {row['tokenizer_train_bytes'] / 1e6:.1f} MB "
               f"(vocabulary {row['tokenizer_vocab']:,})" if row["tokenizer_seconds"] is not None else "-")
        lines.append(f"| `{row['preset']}` | {tok} | {row['text_bytes'] / 1e6:.0f} MB | {row['units']:,} "
                     f"{row['unit']}s | {row['pack_seconds']:.1f} s | {row['mb_per_s']:.1f} | "
                     f"{row['units_per_s']:,.0f} | {row['processes']} |")
    runs = feed.get("runs", {})
    if runs:
        lines += ["", "Training steps fed by a DataLoader over the pack (on a GPU pinned memory and `non_blocking` "
                  "copies, as Lightning moves batches; every step synchronised, so a wait is time the device sat idle; "
                  "the first batch, the workers' start-up, not counted):", "",
                  "| preset | workers | first batch | step (median) | data wait (median) | wait share (median) | "
                  "wait share (all steps) | steps waiting > 5% | units/s | step vs preloaded |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for family, run in runs.items():
            if "error" in run:
                lines.append(f"| `{run['preset']}` | **failed**: `{run['error'][:120]}` | | | | | | | | |")
                continue
            for w in run["workers"].values():
                ratio = f"{w['step_vs_preloaded']:.2f}" if "step_vs_preloaded" in w else "-"
                lines.append(f"| `{run['preset']}` | {w['workers']} | {w['first_batch_s']:.2f} s | "
                             f"{w['step_median_s'] * 1e3:.1f} ms | {w['wait_median_s'] * 1e3:.2f} ms | "
                             f"{w['wait_share_median']:.2%} | {w['wait_share_total']:.2%} | {w['steps_waiting']} of "
                             f"{w['steps']} | {w['units_per_s']:,.0f} | {ratio} |")
        recompiled = {f: r["graphs_compiled"] for f, r in runs.items() if r.get("graphs_compiled")}
        if recompiled:
            lines += ["", "Graphs compiled while fed by the loader (the loader's batches did not reuse the compiled "
                      "model): " + ", ".join(f"{f} {n}" for f, n in recompiled.items())]
    return lines


def summary(result: dict[str, Any]) -> str:
    """The Markdown text of a result: training table, generation table, targets, profile readings."""
    peak = result.get("datasheet_bf16_flops_per_s")
    lines = [f"{result['device_name']}; dense {result['dense_matmul_dtype']} matmul measured in the same run: "
             f"{result['dense_matmul_flops_per_s'] / 1e12:.0f} TFLOP/s"
             + (f" (datasheet {peak / 1e12:.0f})" if peak else ""), ""]
    train = result.get("train", {})
    ordered = sorted(train.values(), key=lambda t: (not t["family"].startswith("bpe"), t["family"]))
    if train:
        lines += ["| preset | loss | params | micro-batch | FLOPs/byte | step | bytes/s | TFLOP/s | "
                  "of measured matmul | of datasheet | vs BPE (bytes/s) | vs BPE (FLOP/s) | peak memory | "
                  "first steps (compile) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for t in ordered:
            ds = f"{t['utilization_datasheet']:.0%}" if t.get("utilization_datasheet") else "-"
            mem = f"{t['peak_memory_bytes'] / 2**30:.1f} GiB" if t.get("peak_memory_bytes") else "-"
            lines.append(
                f"| `{t['preset']}` | {t.get('loss', 'eager')} | {t['params'] / 1e6:.0f} M | "
                f"{t['micro_batch']} x {t['seq_len']} | "
                f"{t['flops_per_byte']:.3g} | {t['seconds_per_step'] * 1e3:.1f} ms | {t['bytes_per_s']:,.0f} | "
                f"{t['flops_per_s'] / 1e12:.1f} | {t['utilization_measured']:.0%} | {ds} | "
                f"{t.get('bytes_per_s_vs_bpe', float('nan')):.2f} | {t.get('flops_per_s_vs_bpe', float('nan')):.2f} | "
                f"{mem} | {t['warmup_seconds']:.0f} s |")
        lines += ["", "Where a step's GPU time goes (profile of two steps: kernel time by kind, and the share of the "
                  "step in which the GPU ran no kernel):", "",
                  "| preset | matmul | attention | other | GPU idle | kernels per step |", "|---|---|---|---|---|---|"]
        for t in ordered:
            p = t["profile_two_steps"]
            idle = f"{p['idle_share']:.0%}" if p["idle_share"] is not None else "-"
            lines.append(f"| `{t['preset']}` ({t.get('loss', 'eager')} loss) | {p['shares']['matmul']:.0%} | "
                         f"{p['shares']['attention']:.0%} | "
                         f"{p['shares']['other']:.0%} | {idle} | {p['launches'] / 2:.0f} |")
    paper = paper_scale(result)
    if paper:
        lines += ["", "At these FLOP rates, the paper's 1B models (our FLOPs formula; BPE at the same bytes per token) "
                  "against the paper's measured bytes/s per H100:", "",
                  "| model | FLOPs/byte | bytes/s at our rate | paper (H100) | ours / paper |", "|---|---|---|---|---|"]
        for row in paper:
            lines.append(f"| `{row['preset']}` | {row['flops_per_byte']:.3g} | {row['bytes_per_s']:,.0f} | "
                         f"{row['paper_bytes_per_s']:,.0f} | {row['ratio']:.2f} |")
    gen = result.get("generation", {})
    if gen:
        lines += ["", "Cascaded generation against recomputation (random weights, greedy, fp32 as `aunet generate`):",
                  "", "| preset | context | cascade bytes/s | recompute bytes/s | speedup | identical | "
                  "kernels per cascaded byte | GPU busy in cascade |", "|---|---|---|---|---|---|---|---|"]
        for g in gen.values():
            p = g["profile_cascade"]
            busy = f"{p['busy_s'] / p['wall_s']:.0%}" if p["wall_s"] else "-"
            for r in g["rows"]:
                lines.append(f"| `{g['preset']}` | {r['context_bytes']} | {r['cascade_bytes_per_s']:.0f} | "
                             f"{r['recompute_bytes_per_s']:.0f} | {r['speedup']:.1f}x | "
                             f"{'yes' if r['identical_output'] else 'NO'} | {p['per_byte_launches']:.0f} | {busy} |")
    lines += feed_summary(result.get("feed"))
    rows = targets(result)
    if rows:
        lines += ["", "| target | measured | met |", "|---|---|---|"]
        lines += [f"| {n} | {v} | {'yes' if ok else ('**no**' if ok is False else '-')} |" for n, v, ok in rows]
    if result.get("elapsed_s"):
        lines += ["", "Wall time at the end of each part (s since the start, compilation included): " + ", ".join(
            f"{part} {seconds:.0f}" for part, seconds in result["elapsed_s"].items())]
    return "\n".join(lines)


def record(path: Path) -> None:
    """Write a fetched result into ``benchmarks/gpu-check-<device>.json`` and its BENCHMARKS.md section."""
    from datetime import datetime

    result = json.loads(path.read_text())
    key = f"gpu-check-{result['device']}{'-micro' if result.get('micro') else ''}"
    key += f"-{result['label']}" if result.get("label") else ""
    machine = (f"{result['device_name']}, torch {result['torch']}"
               + (f" (CUDA {result['cuda']})" if result.get("cuda") else "") + f", Python {result['python']}")
    profiles = {f: t["profile_two_steps"]["top_kernels"] for f, t in result.get("train", {}).items()}
    text = summary(result)
    if profiles:
        text += "\n\nTop kernels of two training steps (the profile saved with the numbers):\n"
        for family, table in profiles.items():
            text += f"\n{family}:\n```\n" + "\n".join(table) + "\n```\n"
    measured = datetime.fromisoformat(result["measured_at"]) if result.get("measured_at") else None
    versions = result.get("versions") or {"torch": result["torch"]}
    write_section(key, result, text, result.get("command", "python -m aunet.bench.gpu"), machine, versions=versions,
                  measured=measured)


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(prog="python -m aunet.bench.gpu", description=doc.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Record a fetched result with --record FILE.")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--micro", action="store_true",
                        help="microscopic presets (tiny-*) instead of the 1e19 rung: proves the script, not numbers")
    parser.add_argument("--presets", help=f"comma-separated training presets (default {','.join(TRAIN_PRESETS)})")
    parser.add_argument("--generation-presets",
                        help=f"comma-separated AU-Net presets to time generation with (default "
                             f"{','.join(GENERATION_PRESETS)}; empty for none)")
    parser.add_argument("--micro-batch", type=int, default=16, help="sequences per step (default 16)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per preset (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed first steps, compilation included (default 3)")
    compile_group = parser.add_mutually_exclusive_group()
    compile_group.add_argument("--compile", dest="compile", action="store_true", default=None,
                               help="torch.compile the forward (default on a GPU)")
    compile_group.add_argument("--no-compile", dest="compile", action="store_false", help="train eagerly")
    parser.add_argument("--eager-loss-presets", default=None,
                        help="with compilation, train these presets once more with the loss left eager, for the "
                             "comparison (default on a GPU: ladder/bpe-1e19)")
    parser.add_argument("--bpe-bytes-per-token", type=float, default=PAPER_BYTES_PER_TOKEN,
                        help=f"bytes per BPE token for bytes/s (default {PAPER_BYTES_PER_TOKEN}, the paper's)")
    parser.add_argument("--contexts", default="1024,4096", help="generation context lengths in bytes")
    parser.add_argument("--new-bytes", type=int, default=32, help="bytes generated per timed run (default 32)")
    parser.add_argument("--repeats", type=int, default=2, help="generation: best of this many runs (default 2)")
    parser.add_argument("--feed", action=argparse.BooleanOptionalAction, default=True,
                        help="measure the packed data feed: pack the text repeated, train from a DataLoader over "
                             "the packs (default on; --no-feed skips it)")
    parser.add_argument("--feed-presets",
                        help=f"comma-separated presets fed by the loader (default {','.join(FEED_PRESETS)}; "
                             f"--micro: {','.join(MICRO_FEED_PRESETS)})")
    parser.add_argument("--feed-mb", type=float,
                        help=f"MB of text to pack, the text repeated (default {FEED_MB:g}; --micro: {MICRO_FEED_MB:g})")
    parser.add_argument("--feed-steps", type=int, default=30,
                        help="loader-fed steps per preset and worker count (default 30)")
    parser.add_argument("--feed-workers",
                        help=f"comma-separated DataLoader worker counts (default {FEED_WORKERS}; --micro: "
                             f"{MICRO_FEED_WORKERS}; 0 loads in the training process)")
    parser.add_argument("--feed-prefetch", type=int, default=FEED_PREFETCH,
                        help=f"batches prefetched per worker (default {FEED_PREFETCH}, as aunet train's loader)")
    parser.add_argument("--data", help="text file or folder of .txt files (default: Gutenberg books in the data dir)")
    parser.add_argument("--out", default="build/gpu-check", help="folder for gpu-check.json (default build/gpu-check)")
    parser.add_argument("--label", default="", help="recorded as its own BENCHMARKS.md section gpu-check-DEVICE-LABEL")
    parser.add_argument("--record", metavar="JSON", help="record a fetched gpu-check.json into BENCHMARKS.md and "
                                                          "benchmarks/, and exit")
    args = parser.parse_args(argv)
    if args.record:
        record(Path(args.record))
        return 0
    for name in ("micro_batch", "steps", "new_bytes", "repeats", "feed_steps", "feed_prefetch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 1:
        parser.error("--warmup must be at least 1 (the first step compiles)")
    if not args.bpe_bytes_per_token > 0:
        parser.error("--bpe-bytes-per-token must be positive")
    if args.feed_mb is not None and not args.feed_mb > 0:
        parser.error("--feed-mb must be positive")
    if args.feed_workers is not None:
        try:
            workers = [int(w) for w in args.feed_workers.split(",")]
        except ValueError:
            workers = [-1]
        if any(w < 0 for w in workers):
            parser.error(f"--feed-workers: expected comma-separated counts of 0 or more, got {args.feed_workers!r}")
    result = run_check(args)
    print(summary(result))
    for error in result["errors"]:  # parts that failed without stopping the check
        print(f"[gpu-check] error: {error}", file=sys.stderr)
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
