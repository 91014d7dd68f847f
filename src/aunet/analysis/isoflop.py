"""IsoFLOP analysis, Chinchilla's approach 2: the loss-optimal model size at each compute budget, then its trend.

At each budget the runs trace a valley of loss against ``log N``; a parabola through them gives the optimal size
``N*(C)``. The optima across budgets are fitted with ``N*(C) = k C^a``, and ``D*(C) = C / (6 N*(C))`` follows.
A budget whose parabola opens downward, or whose minimum lies outside the sizes it sampled, is reported with a flag
and left out of the trend: its optimum would be an extrapolation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from aunet.analysis.inputs import FitError, clean_columns, group_budgets
from aunet.analysis.robust import percentile_interval

OK = "ok"
TOO_FEW_SIZES = "too_few_sizes"
OPENS_DOWNWARD = "opens_downward"
OUTSIDE_RANGE = "minimum_outside_sampled_sizes"


@dataclass(frozen=True)
class IsoFlopBudget:
    """One budget: its compute ``C`` (median of its runs), the runs and distinct sizes it has, the parabola
    ``L = c0 + c1 x + c2 x^2`` in ``x = ln N`` (``coeffs = (c0, c1, c2)``, NaN when not fitted), its minimum
    ``N_star``, ``L_star`` (NaN unless ``status == "ok"``), the sampled size range and the status flag."""

    C: float
    n_runs: int
    n_sizes: int
    N_range: tuple[float, float]
    coeffs: tuple[float, float, float]
    N_star: float
    L_star: float
    status: str


def _parabola(x: np.ndarray, L: np.ndarray) -> tuple[tuple[float, float, float], float, float, str]:
    """Fit ``L = c0 + c1 x + c2 x^2`` (``x``, ``L`` of shape ``[m]``): coefficients, ``x*``, ``L*``, status."""
    if len(np.unique(x)) < 3:
        return (np.nan, np.nan, np.nan), np.nan, np.nan, TOO_FEW_SIZES
    c2, c1, c0 = np.polyfit(x, L, 2)
    if c2 <= 0:
        return (c0, c1, c2), np.nan, np.nan, OPENS_DOWNWARD
    x_star = -c1 / (2 * c2)
    if not x.min() <= x_star <= x.max():
        return (c0, c1, c2), np.nan, np.nan, OUTSIDE_RANGE
    return (c0, c1, c2), x_star, c0 + c1 * x_star + c2 * x_star**2, OK


def _trend(C: np.ndarray, N_star: np.ndarray) -> tuple[float, float]:
    """Least squares of ``ln N* = ln k + a ln C``: returns ``(k, a)``."""
    a, log_k = np.polyfit(np.log(C), np.log(N_star), 1)
    return float(np.exp(log_k)), float(a)


@dataclass(frozen=True, eq=False)
class IsoFlopFit:
    """Per-budget optima and the fitted trend ``N*(C) = k C^a``, ``D*(C) = C / (k_flops N*(C))``.

    ``intervals`` maps ``k``, ``a``, ``k_D``, ``a_D`` to percentile bootstrap intervals (runs resampled within each
    budget); ``samples`` has shape ``[n_boot, 2]`` with columns ``(k, a)``. ``n_points`` counts the runs used,
    ``n_dropped`` the rows dropped for NaN/inf.
    """

    budgets: tuple[IsoFlopBudget, ...]
    k: float
    a: float
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    flops_per_param_token: float = 6.0
    n_points: int = 0
    n_dropped: int = 0
    samples: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))
    level: float = 0.95

    @property
    def k_D(self) -> float:
        """Coefficient of ``D*(C) = k_D C^a_D``: ``1 / (flops_per_param_token k)``."""
        return 1.0 / (self.flops_per_param_token * self.k)

    @property
    def a_D(self) -> float:
        return 1.0 - self.a

    def n_opt(self, C: ArrayLike) -> np.ndarray:
        """Optimal size at compute ``C`` (any shape)."""
        return self.k * np.asarray(C, dtype=float) ** self.a

    def d_opt(self, C: ArrayLike) -> np.ndarray:
        """Optimal data at compute ``C`` (any shape)."""
        C = np.asarray(C, dtype=float)
        return C / (self.flops_per_param_token * self.n_opt(C))

    def to_dict(self) -> dict[str, Any]:
        return {
            "k": self.k, "a": self.a, "k_D": self.k_D, "a_D": self.a_D,
            "intervals": {k: list(v) for k, v in self.intervals.items()}, "level": self.level,
            "flops_per_param_token": self.flops_per_param_token, "n_points": self.n_points,
            "n_dropped": self.n_dropped, "n_boot": int(len(self.samples)),
            "budgets": [{"C": b.C, "n_runs": b.n_runs, "n_sizes": b.n_sizes, "N_star": b.N_star,
                         "L_star": b.L_star, "status": b.status} for b in self.budgets],
        }


def isoflop_analysis(C: ArrayLike, N: ArrayLike, L: ArrayLike, *, flops_per_param_token: float = 6.0,
                     rel_tol: float = 0.01, n_boot: int = 200, seed: int = 0, level: float = 0.95) -> IsoFlopFit:
    """IsoFLOP profiles from runs with compute ``C``, size ``N`` and loss ``L`` (each of shape ``[n]``).

    Runs whose ``C`` agree within ``rel_tol`` form one budget. Each budget with at least 3 distinct sizes gets a
    parabola of ``L`` in ``ln N``; its vertex is ``N*`` when the parabola opens upward and the vertex lies within
    the sampled sizes, otherwise the budget is flagged (``IsoFlopBudget.status``) and excluded. The optima of at
    least 2 budgets are fitted with ``N* = k C^a`` (least squares in log-log). Bootstrap: the runs of each budget
    are resampled with replacement and everything is redone; a resample where a budget fails is fitted without
    that budget, and one with fewer than 2 usable budgets is skipped.

    Raises :class:`FitError` with fewer than 2 budgets, or fewer than 2 usable ones (the message lists the flags).
    """
    cols, _, dropped = clean_columns("isoflop_analysis", {"C": C, "N": N, "L": L}, positive=("C", "N"),
                                     min_points=6, hint="add runs (at least 3 sizes at each of 2 budgets)")
    C_, x, L_ = cols["C"], np.log(cols["N"]), cols["L"]
    labels, budget_C = group_budgets(C_, rel_tol)
    if len(budget_C) < 2:
        raise FitError(f"isoflop_analysis: all runs share one budget ({budget_C[0]:.2g} FLOPs); the trend needs "
                       "runs at 2 or more budgets")
    members = [np.flatnonzero(labels == g) for g in range(len(budget_C))]
    budgets = []
    for g, idx in enumerate(members):
        coeffs, x_star, L_star, status = _parabola(x[idx], L_[idx])
        budgets.append(IsoFlopBudget(
            C=float(budget_C[g]), n_runs=len(idx), n_sizes=len(np.unique(x[idx])),
            N_range=(float(np.exp(x[idx].min())), float(np.exp(x[idx].max()))),
            coeffs=tuple(map(float, coeffs)), N_star=float(np.exp(x_star)), L_star=float(L_star), status=status))
    usable = [b for b in budgets if b.status == OK]
    if len(usable) < 2:
        flags = ", ".join(f"{b.C:.3g}: {b.status}" for b in budgets)
        raise FitError(f"isoflop_analysis: needs optima at 2 or more budgets, got {len(usable)} ({flags}); sample "
                       "sizes on both sides of the optimum at each budget")
    k, a = _trend(np.array([b.C for b in usable]), np.array([b.N_star for b in usable]))

    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n_boot):
        Cs, Ns = [], []
        for g, idx in enumerate(members):
            pick = rng.choice(idx, size=len(idx), replace=True)
            _, x_star, _, status = _parabola(x[pick], L_[pick])
            if status == OK:
                Cs.append(budget_C[g])
                Ns.append(np.exp(x_star))
        if len(Cs) >= 2:
            samples.append(_trend(np.array(Cs), np.array(Ns)))
    samples_arr = np.array(samples).reshape(-1, 2)
    derived = np.stack([samples_arr[:, 0], samples_arr[:, 1], 1 / (flops_per_param_token * samples_arr[:, 0]),
                        1 - samples_arr[:, 1]], axis=1)
    lo, hi = percentile_interval(derived, level)
    return IsoFlopFit(
        budgets=tuple(budgets), k=k, a=a,
        intervals={name: (float(lo[i]), float(hi[i])) for i, name in enumerate(("k", "a", "k_D", "a_D"))},
        flops_per_param_token=flops_per_param_token, n_points=len(L_), n_dropped=dropped, samples=samples_arr,
        level=level)
