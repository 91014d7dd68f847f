"""Resolve a sweep into runs: for every budget, family, size and seed a run config with its steps, batch and LR.

Protocol (``size.rule: data_ratio``, the paper's): at budget C every family sees the same bytes,
D = sqrt(gamma_bytes * C), and its model costs about C / D FLOPs per byte, so it spends about C. Bytes per token of
BPE families are measured with their tokenizer on the corpus (or given by ``bytes_per_token``) so that FLOPs per
byte and bytes seen are comparable across families.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from aunet.data.pipeline import measured_bytes_per_token, training_documents
from aunet.errors import ConfigError, UserError
from aunet.flops import flops_report
from aunet.io import read_json
from aunet.models import FAMILY_CLASSES, build_model, family_of
from aunet.sweeps.fairness import check_caps, fairness_rows, family_entry, measure_caps, training_sample
from aunet.sweeps.hparams import hyperparameters
from aunet.sweeps.sizing import DEFAULT_MIN_HEADS, build_config, check_template, floor_cost, size_for
from aunet.sweeps.spec import SweepSpec
from aunet.training.config import RunConfig, run_config_from_dict


@dataclass
class PlannedRun:
    """One run of a sweep and everything the plan knows about it before it runs."""

    run_id: str
    sweep: str
    family: str
    variant: str
    budget_flops: float
    seed: int
    multiplier: float
    config: RunConfig
    params: int
    flops_per_unit: float
    unit: str
    flops_per_byte: float
    head_share: float
    target_flops_per_byte: float
    size_gap: float
    bytes: float
    epochs: float | None
    steps: int
    batch_size: int
    batch_bytes: float
    lr: float
    hparams_source: str
    planned_flops: float
    est_time_s: float | None = None
    est_time_source: str = ""
    grid_shift: float = 1.0
    warnings: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        """Flat fields for tables and ``--json`` (the run config is kept as a nested dict)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "config"}
        out["batch_bytes"] = float(self.batch_bytes)
        out["bytes_planned"] = self.bytes
        out["run_config"] = self.config.to_dict()
        return out


@dataclass
class Plan:
    """The runs of a sweep, with what was measured to plan them: bytes per token, training bytes, and (when the
    corpus was read) each AU-Net family's boundary counts against its caps (:mod:`aunet.sweeps.fairness`)."""

    spec: SweepSpec
    runs: list[PlannedRun]
    bytes_per_token: dict[str, float]
    train_bytes: int | None
    cap_stats: dict[str, Any] = field(default_factory=dict)

    def fairness(self) -> list[dict[str, Any]]:
        """Per run: stages, data per parameter, epochs, LR source, cap truncation and padding."""

        return fairness_rows(self, self.cap_stats)

    @property
    def results_dir(self) -> Path:
        return Path(self.spec.results_dir) / self.spec.name

    @property
    def runs_dir(self) -> Path:
        return Path(self.spec.results_dir) / "runs"


def tokenizer_vocab(spec: SweepSpec, family: str) -> int | None:
    """The vocabulary of the tokenizer family ``family`` of ``spec`` trains, or None when it reads bytes."""

    fam = spec.families[family]
    if fam.template is not None:
        template = check_template({**fam.template, **fam.overrides}, f"families.{family}.template")
        return int(template["vocab_size"]) if FAMILY_CLASSES[template["family"]].needs_tokenizer else None

    if isinstance(fam.ladder, dict):
        entry = next(iter(fam.ladder.values()))
    else:
        entry = fam.ladder[0] if fam.ladder is not None else fam.model
    cfg = build_config(entry, fam.overrides, f"families.{family}")
    return cfg.vocab_size if family_of(cfg).needs_tokenizer else None


def measure_bytes_per_token(spec: SweepSpec, vocab: int) -> float:
    """Bytes per token of the BPE the runs will train, measured on the corpus's validation text."""
    probe = _probe_run_config(spec, {"family": "bpe", "dim": 64, "layers": 1, "head_dim": 64,
                                     "vocab_size": vocab, "seq_len": 64})
    return measured_bytes_per_token(probe.data, probe.model, probe.train.seed)


