"""``aunet bench``: every performance figure of the suite, measured side by side in one process.

1. Training throughput per family (BPE, AU-Net-1..4) at matched FLOPs per byte: bytes/s, achieved FLOP/s (our
   formula) and its ratio to a dense matmul measured in the same run, and each family's FLOP/s relative to BPE's.
   Families are sized like ``sweeps/cpu-study.yaml`` (same templates and sizing rule) at one target FLOPs per byte,
   so they are the models a study actually trains. Steps alternate between families so machine drift hits all.
   On CPU, each family's step is also split by the profiler into matmuls, attention and everything else, with the
   charged FLOP rate of each part: the measured cause of a family's gap to BPE.
2. Where the time of an AU-Net-3 step goes: byte stage, deeper stages, pooling, upsampling, head and loss,
   optimizer, and the data loader, each timed forward + backward in isolation at the step's shapes.
3. Level computation (MB/s, one core), evaluation requests/s batched against unbatched, cascaded generation against
   recomputation at 1k and 4k bytes of context.
4. Peak memory per family at the same batch: bytes of tensors saved for backward (activations) plus parameters,
   gradients and AdamW state; on CUDA also the allocator's peak.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from aunet.bench.generation import measure as generation_measure
from aunet.bench.levels import measure as levels_measure
from aunet.data.bpe import BPETokenizer
from aunet.data.packed import PackedBatches
from aunet.data.packer import build_pack
from aunet.data.packing import ByteEncoder, pack
from aunet.evaluation.checkpoint import LoadedModel
from aunet.evaluation.scoring import Scorer
from aunet.flops import flops_report
from aunet.models import ModelConfig, build_model, family_of, load_model_config
from aunet.models.transitions import keep_first_boundaries, pooling_index, segment_index
from aunet.paths import data_dir
from aunet.sweeps.plan import measure_bytes_per_token, tokenizer_vocab
from aunet.sweeps.sizing import size_for
from aunet.sweeps.spec import load_sweep
from aunet.training.optim import adamw, default_precision

FAMILIES = ("bpe", "aunet1", "aunet2", "aunet3", "aunet4")
STUDY = Path(__file__).resolve().parents[3] / "sweeps" / "cpu-study.yaml"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_rate(fn: Callable[[], Any], flops: float, repeats: int, device: torch.device) -> float:
    """FLOP/s of ``fn`` (``flops`` per call): best of 3 timings of ``repeats`` calls, after 3 warm-up calls."""
    for _ in range(3):
        fn()
    _sync(device)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return flops * repeats / best


def matmul_flops_per_s(device: torch.device, dtype: torch.dtype, size: int = 1024, repeats: int = 20) -> float:
    """Dense matmul rate of this device: fp32 on CPU, bf16 on GPU (larger matrices there)."""
    size = 8192 if device.type == "cuda" else size
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    return _best_rate(lambda: a @ b, 2.0 * size**3, repeats, device)


def linear_flops_per_s(device: torch.device, dtype: torch.dtype, width: int, rows: int = 4096,
                       repeats: int = 20) -> float:
    """Rate of the matmul a transformer layer of ``width`` runs most, ``[rows, width] @ [width, 4 width]``: whether
    narrow stages use the machine as well as wide ones."""
    a = torch.randn(rows, width, device=device, dtype=dtype)
    b = torch.randn(width, 4 * width, device=device, dtype=dtype)
    return _best_rate(lambda: a @ b, 2.0 * rows * width * 4 * width, repeats, device)


def _first_width(config: Any) -> int:
    """The width of a model's first (for AU-Net: byte) stage."""
    return flops_report(config).stages[0].dim


def matched_configs(target_flops_per_byte: float) -> tuple[dict[str, Any], dict[str, float]]:
    """Model configs of the five families at one FLOPs per byte, sized with the CPU study's templates."""

    spec = load_sweep(STUDY)
    configs, bytes_per_token = {}, {}
    for family in FAMILIES:
        fam = spec.families[family]
        vocab = tokenizer_vocab(spec, family)
        k = measure_bytes_per_token(spec, vocab) if vocab is not None else 1.0
        sized = size_for(fam, target_flops_per_byte, k, 0.02, f"families.{family}")
        configs[family], bytes_per_token[family] = sized.config, k
    return configs, bytes_per_token


def _batches(config, tokenizer, documents: list[bytes], batch: int, n: int, device: torch.device) -> list[dict]:
    encoder = family_of(config).encoder(lambda: tokenizer)
    windows = pack((encoder.encode(d) for d in documents), config.seq_len + 1, encoder.top_level)
    return stack_windows(windows, batch, n, device)


