"""Synthetic but realistic results folders (``results/<sweep>/runs.csv`` and per-run ``metrics.csv``).

Validation bits per byte follow known power laws per family with 0.3% log-normal noise; sizes, data, batch,
learning rate and throughput follow the scaling ladder and the paper's hyperparameter laws, so every column of
the schema holds plausible numbers. Known truths are exported for the tests to compare with.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

BUDGETS = (1e19, 3e19, 1e20, 3e20)
# (E, alpha, bpb at 1e19 FLOPs) per family; A follows.
LAWS = {
    "bpe": (0.62, 0.16, 1.10),
    "aunet1": (0.64, 0.14, 1.16),
    "aunet2": (0.58, 0.17, 1.08),
    "aunet3": (0.57, 0.175, 1.09),
    "aunet4": (0.56, 0.18, 1.11),
}
BPE_BYTES_PER_TOKEN = 4.4
# Bits per byte of each multilingual text relative to the validation bits per byte (English prose): scripts of
# more bytes per character cost fewer bits per byte, unseen ones more.
MULTILINGUAL = {"en": 1.0, "de": 1.25, "fr": 1.2, "es": 1.2, "ru": 0.9, "ar": 1.1, "hi": 0.7, "ko": 1.0,
                "zh": 1.1, "ja": 0.95, "th": 0.6, "zh_gsd": 1.05, "ja_gsd": 0.9, "zh_cmrc2018": 1.0,
                "ja_wikipedia_kyoto": 0.9, "gutenberg_en": 0.95}
PEAK_FLOPS = 989e12
TASKS = {"hellaswag": ("acc", "acc_norm", "acc_bytes"), "arc_easy": ("acc", "acc_norm"),
         "arc_challenge": ("acc", "acc_norm"), "mmlu": ("acc",)}
COLUMNS = ["run_id", "sweep", "family", "variant", "budget_flops", "seed", "status", "error", "params",
           "non_embedding_params", "flops_per_unit", "unit", "flops_per_byte", "head_share", "bytes_planned", "steps",
           "batch_size", "batch_bytes", "lr", "planned_flops", "flops_spent", "bytes_seen", "tokens_seen",
           "bytes_per_token", "val_bpb", "val_loss", "wall_time_s", "bytes_per_s", "flops_per_s", "mfu", "run_dir"]


def law(family: str, C: float | np.ndarray) -> float | np.ndarray:
    E, alpha, at_1e19 = LAWS[family]
    return E + (at_1e19 - E) * (np.asarray(C) / 1e19) ** (-alpha)


def law_params(family: str) -> tuple[float, float, float]:
    """(E, A, alpha) of a family's true curve."""
    E, alpha, at_1e19 = LAWS[family]
    return E, (at_1e19 - E) * 1e19**alpha, alpha


def paper_lr(family: str, C: float) -> float:
    return 19.3 * C**-0.177 if family == "bpe" else 6.6 * C**-0.176


def paper_batch_bytes(family: str, C: float) -> float:
    return 29.9 * C**0.231 * BPE_BYTES_PER_TOKEN if family == "bpe" else 0.66 * C**0.321


