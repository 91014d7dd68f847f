"""``aunet sweep tune``: Optuna searches over learning rate and batch at small budgets (the paper's protocol).

For every family and budget of the tuning sweep, an Optuna study samples ``(lr, batch_bytes)`` log-uniformly
(quasi-random by default) and trains each sample at that budget with the sweep's size rule, reporting the
validation loss at every validation so that lagging trials are pruned. The trials and their runs form the tuning
table ``results/<name>/runs.csv``; fitting the laws from it is the analysis layer's job (the CLI calls it).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Callable

import lightning as L
import optuna

from aunet.flops import flops_report
from aunet.io import atomic_write_json
from aunet.models import FAMILY_CLASSES
from aunet.sweeps.plan import plan_sweep
from aunet.sweeps.runner import default_storage_url, open_storage
from aunet.sweeps.spec import HParams, SweepSpec
from aunet.sweeps.table import write_table
from aunet.training import run as training_run  # train looked up at call time: a test or plugin may replace it
from aunet.training.config import run_config_from_dict

TrainFn = Callable[..., dict[str, Any]]


class StepPruning(L.Callback):
    """Reports validation loss to the trial at each validation (keyed by optimizer step) and prunes laggards.

    Optuna's own Lightning callback keys reports by epoch, which collide when validation runs within one epoch."""

    def __init__(self, trial: optuna.Trial, monitor: str = "val/loss") -> None:
        self.trial, self.monitor = trial, monitor

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None:
            return
        self.trial.report(float(value), step=trainer.global_step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {trainer.global_step}")


def lr_grid(tune) -> list[float]:
    """``tune.trials`` learning rates spaced evenly in log between the ends of ``tune.lr``, rounded to 12
    significant digits (so a grid widened later, with the same spacing, meets the old points again)."""
    lo, hi = tune.lr
    if tune.trials == 1:
        return [float(f"{math.sqrt(lo * hi):.12g}")]
    return [float(f"{lo * (hi / lo) ** (i / (tune.trials - 1)):.12g}") for i in range(tune.trials)]


def _missing_grid_values(study: optuna.Study, grid: list[float]) -> list[float]:
    """Grid learning rates without a finished trial (complete, pruned, or failed: a diverged run diverges again): a
    point of an earlier, narrower grid counts when it equals one of ``grid`` to rounding."""
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    done = [t.params["lr"] for t in study.get_trials(deepcopy=False, states=states) if "lr" in t.params]
    return [v for v in grid if not any(abs(d / v - 1) < 1e-9 for d in done)]


def _sampler(kind: str, seed: int, tune=None) -> optuna.samplers.BaseSampler:
    if kind == "grid":  # the grid points are enqueued one by one (tune_sweep); nothing is sampled
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, scramble=True)
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def tune_sweep(spec: SweepSpec, train_fn: TrainFn | None = None, storage_url: str | None = None) -> Path:
    """Run (or resume) every tuning study of ``spec``; returns the tuning table's path."""
    assert spec.tune is not None, "the sweep has no tune section"
    train_fn = train_fn or training_run.train
    tune = spec.tune
    # The size rule fixes each family's model and bytes per budget; LR and batch are placeholders to be sampled.
    base = dataclasses.replace(spec, hparams={g: HParams(lr=1.0, batch_bytes=1.0) for g in FAMILY_CLASSES})
    plan = plan_sweep(base)
    sweep_dir = plan.results_dir
    storage = open_storage(storage_url or default_storage_url(sweep_dir))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows: list[dict[str, Any]] = []
    for run in [r for r in plan.runs if r.seed == spec.seeds[0]]:
        name = f"{spec.name}-{run.family}{('-' + run.variant) if run.variant else ''}-{run.budget_flops:.3g}"
        study = optuna.create_study(study_name=name, storage=storage, direction="minimize", load_if_exists=True,
                                    sampler=_sampler(tune.sampler, run.seed, tune),
                                    pruner=optuna.pruners.MedianPruner(n_startup_trials=3) if tune.prune
                                    else optuna.pruners.NopPruner())
        objective = _objective(run, plan.runs_dir, tune, train_fn, rows)
        if tune.sampler == "grid":
            for value in _missing_grid_values(study, lr_grid(tune)):
                study.enqueue_trial({"lr": value})
                study.optimize(objective, n_trials=1, catch=(Exception,))
        else:
            done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
            while len(study.get_trials(deepcopy=False, states=done)) < tune.trials:
                study.optimize(objective, n_trials=1, catch=(Exception,))
        rows.extend(_trial_rows(study, run))
    unique = {r["run_id"]: r for r in rows}
    return write_table(sweep_dir, sorted(unique.values(), key=lambda r: (r["family"], r["budget_flops"], r["lr"])))


