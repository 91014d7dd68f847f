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

Results are written to ``--out`` as one JSON file after every part, so a run stopped at its time limit keeps what it
measured. Step times come from CUDA events (host clock plus synchronisation on CPU), medians over the timed steps.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from aunet.bench.generation import measure
from aunet.bench.record import write_section
from aunet.bench.suite import _native_stderr_silenced, _sync, stack_windows
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


def byte_batches(config: ModelConfig, text: bytes, micro_batch: int, count: int,
                 device: torch.device) -> list[dict[str, torch.Tensor]]:
    """``count`` AU-Net batches of real text, ``tokens`` and ``levels`` ``[micro_batch, seq_len + 1]``, packed by the
    training pipeline's encoder (the text is cycled when it is shorter than the batches need)."""

    encoder = family_of(config).encoder()
    documents = [d for d in text.split(b"\n\n\n") if d.strip()] or [text]

    def cycled():
        while True:
            yield from (encoder.encode(d) for d in documents)

    return stack_windows(pack(cycled(), config.seq_len + 1, encoder.top_level), micro_batch, count, device)


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
                 device: torch.device, bpe_bytes_per_token: float, eager_loss: bool = False) -> dict[str, Any]:
    """Every training figure of the module docstring for one preset (see there); ``eager_loss`` keeps the loss
    uncompiled even with ``compile`` (the comparison that shows what compiling it gains)."""

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
        batches = [{"tokens": family.synthetic_batch(micro_batch, generator)["tokens"].to(device)}
                   for _ in range(n_batches)]
    else:
        batches = byte_batches(config, text, micro_batch, n_batches, device)
    graphs = graph_report(model, batches[0], device)
    optimizer = adamw(model.parameters(), default_precision(device.type), lr=1e-4)
    if compile:
        model.compile()  # as LanguageModelModule(compile=True) does: the forward, default options
    step = make_step(model, optimizer, device, compile and not eager_loss)
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
    text = _text(args.data, max(contexts) + 1)
    name, peak = datasheet_peak(device)
    from datetime import datetime, timezone

    result: dict[str, Any] = {
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "versions": library_versions(),
        "device": device.type, "device_name": name, "micro": micro, "label": args.label,
        "command": " ".join(["python -m aunet.bench.gpu", *sys.argv[1:]]),
        "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
        "datasheet_bf16_flops_per_s": peak, "bpe_bytes_per_token": args.bpe_bytes_per_token, "train": {},
        "generation": {},
    }
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # as in the paper's runs; bf16 autocast does the matmuls
    result["dense_matmul_flops_per_s"] = dense_matmul_rate(device, 8192 if device.type == "cuda" else 256)
    result["dense_matmul_dtype"] = "bfloat16" if device.type == "cuda" else "float32"
    _write(out_dir, result)
    eager_loss = [p for p in (args.eager_loss_presets or "").split(",") if p] if compile else []
    for preset, eager in [(p, False) for p in train_presets] + [(p, True) for p in eager_loss]:
        print(f"[gpu-check] training {preset}{' (loss not compiled)' if eager else ''} ...", flush=True)
        row = train_preset(preset, text, args.micro_batch, args.steps, args.warmup, compile, device,
                           args.bpe_bytes_per_token, eager_loss=eager)
        row["utilization_measured"] = row["flops_per_s"] / result["dense_matmul_flops_per_s"]
        row["utilization_datasheet"] = row["flops_per_s"] / peak if peak else None
        result["train"][row["family"]] = row
        print(f"[gpu-check]   {row['bytes_per_s']:.4g} bytes/s, {row['flops_per_s']:.3g} FLOP/s "
              f"({row['utilization_measured']:.0%} of the dense matmul), step {row['seconds_per_step'] * 1e3:.1f} ms, "
              f"warm-up {row['warmup_seconds']:.0f} s", flush=True)
        _write(out_dir, result)
    if "bpe" in result["train"]:
        bpe = result["train"]["bpe"]
        for row in result["train"].values():  # against BPE as trained (the compiled loss when compiling)
            row["bytes_per_s_vs_bpe"] = row["bytes_per_s"] / bpe["bytes_per_s"]
            row["flops_per_s_vs_bpe"] = row["flops_per_s"] / bpe["flops_per_s"]
    for preset in gen_presets:
        print(f"[gpu-check] generation {preset} ...", flush=True)
        result["generation"][preset] = generation_preset(preset, text, contexts, args.new_bytes, args.repeats,
                                                         device)
        _write(out_dir, result)
    result["complete"] = True
    _write(out_dir, result)
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
    rows = targets(result)
    if rows:
        lines += ["", "| target | measured | met |", "|---|---|---|"]
        lines += [f"| {n} | {v} | {'yes' if ok else ('**no**' if ok is False else '-')} |" for n, v, ok in rows]
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
    parser.add_argument("--data", help="text file or folder of .txt files (default: Gutenberg books in the data dir)")
    parser.add_argument("--out", default="build/gpu-check", help="folder for gpu-check.json (default build/gpu-check)")
    parser.add_argument("--label", default="", help="recorded as its own BENCHMARKS.md section gpu-check-DEVICE-LABEL")
    parser.add_argument("--record", metavar="JSON", help="record a fetched gpu-check.json into BENCHMARKS.md and "
                                                          "benchmarks/, and exit")
    args = parser.parse_args(argv)
    if args.record:
        record(Path(args.record))
        return 0
    for name in ("micro_batch", "steps", "new_bytes", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 1:
        parser.error("--warmup must be at least 1 (the first step compiles)")
    if not args.bpe_bytes_per_token > 0:
        parser.error("--bpe-bytes-per-token must be positive")
    result = run_check(args)
    print(summary(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