def _run_row(sweep: str, family: str, C: float, rng: np.random.Generator, *, seed: int = 0, lr: float | None = None,
             batch_bytes: float | None = None, bpb: float | None = None, tag: str = "") -> dict:
    bpe = family == "bpe"
    params = (C / 6 / 20) ** 0.5 * (1.3 if bpe else 1.0)
    bytes_per_token = BPE_BYTES_PER_TOKEN if bpe else 1.0
    flops_per_unit = 6 * params * (1.4 if bpe else 0.3)
    flops_per_byte = flops_per_unit / bytes_per_token
    batch_bytes = batch_bytes or paper_batch_bytes(family, C)
    seq_bytes = 2048 * bytes_per_token if bpe else 8192
    flops_spent = C * (1 - rng.uniform(0, 0.004))
    bytes_seen = flops_spent / flops_per_byte
    bpb = bpb if bpb is not None else float(law(family, C) * math.exp(rng.normal(0, 0.003)))
    mfu = (0.42 if bpe else 0.33) * math.exp(rng.normal(0, 0.03))
    flops_per_s = mfu * PEAK_FLOPS
    run_id = f"{family}-{C:.0e}-s{seed}{tag}"
    row = dict(
        run_id=run_id, sweep=sweep, family=family, variant="", budget_flops=C, seed=seed, status="finished", error="",
        params=round(params), non_embedding_params=round(params * 0.8), flops_per_unit=flops_per_unit,
        unit="token" if bpe else "byte", flops_per_byte=flops_per_byte, head_share=0.3 if bpe else 0.05,
        bytes_planned=C / flops_per_byte, steps=round(C / flops_per_byte / batch_bytes),
        batch_size=round(batch_bytes / seq_bytes), batch_bytes=batch_bytes, lr=lr or paper_lr(family, C),
        planned_flops=C * 0.999, flops_spent=flops_spent, bytes_seen=bytes_seen,
        tokens_seen=bytes_seen / bytes_per_token, bytes_per_token=bytes_per_token, val_bpb=bpb,
        val_loss=bpb * math.log(2) * bytes_per_token, wall_time_s=flops_spent / flops_per_s,
        bytes_per_s=flops_per_s / flops_per_byte, flops_per_s=flops_per_s, mfu=mfu, run_dir=f"results/runs/{run_id}",
    )
    for task, metrics in TASKS.items():
        # Scores rise from chance as bpb falls; acc_norm a little above acc.
        base = 0.25 + 0.5 / (1 + math.exp(-14 * (0.95 - bpb)))
        for metric in metrics:
            row[f"{task}.{metric}"] = min(1.0, base + (0.02 if metric == "acc_norm" else 0) + rng.normal(0, 0.005))
    for name, factor in MULTILINGUAL.items():
        row[f"multilingual.bpb.{name}"] = bpb * factor * math.exp(rng.normal(0, 0.01))
    return row


def _write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})