def _probe_run_config(spec: SweepSpec, model: dict) -> RunConfig:
    return run_config_from_dict({"model": model, "data": spec.data, "train": {**spec.train, "max_steps": 1}})


def training_bytes(spec: SweepSpec) -> int | None:
    """Bytes of the training split (for epochs), or None when the corpus cannot be read here."""
    try:
        return sum(len(d) for d in training_documents(spec.data_config()))
    except UserError:
        return None


def plan_sweep(spec: SweepSpec, *, measure: bool = True) -> Plan:
    """Every run of ``spec``. With ``measure`` False, nothing reads the corpus (bytes per token must be given)."""
    bpt: dict[str, float] = {}
    measured: dict[int, float] = {}
    for family in spec.families:
        vocab = tokenizer_vocab(spec, family)
        if vocab is None:
            bpt[family] = 1.0
        elif spec.bytes_per_token is not None:
            bpt[family] = spec.bytes_per_token
        elif measure:
            if vocab not in measured:
                measured[vocab] = measure_bytes_per_token(spec, vocab)
            bpt[family] = measured[vocab]
        else:
            raise ConfigError("bytes_per_token", "BPE families need bytes_per_token when the corpus is not read")
    train_bytes = training_bytes(spec) if measure else None
    runs: list[PlannedRun] = []
    rule = spec.size
    floors = {entry: floor_cost(fam, bpt[entry], f"families.{entry}") for entry, fam in spec.families.items()}
    for budget in spec.budgets:
        centre = math.sqrt(budget / rule.gamma_bytes)  # FLOPs per byte of the data-ratio protocol
        shifts = {entry: _grid_shift(rule, centre * fam.size_scale, floors[entry])
                  for entry, fam in spec.families.items()}
        for multiplier in _multipliers(spec, budget):
            for entry, fam in spec.families.items():
                key = f"families.{entry}"
                family = fam.family or entry
                target = centre * multiplier * fam.size_scale * shifts[entry]
                sized = size_for(fam, target, bpt[entry], rule.tolerance, key, budget)
                _check_floors(fam, sized.config, rule.allow_below_floors, key, budget)
                if not sized.in_range and sized.flops_per_byte > target * (1 + rule.tolerance):
                    raise ConfigError(
                        "budgets", f"budget {budget:.3g} is too small for the smallest {family} model "
                        f"({sized.flops_per_byte:.3g} FLOPs per byte, the budget allows {target:.3g}); "
                        "raise the budget or shrink the family's template")
                if rule.rule == "data_ratio":
                    n_bytes = math.sqrt(rule.gamma_bytes * budget)
                else:  # isoflop and fixed: every size spends the budget
                    n_bytes = budget / sized.flops_per_byte
                family_model = family_of(sized.config)
                group = fam.hparams or (entry if entry in spec.hparams else family_model.name)
                hp = hyperparameters(spec.hparams.get(group), family_model.name, budget, bpt[entry],
                                     f"hparams.{group}", law_key=group)
                seq_bytes = sized.config.seq_len * family_model.bytes_per_unit(bpt[entry])
                spec_hp = spec.hparams[group]
                batch = max(spec_hp.min_batch_sequences, round(hp.batch_bytes / seq_bytes))
                steps = max(1, round(n_bytes / (batch * seq_bytes)))
                for seed in _seeds(spec, entry, budget, multiplier):
                    run = _planned(spec, family, fam.variant, budget, seed, multiplier, sized, target, steps, batch,
                                   seq_bytes, hp, train_bytes)
                    run.grid_shift = shifts[entry]
                    runs.append(run)
    plan = Plan(spec, runs, bpt, train_bytes)
    if measure and train_bytes:
        _measure_caps(plan)
    return plan


def _measure_caps(plan: Plan) -> None:
    """Boundary counts of the training text against every AU-Net's caps: refuse caps that truncate too much, warn
    where padding is heavy (on the runs of that family)."""

    if not any(family_of(r.config.model).split_rules() for r in plan.runs):
        return
    plan.cap_stats = measure_caps(plan, training_sample(plan.spec))
    for warning in check_caps(plan, plan.cap_stats, plan.spec.size.max_truncation):
        entry = warning.split(":", 1)[0]
        for run in plan.runs:
            if family_entry(plan.spec, run) == entry and warning not in run.warnings:
                run.warnings.append(warning)