def stack_windows(windows: Iterator, batch: int, n: int, device: torch.device) -> list[dict]:
    """``n`` batches of ``batch`` packed windows each: ``tokens`` and, where the windows have levels, ``levels``,
    each ``[batch, window]`` on ``device``."""
    out = []
    for _ in range(n):
        chunk = [next(windows) for _ in range(batch)]
        item = {"tokens": torch.from_numpy(np.stack([t for t, _ in chunk])).to(device)}
        if chunk[0][1] is not None:
            item["levels"] = torch.from_numpy(np.stack([lv for _, lv in chunk])).long().to(device)
        out.append(item)
    return out


def _loss(model, batch: dict) -> torch.Tensor:
    logits, targets, _ = family_of(model.config).forward_batch(model, batch)
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())


def _saved_bytes(model, batch: dict) -> int:
    """Bytes of the tensors autograd keeps for backward in one forward (the activation memory)."""
    total = [0]
    seen: set[int] = set()

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = t.untyped_storage().data_ptr()
        if key not in seen:
            seen.add(key)
            total[0] += t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = _loss(model, batch)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return total[0]


def train_throughput(configs: dict, bytes_per_token: dict[str, float], tokenizer, documents: list[bytes],
                     batch: int, steps: int, device: torch.device, autocast,
                     compile: bool = False) -> dict[str, dict[str, Any]]:
    torch.manual_seed(0)
    models = {f: build_model(c).to(device) for f, c in configs.items()}
    if compile:
        for model in models.values():
            model.compile()
    batches = {f: _batches(c, tokenizer, documents, batch, steps + 2, device) for f, c in configs.items()}
    optimizers = {f: adamw(m.parameters(), default_precision(device.type), lr=1e-3) for f, m in models.items()}
    times: dict[str, list[float]] = {f: [] for f in configs}
    for i in range(steps + 2):
        for family, model in models.items():
            _sync(device)
            start = time.perf_counter()
            with autocast():
                loss = _loss(model, batches[family][i])
            loss.backward()
            optimizers[family].step()
            optimizers[family].zero_grad(set_to_none=True)
            _sync(device)
            if i >= 2:  # two warm-up steps
                times[family].append(time.perf_counter() - start)
    out: dict[str, dict[str, Any]] = {}
    for family, config in configs.items():
        report = flops_report(config)
        seconds = statistics.median(times[family])
        units = batch * report.seq_len
        params = sum(p.numel() * p.element_size() for p in models[family].parameters())
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        with autocast():
            activations = _saved_bytes(models[family], batches[family][0])
        attention = report.attention_flops_per_unit * units
        out[family] = {
            "params": report.params, "flops_per_byte": report.flops_per_unit / bytes_per_token[family],
            "seconds_per_step": seconds, "bytes_per_s": units * bytes_per_token[family] / seconds,
            "flops_per_s": units * report.flops_per_unit / seconds,
            "peak_memory_bytes": activations + 4 * params,  # + weights, grads, Adam m and v
            "activation_bytes": activations,
            "attention_flops_share": report.attention_flops_per_unit / report.flops_per_unit,
        }
        if device.type == "cpu":  # where the step's time goes, and how fast each kind of work runs
            split = time_split(models[family], optimizers[family], batches[family][:2], autocast)
            out[family]["time_shares"] = {k: v / sum(split.values()) for k, v in split.items()}
            out[family]["matmul_part_flops_per_s"] = (units * report.flops_per_unit - attention) / split["matmul"]
            out[family]["attention_part_flops_per_s"] = attention / split["attention"] if split["attention"] else 0.0
        if device.type == "cuda":
            out[family]["cuda_peak_allocated"] = torch.cuda.max_memory_allocated()
    return out


MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_grouped_mm")


