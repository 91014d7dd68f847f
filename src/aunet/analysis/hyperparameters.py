"""Hyperparameter laws: the best learning rate or batch size as a power law of compute, ``value = k C^a``.

The protocol of the AU-Net paper: at each budget keep the runs whose loss is within a relative ``tolerance`` of
that budget's best, then fit ``ln value = ln k + a ln C`` by least squares on every kept run. Several near-best
runs per budget average out the noise of picking a single winner from a coarse grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from aunet.analysis.inputs import FitError, clean_columns, group_budgets
from aunet.analysis.robust import bootstrap_indices, percentile_interval


@dataclass(frozen=True, eq=False)
class HyperparameterLawFit:
    """A fitted ``value(C) = k C^a`` with the runs it was fitted on.

    ``kept`` (shape ``[n]``, aligned with the input rows, False for dropped rows) marks the near-best runs;
    ``n_points`` counts them, ``n_runs`` the runs with finite values, ``n_budgets`` the budgets, and
    ``runs_per_budget`` the largest number of runs at one budget (1 means every run was trivially "best", so the
    law only restates the sweep's own choices). ``samples`` has shape ``[n_boot, 2]`` with columns ``(k, a)``;
    ``residual_scale`` is the standard deviation of the log residuals of the kept runs.
    """

    k: float
    a: float
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    n_points: int = 0
    n_runs: int = 0
    n_budgets: int = 0
    runs_per_budget: int = 0
    n_dropped: int = 0
    tolerance: float = 0.01
    residual_scale: float = float("nan")
    kept: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    samples: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))
    level: float = 0.95

    def predict(self, C: ArrayLike) -> np.ndarray:
        """The law at compute ``C`` (any shape)."""
        return self.k * np.asarray(C, dtype=float) ** self.a

    def predict_band(self, C: ArrayLike, level: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Percentile band of the bootstrap laws at ``C`` (shape ``[n]``): ``(lo, hi)``, each ``[n]``."""
        C = np.atleast_1d(np.asarray(C, dtype=float))
        curves = self.samples[:, :1] * C[None, :] ** self.samples[:, 1:2]
        return percentile_interval(curves, self.level if level is None else level)

    def to_dict(self) -> dict[str, Any]:
        return {
            "k": self.k, "a": self.a, "intervals": {k: list(v) for k, v in self.intervals.items()},
            "level": self.level, "n_points": self.n_points, "n_runs": self.n_runs, "n_budgets": self.n_budgets,
            "runs_per_budget": self.runs_per_budget, "n_dropped": self.n_dropped, "tolerance": self.tolerance,
            "residual_scale": self.residual_scale, "n_boot": int(len(self.samples)),
        }


def _loglog(logC: np.ndarray, logv: np.ndarray) -> tuple[float, float]:
    """Least squares ``logv = ln k + a logC``: returns ``(k, a)``."""
    a, log_k = np.polyfit(logC, logv, 1)
    return float(np.exp(log_k)), float(a)


def fit_hyperparameter_law(
    C: ArrayLike,
    value: ArrayLike,
    loss: ArrayLike,
    *,
    tolerance: float = 0.01,
    rel_tol: float = 0.01,
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> HyperparameterLawFit:
    """Fit ``value = k C^a`` on the near-best runs of each budget (``C``, ``value``, ``loss`` of shape ``[n]``).

    Runs whose ``C`` agree within ``rel_tol`` form one budget (use the planned budget, not FLOPs spent, when the
    sweep has it); the fit uses each budget's median compute. A run is kept when
    ``loss <= best * (1 + tolerance)`` at its budget. Intervals: percentile bootstrap over the kept runs (resampled
    with replacement, each resample spanning 2 or more budgets); with one run per budget they reflect the scatter
    of those runs around the line.

    Raises :class:`FitError` when fewer than 2 budgets remain, or ``C`` or ``value`` are not positive.
    """
    if tolerance < 0:
        raise FitError(f"fit_hyperparameter_law: tolerance must be >= 0, got {tolerance}")
    cols, mask, dropped = clean_columns("fit_hyperparameter_law", {"C": C, "value": value, "loss": loss},
                                        positive=("C", "value"), min_points=2, hint="add runs at 2 or more budgets")
    C_, v, L_ = cols["C"], cols["value"], cols["loss"]
    labels, budget_C = group_budgets(C_, rel_tol)
    if len(budget_C) < 2:
        raise FitError(f"fit_hyperparameter_law: all runs share one budget ({budget_C[0]:.2g} FLOPs); a law in C "
                       "needs runs at 2 or more budgets")
    best = np.array([L_[labels == g].min() for g in range(len(budget_C))])
    # Relative to |best| so that the rule also reads sensibly for a negative score used as a loss.
    keep = L_ <= best[labels] + tolerance * np.abs(best[labels])
    logC, logv = np.log(budget_C[labels][keep]), np.log(v[keep])
    k, a = _loglog(logC, logv)
    rng = np.random.default_rng(seed)
    resamples = bootstrap_indices(rng, len(logC), lambda idx: len(np.unique(logC[idx])) >= 2, n_boot)
    samples = np.array([_loglog(logC[idx], logv[idx]) for idx in resamples]).reshape(-1, 2)
    lo, hi = percentile_interval(samples, level)
    kept = np.zeros(len(mask), dtype=bool)
    kept[np.flatnonzero(mask)[keep]] = True
    residuals = logv - (np.log(k) + a * logC)
    return HyperparameterLawFit(
        k=k, a=a, intervals={"k": (float(lo[0]), float(hi[0])), "a": (float(lo[1]), float(hi[1]))},
        n_points=int(keep.sum()), n_runs=len(v), n_budgets=len(budget_C),
        runs_per_budget=int(np.bincount(labels).max()), n_dropped=dropped, tolerance=tolerance,
        residual_scale=float(np.std(residuals)), kept=kept, samples=samples, level=level,
    )