def _grid_shift(rule, centre: float, floor: float | None) -> float:
    """How far to move a family's size grid up so that its smallest size is at least its floor model (1: not at
    all); only with ``size.shift_to_floor``."""
    if not rule.shift_to_floor or floor is None:
        return 1.0
    smallest = centre * min(rule.multipliers)
    return max(1.0, floor * (1 + rule.tolerance / 2) / smallest)


def _multipliers(spec: SweepSpec, budget: float) -> list[float]:
    """The grid's sizes at ``budget``: ``size.multipliers``, plus ``extra_sizes`` where they apply."""
    extra = spec.extra_sizes
    here = extra is not None and any(abs(budget / b - 1) < 1e-6 for b in extra.budgets)
    return list(spec.size.multipliers) + (list(extra.multipliers) if here else [])


def _seeds(spec: SweepSpec, entry: str, budget: float, multiplier: float) -> list[int]:
    """The sweep's seeds, plus its extra seeds where they apply (those budgets, those sizes, those families).
    Two groups adding one seed to one run would plan it twice: refused, naming the entry."""
    seeds = list(spec.seeds)
    for extra in spec.extra_seeds:
        if extra.applies(entry, budget, multiplier):
            seeds += extra.seeds
    if len(set(seeds)) != len(seeds):
        raise ConfigError("extra_seeds", f"two groups add the same seed to families.{entry} at budget {budget:.3g}, "
                                         f"size x{multiplier:g}: each run would be planned twice")
    return seeds


def _check_floors(fam, config, allowed: bool, key: str, budget: float) -> None:
    """Refuse a model under the floors of a sensible shape (one line: what and how to fix), unless allowed."""
    min_heads = int((fam.template or {}).get("min_heads", DEFAULT_MIN_HEADS))
    problems = family_of(config).floor_violations(min_heads)
    if problems and not allowed:
        raise ConfigError(key, f"at budget {budget:.3g} the model falls below the floors ({'; '.join(problems)}); "
                          "widen the template (widths, head_dims) or raise the budget, or set "
                          "size.allow_below_floors: true for an ablation")