def _write_metrics(root: Path, row: dict, rng: np.random.Generator) -> None:
    """A metrics.csv like the trainer's: train rows every 10 steps, validation rows (without training columns)
    every 50 steps, empty cells where a metric was not logged."""
    steps = int(row["steps"])
    flops_per_step = row["flops_spent"] / steps
    units_per_step = row["bytes_seen"] / row["bytes_per_token"] / steps
    rows = []
    for step in range(10, steps + 1, max(10, steps // 40)):
        frac = step / steps
        bpb = row["val_bpb"] * (1 + 1.5 * (1 - frac) ** 2) * math.exp(rng.normal(0, 0.01))
        rows.append({"step": step, "train/loss": bpb * math.log(2) * row["bytes_per_token"],
                     "train/lr": row["lr"] * min(1.0, 10 * frac), "train/flops_spent": step * flops_per_step,
                     "train/units_seen": step * units_per_step, "train/units_per_s": row["bytes_per_s"],
                     "train/flops_per_s": row["flops_per_s"]})
        if step % 50 == 0 or step == steps:
            rows.append({"step": step, "val/bpb": bpb, "val/loss": bpb * math.log(2) * row["bytes_per_token"]})
    columns = ["step", "train/loss", "train/lr", "train/flops_spent", "train/units_seen", "train/units_per_s",
               "train/flops_per_s", "val/bpb", "val/loss"]
    _write_csv(root / row["run_dir"] / "metrics.csv", rows, columns)


def write_scaling_results(root: Path, sweep: str = "scaling", seed: int = 0) -> Path:
    """5 families x 4 budgets, one finished run each, plus a failed and a running run; metrics.csv for the runs of
    the two smallest budgets. Returns ``root/results/<sweep>``."""
    rng = np.random.default_rng(seed)
    rows = [_run_row(sweep, family, C, rng) for family in LAWS for C in BUDGETS]
    for row in rows:
        if row["budget_flops"] <= BUDGETS[1]:
            row["steps"] = min(row["steps"], 400)  # keep the metrics files small
            _write_metrics(root, row, rng)
    failed = {k: "" for k in rows[0]}
    failed.update(run_id="aunet3-1e+21-s0", sweep=sweep, family="aunet3", budget_flops=1e21, seed=0, status="failed",
                  error="CUDA out of memory", run_dir="results/runs/aunet3-1e+21-s0")
    running = {k: "" for k in rows[0]}
    running.update(run_id="bpe-1e+21-s0", sweep=sweep, family="bpe", budget_flops=1e21, seed=0, status="running",
                   params=2.6e9, run_dir="results/runs/bpe-1e+21-s0")
    results = root / "results" / sweep
    _write_csv(results / "runs.csv", rows + [failed, running], COLUMNS + [c for c in rows[0] if c not in COLUMNS])
    return results


# The optimum of the tuning table sits off the paper's laws, so a fitted law differs from the paper's.
TUNING_LR_FACTOR = 1.5
TUNING_BATCH_FACTOR = 0.7


def write_tuning_results(root: Path, sweep: str = "tuning", seed: int = 1) -> Path:
    """BPE and AU-Net-2 at 3 budgets, 5 learning rates x 3 batch sizes each; the loss is a bowl in log LR and
    log batch around ``TUNING_*_FACTOR`` times the paper's laws. Returns ``root/results/<sweep>``."""
    rng = np.random.default_rng(seed)
    rows = []
    for family in ("bpe", "aunet2"):
        for C in BUDGETS[:3]:
            lr_opt = paper_lr(family, C) * TUNING_LR_FACTOR
            b_opt = paper_batch_bytes(family, C) * TUNING_BATCH_FACTOR
            for i, lr_mult in enumerate((0.25, 0.5, 1.0, 2.0, 4.0)):
                for j, b_mult in enumerate((0.5, 1.0, 2.0)):
                    jitter = math.exp(rng.uniform(-0.15, 0.15))  # grids are never centred on the optimum exactly
                    lr, batch = lr_opt * lr_mult * jitter, b_opt * b_mult
                    penalty = 0.02 * math.log2(lr / lr_opt) ** 2 + 0.01 * math.log2(batch / b_opt) ** 2
                    bpb = float(law(family, C) * (1 + penalty) * math.exp(rng.normal(0, 0.001)))
                    rows.append(_run_row(sweep, family, C, rng, lr=lr, batch_bytes=batch, bpb=bpb,
                                         tag=f"-lr{i}-b{j}"))
    results = root / "results" / sweep
    _write_csv(results / "runs.csv", rows, COLUMNS + [c for c in rows[0] if c not in COLUMNS])
    return results


def write_minimal_results(root: Path, sweep: str = "minimal") -> Path:
    """A sparse table: only run_id, family, budget_flops, status, val_bpb; BPE at 3 budgets, AU-Net-1 at 2,
    AU-Net-2 at 1. Every notebook must skip what it cannot do and still finish."""
    rows = [
        {"run_id": "b1", "family": "bpe", "budget_flops": 1e19, "status": "finished", "val_bpb": 1.10},
        {"run_id": "b2", "family": "bpe", "budget_flops": 3e19, "status": "finished", "val_bpb": 1.02},
        {"run_id": "b3", "family": "bpe", "budget_flops": 1e20, "status": "finished", "val_bpb": 0.96},
        {"run_id": "c1", "family": "aunet1", "budget_flops": 1e19, "status": "finished", "val_bpb": 1.15},
        {"run_id": "c2", "family": "aunet1", "budget_flops": 3e19, "status": "finished", "val_bpb": 1.07},
        {"run_id": "a1", "family": "aunet2", "budget_flops": 1e19, "status": "finished", "val_bpb": 1.08},
        {"run_id": "a2", "family": "aunet2", "budget_flops": 3e19, "status": "planned", "val_bpb": None},
    ]
    results = root / "results" / sweep
    _write_csv(results / "runs.csv", rows, ["run_id", "family", "budget_flops", "status", "val_bpb"])
    return results


ISOFLOP_NOISE = 0.004  # seed-to-seed std of val bpb in the isoFLOP fixture
ISOFLOP_CURVATURE = 0.06  # bits per byte per (ln size)^2 around each optimum


def write_isoflop_results(root: Path, sweep: str = "isoflop", seed: int = 2,
                          missing: tuple[tuple[str, float, float], ...] = ()) -> Path:
    """5 families x 4 budgets x 3 sizes (FLOPs per byte 0.5x, 1x, 2x of a grid centred 1.25x off each family's
    optimum), every size spending the budget; the loss is a parabola in ln size whose vertex lies on the family's
    law, plus seed noise; seeds 1 and 2 repeat the centre size at the two smallest budgets. ``missing``: (family,
    budget, multiplier) runs left out, as in a sweep still running."""
    rng = np.random.default_rng(seed)
    rows = []
    for family in LAWS:
        for C in BUDGETS:
            base = _run_row(sweep, family, C, rng)
            optimum = base["flops_per_byte"]
            for m in (0.5, 1.0, 2.0):
                seeds = (0, 1, 2) if m == 1.0 and C <= BUDGETS[1] else (0,)
                for s in seeds:
                    size = optimum * m * 1.25
                    bpb = float(law(family, C) + ISOFLOP_CURVATURE * math.log(size / optimum) ** 2
                                + rng.normal(0, ISOFLOP_NOISE))
                    row = _run_row(sweep, family, C, rng, seed=s, bpb=bpb, tag=f"-m{m}")
                    row.update(flops_per_byte=size, bytes_planned=C / size, bytes_seen=row["flops_spent"] / size)
                    if (family, C, m) not in missing:
                        rows.append(row)
    for row in rows:  # the LRs came from a fitted-law file, as in a fair study (relative to the repository)
        row["hparams_source"] = f"fitted:{ISOFLOP_LAW_FILE}"
    write_law_file(root / ISOFLOP_LAW_FILE)
    results = root / "results" / sweep
    _write_csv(results / "runs.csv", rows, COLUMNS + [c for c in rows[0] if c not in COLUMNS])
    return results


VARIANT_OFFSETS = {"word": 0.0, "stride4": 0.03}  # bits per byte each variant of AU-Net-2 lies above its law


def write_variant_results(root: Path, sweep: str = "variants", seed: int = 4) -> Path:
    """An ablation without repeated seeds: AU-Net-2 in two variants (``VARIANT_OFFSETS``) at the middle two budgets,
    3 sizes each as in :func:`write_isoflop_results`, seed 0 only: its noise has to come from another study."""
    rng = np.random.default_rng(seed)
    rows = []
    for variant, offset in VARIANT_OFFSETS.items():
        for C in BUDGETS[1:3]:
            optimum = _run_row(sweep, "aunet2", C, rng)["flops_per_byte"]
            for m in (0.5, 1.0, 2.0):
                size = optimum * m * 1.25
                bpb = float(law("aunet2", C) + offset + ISOFLOP_CURVATURE * math.log(size / optimum) ** 2
                            + rng.normal(0, ISOFLOP_NOISE))
                row = _run_row(sweep, "aunet2", C, rng, bpb=bpb, tag=f"-{variant}-m{m}")
                row.update(variant=variant, flops_per_byte=size, bytes_planned=C / size,
                           bytes_seen=row["flops_spent"] / size)
                rows.append(row)
    results = root / "results" / sweep
    _write_csv(results / "runs.csv", rows, COLUMNS + [c for c in rows[0] if c not in COLUMNS])
    return results


ISOFLOP_LAW_FILE = "results/tune-fixture/laws.json"


def fixture_lr_law(family: str) -> tuple[float, float]:
    """(k, a) of the fixture's fitted-law file: LR = k C^a."""
    return (0.6 if family == "bpe" else 1.2) * 1e-2 * 1e19**0.15, -0.15


def write_law_file(path: Path) -> None:
    """A law file in the format `aunet sweep tune` writes: per family, an LR law and a fixed batch."""
    laws = {f: {"lr": {"coefficient": fixture_lr_law(f)[0], "exponent": fixture_lr_law(f)[1],
                       "fit": {"intervals": {"a": [-0.2, -0.1]}}},
                "batch_bytes": {"coefficient": 4096.0, "exponent": 0.0, "fit": {"fixed": True}}} for f in LAWS}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(laws))


LR_GRID = tuple(2e-3 * 2.0**i for i in range(6))  # the CPU tuning grid: 6 learning rates a factor 2 apart
LR_CURVATURE = 0.05  # bits per byte per (ln LR)^2 around the optimum


def lr_optimum(family: str, C: float) -> float:
    return (0.6 if family == "bpe" else 1.2) * (C / 1e19) ** -0.15 * 1e-2


def write_lr_grid_results(root: Path, sweep: str = "lrgrid", seed: int = 3) -> Path:
    """BPE and AU-Net-2 at 2 budgets, the 6 learning rates of ``LR_GRID`` each at one fixed batch; the loss is a
    parabola in ln LR around ``lr_optimum`` plus 0.2% noise. Returns ``root/results/<sweep>``."""
    rng = np.random.default_rng(seed)
    rows = []
    for family in ("bpe", "aunet2"):
        for C in BUDGETS[:2]:
            for i, lr in enumerate(LR_GRID):
                bpb = float(law(family, C) + LR_CURVATURE * math.log(lr / lr_optimum(family, C)) ** 2
                            + rng.normal(0, 0.002))
                rows.append(_run_row(sweep, family, C, rng, lr=lr, batch_bytes=4096.0, bpb=bpb, tag=f"-lr{i}"))
    results = root / "results" / sweep
    _write_csv(results / "runs.csv", rows, COLUMNS + [c for c in rows[0] if c not in COLUMNS])
    return results


def write_chunking_results(root: Path, sweep: str = "chunking", seed: int = 5) -> Path:
    """Learned chunking as a study logs it: hnet1 (one chunking step) and hnet2 (two) at the first three budgets,
    3 sizes each, seeds 1 and 2 repeating the centre size at the two smallest budgets, with the per-step boundary
    columns of ``runs.csv`` (bytes per chunk, word shares, recall, truncation) and the cost columns
    (``flops_drift``, ``stopped_by``); one BPE run per budget beside them, without those columns. No run folders:
    targets and chance levels cannot be rebuilt. Returns ``root/results/<sweep>``."""
    rng = np.random.default_rng(seed)
    rows = []
    for family, n_steps in (("hnet1", 1), ("hnet2", 2)):
        for C in BUDGETS[:3]:
            for m in (0.5, 1.0, 2.0):
                for s in ((0, 1, 2) if m == 1.0 and C <= BUDGETS[1] else (0,)):
                    row = _run_row(sweep, "aunet2", C, rng, seed=s, tag=f"-{family}-m{m}",
                                   bpb=float(law("aunet2", C) + rng.normal(0, ISOFLOP_NOISE)))
                    row.update(family=family, run_id=row["run_id"].replace("aunet2", family, 1),
                               flops_per_byte=row["flops_per_byte"] * m, flops_drift=rng.uniform(0.0, 0.3),
                               stopped_by="budget")
                    row["run_dir"] = f"results/runs/{row['run_id']}"
                    for n in range(1, n_steps + 1):
                        row.update({f"bytes_per_chunk_end_{n}": 4.0 * 2 ** (n - 1) * rng.uniform(0.9, 1.1),
                                    f"word_start_share_end_{n}": rng.uniform(0.05, 0.2),
                                    f"word_next_share_end_{n}": rng.uniform(0.3, 0.8),
                                    f"word_recall_end_{n}": rng.uniform(0.05, 0.2), f"truncated_{n}": 0.0})
                    rows.append(row)
    rows += [_run_row(sweep, "bpe", C, rng) for C in BUDGETS[:3]]
    results = root / "results" / sweep
    columns = list(COLUMNS)
    for row in rows:
        columns += [c for c in row if c not in columns]
    _write_csv(results / "runs.csv", rows, columns)
    return results
