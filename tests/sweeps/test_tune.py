"""aunet sweep tune: the search finds the LR optimum and the fitted law recovers how it moves with compute."""

from __future__ import annotations

import math

import pytest

from aunet.sweeps.spec import load_sweep
from aunet.sweeps.tune import tune_sweep
from aunet.training.summary import RunSummary
from tests.sweeps.helpers import write_sweep

TRUE_K, TRUE_A = 2.0, -0.2  # the synthetic optimum: lr* = 2 C^-0.2




@pytest.fixture
def tune_file(tmp_path):
    return write_sweep(tmp_path, name="tune-micro", families={
        "aunet2": {"template": {"family": "aunet", "widths": [0.5, 1.0], "head_dims": [8, 8], "caps": [64, 20],
                                "splits": ["word@1"], "windows": [16, None], "layers": [1, None],
                                "ffn_multiple_of": 8, "width_step": 8, "aspect": 16,
                             "min_heads": 1}}},
        budgets=[2.0e9, 2.0e10, 2.0e11, 2.0e12], hparams={},
        tune={"trials": 24, "lr": [1.0e-3, 0.3], "batch_bytes": [256, 1024], "sampler": "qmc", "prune": False,
              "tolerance": 0.02})


def test_tuning_recovers_a_known_lr_law(tune_file, data_dir, tmp_path, monkeypatch, capsys):
    spec = load_sweep(tune_file)
    budgets = {}

    def train(config, run_dir, resume, callbacks=()):
        budget = budgets[config.model.to_dict().__repr__()]
        optimum = TRUE_K * budget**TRUE_A
        bpb = 2.0 + 0.5 * math.log(config.train.lr / optimum) ** 2
        return RunSummary(val_bpb=bpb, val_loss=bpb, flops_spent=budget, bytes_seen=1.0)

    from aunet.sweeps import plan as plan_module

    original = plan_module.plan_sweep

    def recording_plan(*args, **kwargs):
        plan = original(*args, **kwargs)
        for run in plan.runs:
            budgets[run.config.model.to_dict().__repr__()] = run.budget_flops
        return plan

    monkeypatch.setattr("aunet.sweeps.tune.plan_sweep", recording_plan)
    table = tune_sweep(spec, train_fn=train)
    import pandas as pd

    runs = pd.read_csv(table)
    assert len(runs) == 96 and set(runs["status"]) == {"finished"}

    from aunet.analysis.hyperparameters import fit_hyperparameter_law

    fit = fit_hyperparameter_law(runs["budget_flops"], runs["lr"], runs["val_bpb"], tolerance=0.02)
    assert abs(fit.a - TRUE_A) < 0.05 and 0.5 < fit.k / TRUE_K < 2.0
    # Resumable: a second call finds the studies complete and trains nothing more.
    calls = []
    tune_sweep(spec, train_fn=lambda *a, **k: calls.append(1) or train(*a, **k))
    assert not calls


def test_an_lr_grid_is_trained_once_per_point_and_widening_it_trains_only_the_new_points(tmp_path, data_dir,
                                                                                         monkeypatch):
    from aunet.analysis.hyperparameters import fit_tuning_laws
    from aunet.sweeps.tune import lr_grid

    path = write_sweep(tmp_path, name="grid-micro", budgets=[2.0e9, 2.0e10], hparams={},
                       tune={"trials": 5, "lr": [1.0e-3, 1.6e-2], "batch_bytes": 512, "sampler": "grid",
                             "prune": False, "fit": "parabola"})
    spec = load_sweep(path)
    assert lr_grid(spec.tune) == [0.001, 0.002, 0.004, 0.008, 0.016]
    trained = []

    def train(config, run_dir, resume, callbacks=()):
        steps, lr = config.train.max_steps, config.train.lr
        trained.append((config.model.family, lr, config.train.batch_size))
        optimum = 4e-3 if steps > 150 else 6e-3  # the larger budget (276 steps, not 87) wants a smaller LR
        bpb = 2.0 + 0.05 * math.log(lr / optimum) ** 2
        return RunSummary(val_bpb=bpb, val_loss=bpb, flops_spent=1.0, bytes_seen=1.0)

    table = tune_sweep(spec, train_fn=train)
    assert len(trained) == 2 * 2 * 5 and {b for _, _, b in trained} <= {1, 2, 8, 16}  # fixed batch: 512 bytes
    import pandas as pd

    runs = pd.read_csv(table)
    by_family = {f: {c: g[c].to_numpy(float) for c in ("budget_flops", "lr", "batch_bytes", "val_bpb")}
                 for f, g in runs.groupby("family")}
    laws = fit_tuning_laws(by_family, method="parabola", fixed_batch=512)
    for family in ("bpe", "aunet2"):
        lr = laws[family]["lr"]
        assert lr["coefficient"] * 2e9 ** lr["exponent"] == pytest.approx(6e-3, rel=1e-6)
        assert laws[family]["batch_bytes"]["exponent"] == 0.0
    # Widened by one factor 2: only 0.032 is new, for each family and budget.
    trained.clear()
    wider = load_sweep(write_sweep(tmp_path, name="grid-micro", budgets=[2.0e9, 2.0e10], hparams={},
                                   tune={"trials": 6, "lr": [1.0e-3, 3.2e-2], "batch_bytes": 512,
                                         "sampler": "grid", "prune": False, "fit": "parabola"}))
    tune_sweep(wider, train_fn=train)
    assert sorted(lr for _, lr, _ in trained) == [0.032] * 4


def test_a_learned_cost_is_tuned_on_its_budget_not_on_a_step_count(tmp_path, data_dir):
    """Trials of learned chunking keep the budget stop (their cost is realized); the LR and batch are the trial's."""
    path = write_sweep(tmp_path, name="tune-chunking", budgets=[2.0e9], hparams={}, families={
        "hnet1": {"template": {"family": "hnet", "widths": [0.5, 1.0], "head_dims": [8, 8], "caps": [64, 24],
                               "target_ratios": [4.0], "windows": [16, None], "layers": [1, None],
                               "ffn_multiple_of": 8, "width_step": 8, "aspect": 16, "min_heads": 1}}},
        tune={"trials": 2, "lr": [1.0e-3, 4.0e-3], "batch_bytes": 512, "sampler": "grid", "prune": False,
              "fit": "parabola"})
    seen = []

    def train(config, run_dir, resume, callbacks=()):
        seen.append(config.train)
        return RunSummary(val_bpb=2.0, val_loss=2.0, flops_spent=2.0e9, bytes_seen=1.0)

    tune_sweep(load_sweep(path), train_fn=train)
    assert [t.lr for t in seen] == [1.0e-3, 4.0e-3]
    assert all(t.budget_flops == 2.0e9 and t.max_steps is None and t.batch_size == 8 for t in seen)
