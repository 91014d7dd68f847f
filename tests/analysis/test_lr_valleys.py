"""Learning-rate valleys and per-family LR laws (aunet sweep tune with fit: parabola)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aunet.analysis.hyperparameters import (
    VALLEY_EDGE,
    VALLEY_OK,
    fit_lr_law,
    fit_tuning_laws,
    lr_valley,
)
from aunet.analysis.inputs import FitError

GRID = 2e-3 * 2.0 ** np.arange(6)  # the tuning grid: 6 learning rates a factor 2 apart


def valley_loss(lr: np.ndarray, lr_star: float, floor: float = 2.0, curvature: float = 0.05) -> np.ndarray:
    return floor + curvature * np.log(lr / lr_star) ** 2


def test_vertex_and_the_cost_of_a_factor_two_are_exact_on_a_parabola():
    v = lr_valley(1e12, GRID, valley_loss(GRID, 1.1e-2))
    assert v.status == VALLEY_OK
    assert v.lr_star == pytest.approx(1.1e-2, rel=1e-9) and v.loss_star == pytest.approx(2.0, abs=1e-12)
    assert v.cost_2x == pytest.approx(0.05 * math.log(2) ** 2, rel=1e-9)
    assert v.best_lr == pytest.approx(GRID[np.argmin(np.abs(np.log(GRID / 1.1e-2)))])
    assert v.interval[0] <= v.lr_star <= v.interval[1]


def test_a_minimum_at_the_grid_edge_has_no_vertex():
    v = lr_valley(1e12, GRID, valley_loss(GRID, 1.0))  # the optimum far above the grid
    assert v.status == VALLEY_EDGE and math.isnan(v.lr_star) and v.best_lr == pytest.approx(GRID[-1])


def test_diverged_runs_are_ignored():
    loss = valley_loss(GRID, 1e-2)
    loss[-1] = np.nan
    assert lr_valley(1e12, GRID, loss).lr_star == pytest.approx(1e-2, rel=1e-9)


def test_law_through_the_vertices_recovers_k_and_a():
    k, a = 0.63, -0.15  # optima 1.4e-2, 1e-2, 7e-3: inside the grid
    C = np.repeat([1e11, 1e12, 1e13], len(GRID))
    lr = np.tile(GRID, 3)
    fit = fit_lr_law(C, lr, valley_loss(lr, k * C**a))
    assert fit.k == pytest.approx(k, rel=1e-6) and fit.a == pytest.approx(a, abs=1e-8)
    assert [v.status for v in fit.valleys] == [VALLEY_OK] * 3


def test_law_needs_two_usable_budgets():
    C = np.repeat([1e11, 1e12], len(GRID))
    lr = np.tile(GRID, 2)
    with pytest.raises(FitError, match="optimum_at_grid_edge"):
        fit_lr_law(C, lr, valley_loss(lr, np.where(C < 5e11, 1e-2, 1.0)))


def test_laws_file_has_a_constant_batch_law_and_names_failures():
    C = np.repeat([1e11, 1e12], len(GRID))
    lr = np.tile(GRID, 2)
    good = {"budget_flops": C, "lr": lr, "batch_bytes": np.full(len(C), 4096.0),
            "val_bpb": valley_loss(lr, 0.3 * C**-0.1)}
    bad = {**good, "val_bpb": valley_loss(lr, 5.0)}
    laws = fit_tuning_laws({"aunet2": good, "bpe": bad}, method="parabola", fixed_batch=4096)
    assert laws["aunet2"]["batch_bytes"] == {"coefficient": 4096.0, "exponent": 0.0, "fit": {"fixed": True}}
    assert laws["aunet2"]["lr"]["exponent"] == pytest.approx(-0.1, abs=1e-8)
    assert "bpe" not in laws and "grid" in laws["errors"]["bpe"]


def test_a_shared_exponent_rests_on_every_family_and_rescues_a_family_with_one_usable_budget():
    from aunet.analysis.hyperparameters import fit_lr_laws_shared_exponent

    C = np.repeat([1e11, 1e12, 1e13], len(GRID))
    lr = np.tile(GRID, 3)
    truth = {"bpe": 0.5, "aunet2": 1.0, "aunet4": 0.8}  # k per family, a = -0.15 shared
    rows = {f: (C, lr, valley_loss(lr, k * C**-0.15)) for f, k in truth.items()}
    # aunet4's smallest budget has its optimum above the grid: only 2 of its 3 budgets are usable
    rows["aunet4"] = (C, lr, np.where(C < 5e11, valley_loss(lr, 1.0), valley_loss(lr, 0.8 * C**-0.15)))
    laws, errors = fit_lr_laws_shared_exponent(rows)
    assert not errors
    for family, k in truth.items():
        assert laws[family].a == pytest.approx(-0.15, abs=1e-8) and laws[family].k == pytest.approx(k, rel=1e-6)
    file = fit_tuning_laws({f: {"budget_flops": c, "lr": x, "batch_bytes": np.full(len(c), 4096.0), "val_bpb": y}
                            for f, (c, x, y) in rows.items()}, method="parabola_shared", fixed_batch=4096)
    assert {f: round(law["lr"]["exponent"], 6) for f, law in file.items()} == {f: -0.15 for f in truth}
