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
        return {"k": self.k, "a": self.a, "intervals": {k: list(v) for k, v in self.intervals.items()},
                "level": self.level, "n_points": self.n_points, "n_runs": self.n_runs, "n_budgets": self.n_budgets,
                "runs_per_budget": self.runs_per_budget, "n_dropped": self.n_dropped, "tolerance": self.tolerance,
                "residual_scale": self.residual_scale, "n_boot": int(len(self.samples))}


def _loglog(logC: np.ndarray, logv: np.ndarray) -> tuple[float, float]:
    """Least squares ``logv = ln k + a logC``: returns ``(k, a)``."""
    a, log_k = np.polyfit(logC, logv, 1)
    return float(np.exp(log_k)), float(a)


def fit_hyperparameter_law(C: ArrayLike, value: ArrayLike, loss: ArrayLike, *, tolerance: float = 0.01,
                           rel_tol: float = 0.01, n_boot: int = 200, seed: int = 0,
                           level: float = 0.95) -> HyperparameterLawFit:
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
        residual_scale=float(np.std(residuals)), kept=kept, samples=samples, level=level)


# --- learning-rate valleys: the optimum from a parabola in log LR -----------------------------------------------------

VALLEY_OK = "ok"
VALLEY_EDGE = "optimum_at_grid_edge"
VALLEY_DOWN = "opens_downward"
VALLEY_FEW = "too_few_points"


@dataclass(frozen=True)
class LRValley:
    """Loss against learning rate at one budget ``C``.

    A parabola ``loss = c0 + c1 x + c2 x^2`` in ``x = ln lr`` through the best grid point and up to two neighbours on
    each side. ``lr_star``/``loss_star``: its vertex (NaN unless ``status == "ok"``); ``cost_2x = c2 (ln 2)^2``: how
    much the loss rises at a factor 2 off the optimum; ``best_lr``/``best_loss``: the best grid point;
    ``interval``: a percentile interval of ``lr_star`` from a residual bootstrap of the parabola; ``status`` says why
    a valley has no usable vertex (best point at an end of the grid, a parabola opening downward, too few points).
    """

    C: float
    lr_star: float
    loss_star: float
    cost_2x: float
    best_lr: float
    best_loss: float
    n_points: int
    status: str
    coeffs: tuple[float, float, float] = (float("nan"),) * 3
    interval: tuple[float, float] = (float("nan"), float("nan"))

    def to_dict(self) -> dict[str, Any]:
        return {"C": self.C, "lr_star": self.lr_star, "loss_star": self.loss_star, "cost_2x": self.cost_2x,
                "best_lr": self.best_lr, "best_loss": self.best_loss, "n_points": self.n_points,
                "status": self.status, "coeffs": list(self.coeffs), "interval": list(self.interval)}


def _vertex(x: np.ndarray, L: np.ndarray) -> tuple[tuple[float, float, float], float]:
    c2, c1, c0 = np.polyfit(x, L, 2)
    return (float(c0), float(c1), float(c2)), (-c1 / (2 * c2) if c2 > 0 else float("nan"))


def lr_valley(C: float, lr: ArrayLike, loss: ArrayLike, *, half_width: int = 2, n_boot: int = 200, seed: int = 0,
              level: float = 0.95) -> LRValley:
    """The loss-optimal learning rate at one budget from runs at learning rates ``lr`` with losses ``loss`` (each of
    shape ``[m]``, NaN or inf losses, e.g. diverged runs, ignored). See :class:`LRValley`."""
    lr_, L_ = np.asarray(lr, dtype=float), np.asarray(loss, dtype=float)
    ok = np.isfinite(lr_) & np.isfinite(L_) & (lr_ > 0)
    order = np.argsort(lr_[ok])
    x, L_ = np.log(lr_[ok][order]), L_[ok][order]
    nan = float("nan")
    if len(x) == 0:
        return LRValley(C, nan, nan, nan, nan, nan, 0, VALLEY_FEW)
    i = int(np.argmin(L_))
    best_lr, best_loss = float(np.exp(x[i])), float(L_[i])
    lo, hi = max(0, i - half_width), min(len(x), i + half_width + 1)
    xs, Ls = x[lo:hi], L_[lo:hi]
    if len(np.unique(xs)) < 3:
        return LRValley(C, nan, nan, nan, best_lr, best_loss, len(xs), VALLEY_FEW)
    coeffs, x_star = _vertex(xs, Ls)
    c0, c1, c2 = coeffs
    if c2 <= 0:
        return LRValley(C, nan, nan, nan, best_lr, best_loss, len(xs), VALLEY_DOWN, coeffs)
    if i in (0, len(x) - 1) or not xs.min() <= x_star <= xs.max():
        return LRValley(C, nan, nan, c2 * np.log(2) ** 2, best_lr, best_loss, len(xs), VALLEY_EDGE, coeffs)
    # Residual bootstrap: the vertex's spread under the scatter of the points around the parabola.
    fitted = c0 + c1 * xs + c2 * xs**2
    residuals = Ls - fitted
    rng = np.random.default_rng(seed)
    stars = []
    for _ in range(n_boot):
        _, xb = _vertex(xs, fitted + rng.choice(residuals, size=len(residuals), replace=True))
        if np.isfinite(xb):
            stars.append(np.clip(xb, xs.min(), xs.max()))
    lo_i, hi_i = (percentile_interval(np.exp(np.array(stars))[:, None], level) if stars
                  else (np.array([nan]), np.array([nan])))
    return LRValley(C, float(np.exp(x_star)), float(c0 + c1 * x_star + c2 * x_star**2), float(c2 * np.log(2) ** 2),
                    best_lr, best_loss, len(xs), VALLEY_OK, coeffs, (float(lo_i[0]), float(hi_i[0])))