def op_category(name: str) -> str:
    """``"matmul"``, ``"attention"`` or ``"other"`` for a profiler op name (its self time is counted there)."""
    if name in MATMUL_OPS:
        return "matmul"
    if "scaled_dot_product" in name or "attention" in name:
        return "attention"
    return "other"


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for the block: the profiler's C++ side prints a start and a stop line
    per use to it, which would be noise in the bench's report. Python exceptions still propagate."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def time_split(model, optimizer, batches: list[dict], autocast) -> dict[str, float]:
    """Seconds per training step spent in matmuls, in attention kernels and in everything else (elementwise ops,
    norms, copies, the optimizer), from the profiler's self times over ``batches`` (one step each).

    The profiler adds a few microseconds per op, mostly to "other": compare shares between families of one run.
    CPU only: on a GPU, ops' and kernels' times would have to be matched up first.
    """
    from torch.profiler import ProfilerActivity, profile

    with _native_stderr_silenced(), profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in batches:
            with autocast():
                loss = _loss(model, batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    split = {"matmul": 0.0, "attention": 0.0, "other": 0.0}
    for event in prof.key_averages():
        split[op_category(event.key)] += event.self_cpu_time_total * 1e-6 / len(batches)
    return split


def _time(fn, repeats: int, device: torch.device) -> float:
    fn()
    _sync(device)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def step_breakdown(config: ModelConfig, batch_data: dict, steps: int, device: torch.device,
                   make_batch) -> dict[str, float]:
    """Seconds per part of one AU-Net training step (forward + backward of each part at the step's shapes)."""

    torch.manual_seed(0)
    model = build_model(config).to(device)
    optimizer = adamw(model.parameters(), default_precision(device.type), lr=1e-3)
    tokens, levels = batch_data["tokens"][:, :-1], batch_data["levels"][:, :-1]
    n = config.n_stages

    def full() -> None:
        _loss(model, batch_data).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    # Record each part's inputs from one forward, then time each part alone (forward + backward).
    with torch.no_grad():
        h = model.embed(tokens)
        lv = torch.cat([torch.full_like(levels[:, :1], n - 1), levels[:, 1:]], 1)
        plans, skips = [], []
        for i in range(n - 1):
            h = model.encoders[i](h)
            skips.append(h)
            mask = keep_first_boundaries(lv > i, min(config.caps[i + 1], h.shape[1]))
            index, count = pooling_index(mask, min(config.caps[i + 1], h.shape[1]))
            segment, offset = segment_index(mask)
            plans.append((mask, index, segment, offset, h))
            h_next = model.downs[i](h, index)
            real = torch.arange(index.shape[1], device=device)[None] < count[:, None]
            lv = torch.where(real, lv.gather(1, index), torch.full_like(index, -1))
            h = h_next
        trunk_in = h
        h = model.trunk(h)
        coarse = [None] * (n - 1)
        for i in reversed(range(n - 1)):
            coarse[i] = h
            h = model.decoders[i](skips[i] + model.ups[i](h, plans[i][2], plans[i][3], plans[i][0]))
        final = h

    def grad(x: torch.Tensor) -> torch.Tensor:
        return x.detach().requires_grad_(True)

    def run_stacks(stacks_inputs) -> None:
        total = sum(stack(grad(x)).float().sum() for stack, x in stacks_inputs)
        total.backward()

    byte_inputs = [(model.encoders[0], model.embed(tokens).detach()), (model.decoders[0], skips[0])] if n > 1 else []
    deep_inputs = [(model.trunk, trunk_in)] + [(model.encoders[i], plans[i][4]) for i in range(1, n - 1)] \
        + [(model.decoders[i], skips[i]) for i in range(1, n - 1)]
    seconds = {
        "byte stage": _time(lambda: run_stacks(byte_inputs), steps, device) if byte_inputs else 0.0,
        "deeper stages": _time(lambda: run_stacks(deep_inputs), steps, device),
        "pooling": _time(lambda: sum(model.downs[i](grad(plans[i][4]), plans[i][1]).sum()
                                     for i in range(n - 1)).backward(), steps, device),
        "upsampling": _time(lambda: sum(model.ups[i](grad(coarse[i]), plans[i][2], plans[i][3], plans[i][0]).sum()
                                        for i in range(n - 1)).backward(), steps, device),
        "head and loss": _time(lambda: F.cross_entropy(model.head(model.norm(grad(final))).float().flatten(0, 1),
                                                       batch_data["tokens"][:, 1:].flatten()).backward(),
                               steps, device),
    }

    def optimizer_only() -> None:
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        optimizer.step()

    seconds["optimizer"] = _time(optimizer_only, steps, device)
    optimizer.zero_grad(set_to_none=True)
    seconds["data loader"] = _time(make_batch, steps, torch.device("cpu"))
    seconds["step"] = _time(full, steps, device) + seconds["data loader"]
    return seconds


def eval_requests_per_s(config, device: torch.device, text: bytes, n_requests: int) -> dict[str, float]:
    """Log-likelihood requests/s of the evaluation scorer, batched (32) against one request at a time."""

    model = build_model(config).to(device).eval()
    loaded = LoadedModel(model, config)
    lines = [line for line in text.decode("utf-8", "replace").split("\n") if len(line) > 40][: 2 * n_requests]
    pairs = [(lines[2 * i], " " + lines[2 * i + 1][:60]) for i in range(n_requests)]
    rates = {}
    for name, batch in (("batched", 32), ("unbatched", 1)):
        scorer = Scorer(loaded, batch_size=batch)
        with torch.no_grad():
            seconds = _time(lambda s=scorer: s.loglikelihood(pairs), 1, device)
        rates[f"{name}_requests_per_s"] = n_requests / seconds
    rates["speedup"] = rates["batched_requests_per_s"] / rates["unbatched_requests_per_s"]
    return rates


def run(quick: bool = False, device_name: str = "cpu", compile: bool = False,
        flops_per_byte: float | None = None) -> dict[str, Any]:
    """Every figure of the module docstring, as one JSON-able dict. ``flops_per_byte`` sizes the training families
    (default 1e6 with ``quick``, else 2e6): larger values give wider stages."""
    device = torch.device(device_name)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda" else nullcontext
    books = sorted((data_dir() / "corpora" / "gutenberg_en" / "books").glob("*.txt"))
    documents = [p.read_bytes() for p in books[: 4 if quick else 12]]
    out: dict[str, Any] = {"device": device_name, "dtype": str(dtype).replace("torch.", ""), "quick": quick,
                           "compiled": compile, "custom_flops_per_byte": flops_per_byte is not None}

    out["matmul_flops_per_s"] = matmul_flops_per_s(device, dtype)

    target = flops_per_byte or (1.0e6 if quick else 2.0e6)
    configs, bytes_per_token = matched_configs(target)

    # The matmul rate at each family's first-stage width, measured here: it explains most of the per-FLOP gap.
    out["linear_flops_per_s"] = {family: {"width": _first_width(cfg),
                                          "flops_per_s": linear_flops_per_s(device, dtype, _first_width(cfg))}
                                 for family, cfg in configs.items()}
    tokenizer = BPETokenizer.train(documents, vocab_size=configs["bpe"].vocab_size, max_bytes=8_000_000)
    batch = 8
    train = train_throughput(configs, bytes_per_token, tokenizer, documents, batch, 6 if quick else 15, device,
                             autocast, compile)
    for family, row in train.items():
        row["utilization"] = row["flops_per_s"] / out["matmul_flops_per_s"]
        row["ratio_to_bpe"] = row["flops_per_s"] / train["bpe"]["flops_per_s"]
    out["train"] = train
    out["target_flops_per_byte"] = target

    aunet3 = configs["aunet3"]
    batches = _batches(aunet3, None, documents, batch, 2, device)

    encoder = ByteEncoder(aunet3.splits)
    with tempfile.TemporaryDirectory() as tmp:  # the default training stream: a pack, read by window index
        pack, _ = build_pack(Path(tmp), {"bench": "aunet3"}, lambda: iter(documents), encoder, processes=1,
                             progress=False)
        stream = iter(PackedBatches(pack, aunet3.seq_len, batch, seed=0, top_level=encoder.top_level))
        breakdown = step_breakdown(aunet3, batches[0], 3 if quick else 8, device, lambda: next(stream))
    out["aunet3_step_seconds"] = breakdown
    out["pool_upsample_share"] = (breakdown["pooling"] + breakdown["upsampling"]) / breakdown["step"]
    out["data_loader_share"] = breakdown["data loader"] / breakdown["step"]

    out["levels_mb_per_s"] = levels_measure(documents, ["word@1", "word@2", "word@4"], 3)["mb_per_s_median"]

    text = (data_dir() / "corpora" / "tinyshakespeare" / "input.txt").read_bytes()
    out["eval"] = eval_requests_per_s(configs["aunet2"], device, text, 64 if quick else 256)

    gen_config = load_model_config("tiny-aunet3")
    torch.manual_seed(0)
    loaded = LoadedModel(build_model(gen_config).to(device).eval(), gen_config)
    for context in (1024, 4096):
        row = generation_measure(loaded, text[:context], 8 if quick else 32, 1 if quick else 2)
        out[f"generation_{context // 1024}k"] = row
    out["generation_speedup_4k"] = out["generation_4k"]["speedup"]
    out["machine"] = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                      "threads": torch.get_num_threads(),
                      "cuda": torch.cuda.get_device_name(0) if device.type == "cuda" else None}
    return out