def _planned(spec, family, variant, budget, seed, multiplier, sized, target, steps, batch, seq_bytes, hp,
             train_bytes) -> PlannedRun:
    # The run's name (and so its folder) depends on the family and the config only, not on the sweep or the
    # variant label: the same run planned by two sweeps is trained once and shared.
    trainer = dict(spec.trainer)
    if trainer.get("loggers"):  # a tracker groups the sweep's runs under its name (the run id names each run)
        trainer.setdefault("project", spec.name)
    report = flops_report(sized.config)
    flops_per_step = report.flops_per_unit * report.seq_len * batch
    stop: dict[str, float | int] = {"max_steps": steps}
    if family_of(sized.config).data_dependent_cost:
        # A learned cost: the run stops when the realized FLOPs reach the budget (its steps are planned at the
        # target ratios, exactly as train() plans them from the budget).
        steps = max(1, int(budget // flops_per_step))
        stop = {"budget_flops": budget}
    raw = {"name": family, "model": sized.config.to_dict(), "data": dict(spec.data),
           "train": {**{k: v for k, v in spec.train.items() if k not in ("budget_flops", "max_steps")}, **stop,
                     "batch_size": batch, "lr": hp.lr, "seed": seed,
                     "results_dir": str(Path(spec.results_dir) / "runs")},
           "trainer": trainer}
    config = run_config_from_dict(raw)
    n_bytes = steps * batch * seq_bytes
    warnings = []
    if not sized.in_range:
        warnings.append(f"size outside the ladder: FLOPs per byte {sized.flops_per_byte:.3g}, "
                        f"{sized.gap:+.1%} from the target {target:.3g}")
    epochs = n_bytes / train_bytes if train_bytes else None
    if epochs is not None and epochs > 1:
        warnings.append(f"repeats its corpus {epochs:.1f} times")
    return PlannedRun(
        run_id=config.run_id(), sweep=spec.name, family=family, variant=variant, budget_flops=budget, seed=seed,
        multiplier=multiplier, config=config, params=report.params, flops_per_unit=report.flops_per_unit,
        unit=report.unit, flops_per_byte=sized.flops_per_byte, head_share=report.head_share,
        target_flops_per_byte=target, size_gap=sized.gap, bytes=n_bytes, epochs=epochs, steps=steps,
        batch_size=batch, batch_bytes=batch * seq_bytes, lr=hp.lr, hparams_source=hp.source,
        planned_flops=steps * flops_per_step, warnings=warnings,
    )


def estimate_times(plan: Plan, max_probe_flops: float = 3e11, measured: dict[str, float] | None = None,
                   measured_label: str = "") -> None:
    """Fill ``est_time_s`` and ``est_time_source``: from ``measured`` FLOP rates per family when given (a recorded
    GPU check, :func:`gpu_check_rates`), else a short measured probe of each model at its batch where that is cheap,
    else the machine's dense-matmul rate at an assumed 40% utilisation."""
    rates: dict[str, tuple[float, str]] = {}
    matmul = None
    for run in plan.runs:
        if measured:
            rate = _nearest_family_rate(measured, run.family)
            run.est_time_s, run.est_time_source = run.planned_flops / rate, measured_label
            continue
        report = flops_report(run.config.model)
        per_step = report.flops_per_unit * report.seq_len * run.batch_size
        key = json_key(run.config.model.to_dict(), run.batch_size)
        if key not in rates:
            if per_step <= max_probe_flops:
                rates[key] = (_probe_flops_per_s(build_model(run.config.model), run.config.model, run.batch_size),
                              "probe")
            else:
                if matmul is None:
                    matmul = _matmul_rate()
                rates[key] = (0.4 * matmul, "dense matmul at 40%")
        rate, source = rates[key]
        run.est_time_s, run.est_time_source = run.planned_flops / rate, source


def _nearest_family_rate(measured: dict[str, float], family: str) -> float:
    """The measured rate of ``family``, else of the measured AU-Net with the nearest number of stages (BPE: BPE's)."""
    if family in measured:
        return measured[family]
    stages = int(family[5:]) if family.startswith("aunet") and family[5:].isdigit() else None
    aunets = {int(f[5:]): r for f, r in measured.items() if f.startswith("aunet") and f[5:].isdigit()}
    if stages is not None and aunets:
        return aunets[min(aunets, key=lambda n: (abs(n - stages), n))]
    if "bpe" in measured:
        return measured["bpe"]
    return min(measured.values())


def gpu_check_rates(path: str | Path) -> tuple[dict[str, float], str]:
    """Training FLOP rates per family recorded by the GPU check (``benchmarks/bench-gpu-check-*.json``, from
    ``python -m aunet.bench.gpu --record``), and a label naming the device and that they are a lower bound: they were
    measured on the 1e19-rung models, and smaller models use a GPU less well."""

    data = read_json(Path(path), "pass a file written by python -m aunet.bench.gpu --record")
    train = data.get("train") if isinstance(data, dict) else None
    rates = {str(f): float(t["flops_per_s"]) for f, t in (train or {}).items()
             if isinstance(t, dict) and isinstance(t.get("flops_per_s"), (int, float)) and t["flops_per_s"] > 0
             and not str(f).endswith("-eager-loss")}
    if not rates:
        raise UserError(f"{path}: no training FLOP rates; pass a GPU check result (benchmarks/bench-gpu-check-*.json)")
    device = data.get("device_name", "GPU")
    return rates, f"{device} rates of the 1e19 rung (a lower bound for smaller models)"


def json_key(model: dict, batch: int) -> str:
    return json.dumps([model, batch], sort_keys=True)


def _probe_flops_per_s(model, config, batch: int, steps: int = 3) -> float:
    """Training FLOP rate of ``model`` at ``batch`` sequences of random units (the work does not depend on them)."""
    family = family_of(config)
    data = family.synthetic_batch(batch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        logits, targets, _ = family.forward_batch(model, data)
        F.cross_entropy(logits.flatten(0, 1), targets.flatten()).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    elapsed = (time.perf_counter() - start) / steps
    report = flops_report(config)
    return report.flops_per_unit * report.seq_len * batch / elapsed


def _matmul_rate(size: int = 1024) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    return 2 * size**3 * 10 / (time.perf_counter() - start)