@dataclass(frozen=True, eq=False)
class LRLaw:
    """``lr*(C) = k C^a`` through the vertices of the usable valleys, with every budget's valley."""

    k: float
    a: float
    valleys: tuple[LRValley, ...]
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)

    def predict(self, C: ArrayLike) -> np.ndarray:
        return self.k * np.asarray(C, dtype=float) ** self.a

    def to_dict(self) -> dict[str, Any]:
        return {"k": self.k, "a": self.a, "intervals": {k: list(v) for k, v in self.intervals.items()},
                "method": "parabola vertex per budget, least squares in log-log",
                "valleys": [v.to_dict() for v in self.valleys]}


def fit_lr_law(C: ArrayLike, lr: ArrayLike, loss: ArrayLike, *, rel_tol: float = 0.01, level: float = 0.95,
               seed: int = 0) -> LRLaw:
    """Fit ``lr* = k C^a`` from an LR sweep at several budgets (``C``, ``lr``, ``loss`` of shape ``[n]``).

    Runs whose ``C`` agree within ``rel_tol`` form one budget; each budget's optimum is the vertex of its
    :func:`lr_valley`. Intervals of ``k`` and ``a``: the law refitted through bootstrap draws of each vertex (from
    its interval, log-normal). Raises :class:`FitError` with fewer than 2 usable budgets, naming each budget's status.
    """
    C_ = np.asarray(C, dtype=float)
    labels, budget_C = group_budgets(C_, rel_tol)
    lr_, L_ = np.asarray(lr, dtype=float), np.asarray(loss, dtype=float)
    valleys = tuple(lr_valley(float(budget_C[g]), lr_[labels == g], L_[labels == g], seed=seed + g)
                    for g in range(len(budget_C)))
    usable = [v for v in valleys if v.status == VALLEY_OK]
    if len(usable) < 2:
        flags = ", ".join(f"{v.C:.3g}: {v.status}" for v in valleys)
        raise FitError(f"fit_lr_law: needs an LR optimum inside the grid at 2 or more budgets ({flags}); widen the "
                       "LR range where the best point sits at its edge")
    logC = np.log([v.C for v in usable])
    k, a = _loglog(logC, np.log([v.lr_star for v in usable]))
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(200):  # each vertex drawn log-normally with its own interval as a 95% range
        logs = [rng.normal(np.log(v.lr_star), max(1e-9, np.log(v.interval[1] / v.interval[0]) / (2 * 1.96)))
                for v in usable]
        draws.append(_loglog(logC, np.array(logs)))
    lo, hi = percentile_interval(np.array(draws), level)
    return LRLaw(k, a, valleys, {"k": (float(lo[0]), float(hi[0])), "a": (float(lo[1]), float(hi[1]))})