def _objective(run, runs_dir: Path, tune, train_fn: TrainFn, rows: list) -> Callable[[optuna.Trial], float]:
    seq_bytes = run.batch_bytes / run.batch_size

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", *tune.lr, log=True)
        batch_bytes = tune.fixed_batch or trial.suggest_float("batch_bytes", *tune.batch_bytes, log=True)
        batch = max(1, round(batch_bytes / seq_bytes))
        steps = max(1, round(run.bytes / (batch * seq_bytes)))
        raw = run.config.to_dict()
        raw["name"] = f"{run.family}-tune"
        raw["train"].update(batch_size=batch, lr=lr)
        if raw["train"].get("budget_flops") is None:  # a learned cost keeps its budget: the run stops on it
            raw["train"]["max_steps"] = steps
        config = run_config_from_dict(raw)
        run_dir = runs_dir / config.run_id()
        trial.set_user_attr("run_id", config.run_id())
        trial.set_user_attr("batch_size", batch)
        trial.set_user_attr("steps", steps)
        callbacks = [StepPruning(trial)] if tune.prune else []
        summary = train_fn(config, run_dir=run_dir, resume=True, callbacks=callbacks)
        for key in ("val_bpb", "val_loss", "flops_spent", "bytes_seen"):
            trial.set_user_attr(key, getattr(summary, key))
        return summary.bpb

    return objective


# The tuning table speaks the sweep tables' language: a completed trial is a finished run.
TRIAL_STATUS = {optuna.trial.TrialState.COMPLETE: "finished", optuna.trial.TrialState.PRUNED: "pruned"}


def _trial_rows(study: optuna.Study, run) -> list[dict[str, Any]]:
    seq_bytes = run.batch_bytes / run.batch_size
    report = flops_report(run.config.model)
    rows = []
    for t in study.get_trials(deepcopy=False):
        if "run_id" not in t.user_attrs or t.state == optuna.trial.TrialState.RUNNING:
            continue
        batch = t.user_attrs["batch_size"]
        rows.append({
            "run_id": t.user_attrs["run_id"], "sweep": run.sweep, "family": run.family, "variant": run.variant,
            "budget_flops": run.budget_flops, "seed": run.seed, "status": TRIAL_STATUS.get(t.state, "failed"),
            "params": report.params, "flops_per_unit": report.flops_per_unit, "unit": report.unit,
            "flops_per_byte": run.flops_per_byte, "bytes_planned": run.bytes, "steps": t.user_attrs["steps"],
            "batch_size": batch, "batch_bytes": batch * seq_bytes, "lr": t.params.get("lr"),
            "val_bpb": t.user_attrs.get("val_bpb", t.value if t.value is not None else math.nan),
            "val_loss": t.user_attrs.get("val_loss"), "flops_spent": t.user_attrs.get("flops_spent"),
            "bytes_seen": t.user_attrs.get("bytes_seen"), "hparams_source": "tune",
        })
    return rows


def write_laws(path: Path, laws: dict[str, dict[str, Any]]) -> Path:
    """Laws in the format sweep definitions read with ``hparams: {group: {law: PATH}}``."""
    return atomic_write_json(path, laws)