def fit_lr_laws_shared_exponent(rows: dict[str, tuple[ArrayLike, ArrayLike, ArrayLike]], *, rel_tol: float = 0.01,
                                level: float = 0.95, seed: int = 0) -> tuple[dict[str, LRLaw], dict[str, str]]:
    """Per-family ``lr*(C) = k_f C^a`` with one exponent ``a`` shared by all families.

    ``rows`` maps a family to its ``(C, lr, loss)`` arrays (each ``[n_f]``). Each family's optimum per budget is its
    :func:`lr_valley` vertex; ``ln lr* = ln k_f + a ln C`` is fitted by least squares over every usable vertex of
    every family at once. Two budgets half a decade apart cannot pin an exponent per family (a 10% error in one
    vertex moves it by 0.2); shared, it rests on all families' vertices, and a family needs only one usable budget.
    Intervals: vertices redrawn log-normally from their own intervals, the whole fit redone. Returns the laws and,
    for families without any usable vertex, why. Raises :class:`FitError` when no exponent can be fitted.
    """
    valleys: dict[str, tuple[LRValley, ...]] = {}
    for g_seed, (family, (C, lr, loss)) in enumerate(rows.items()):
        C_ = np.asarray(C, dtype=float)
        labels, budget_C = group_budgets(C_, rel_tol)
        lr_, L_ = np.asarray(lr, dtype=float), np.asarray(loss, dtype=float)
        valleys[family] = tuple(lr_valley(float(budget_C[g]), lr_[labels == g], L_[labels == g],
                                          seed=seed + 100 * g_seed + g) for g in range(len(budget_C)))
    usable = {f: [v for v in vs if v.status == VALLEY_OK] for f, vs in valleys.items()}
    errors = {f: "no LR optimum inside the grid at any budget (" + ", ".join(f"{v.C:.3g}: {v.status}" for v in vs)
              + ")" for f, vs in valleys.items() if not usable[f]}
    families = [f for f in rows if usable[f]]
    points = [(i, v) for i, f in enumerate(families) for v in usable[f]]
    if len({v.C for _, v in points}) < 2:
        raise FitError("fit_lr_laws_shared_exponent: usable optima at fewer than 2 budgets; no exponent to fit")
    X = np.zeros((len(points), len(families) + 1))
    for row, (i, v) in enumerate(points):
        X[row, i], X[row, -1] = 1.0, np.log(v.C)

    def solve(log_lr: np.ndarray) -> np.ndarray:
        return np.linalg.lstsq(X, log_lr, rcond=None)[0]

    theta = solve(np.log([v.lr_star for _, v in points]))
    rng = np.random.default_rng(seed)
    draws = np.array([solve(np.array([rng.normal(np.log(v.lr_star),
                                                 max(1e-9, np.log(v.interval[1] / v.interval[0]) / (2 * 1.96)))
                                      for _, v in points])) for _ in range(200)])
    lo, hi = percentile_interval(draws, level)
    laws = {f: LRLaw(float(np.exp(theta[i])), float(theta[-1]), valleys[f],
                     {"k": (float(np.exp(lo[i])), float(np.exp(hi[i]))), "a": (float(lo[-1]), float(hi[-1]))})
            for i, f in enumerate(families)}
    return laws, errors


def fit_tuning_laws(rows: dict[str, dict[str, np.ndarray]], *, method: str = "near_best", tolerance: float = 0.01,
                    fixed_batch: float | None = None) -> dict[str, dict[str, Any]]:
    """The laws file of ``aunet sweep tune``: for each family, ``{"lr": law, "batch_bytes": law}`` with a law
    ``{"coefficient", "exponent", "fit"}``.

    ``rows`` maps a family to its completed tuning runs as arrays ``budget_flops``, ``lr``, ``batch_bytes``,
    ``val_bpb`` (each ``[n]``). ``method``: ``parabola`` (:func:`fit_lr_law`), ``parabola_shared``
    (:func:`fit_lr_laws_shared_exponent`: one exponent for all families) or ``near_best``
    (:func:`fit_hyperparameter_law`, the paper's rule, also for the batch). A ``fixed_batch`` (not searched) is
    written as the constant law it is. A family whose fit fails is left out with its reason under ``"errors"``.
    """
    laws: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    shared: dict[str, LRLaw] = {}
    if method == "parabola_shared":
        try:
            shared, errors = fit_lr_laws_shared_exponent(
                {f: (r["budget_flops"], r["lr"], r["val_bpb"]) for f, r in rows.items()})
        except FitError as exc:
            errors = {f: str(exc) for f in rows}
    for family, r in rows.items():
        if family in errors:
            continue
        try:
            if method == "parabola_shared":
                fit_ = shared[family]
                lr_law = {"coefficient": fit_.k, "exponent": fit_.a,
                          "fit": {**fit_.to_dict(), "method": "parabola vertices, exponent shared by all families"}}
            elif method == "parabola":
                lr_fit = fit_lr_law(r["budget_flops"], r["lr"], r["val_bpb"])
                lr_law = {"coefficient": lr_fit.k, "exponent": lr_fit.a, "fit": lr_fit.to_dict()}
            else:
                fit = fit_hyperparameter_law(r["budget_flops"], r["lr"], r["val_bpb"], tolerance=tolerance)
                lr_law = {"coefficient": fit.k, "exponent": fit.a, "fit": fit.to_dict()}
            if fixed_batch is not None:
                batch_law = {"coefficient": float(fixed_batch), "exponent": 0.0, "fit": {"fixed": True}}
            else:
                fit = fit_hyperparameter_law(r["budget_flops"], r["batch_bytes"], r["val_bpb"], tolerance=tolerance)
                batch_law = {"coefficient": fit.k, "exponent": fit.a, "fit": fit.to_dict()}
        except FitError as exc:
            errors[family] = str(exc)
            continue
        laws[family] = {"lr": lr_law, "batch_bytes": batch_law}
    if errors:
        laws["errors"] = errors
    return laws
