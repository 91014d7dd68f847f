"""Compute-optimal envelopes: each family at its own best size at every budget, and the curve through those points.

A study that compares families at one size per budget compares them where each happens to be, not where each is
best. With several sizes per budget (an isoFLOP grid), a family's loss at a budget traces a valley in the log of
its size; the vertex of a parabola through the valley is the family's compute-optimal size and loss there
(Chinchilla's approach 2, SpaceByte's protocol). Through the optima of all budgets, ``L*(C) = E + A C^-alpha`` is
the family's compute-optimal curve: the thing to compare between families, and the input of the
compute-equivalent gain.

Uncertainty comes from the runs' own noise: each run's loss is redrawn with the seed-to-seed spread measured on the
sweep's repeated runs (:func:`seed_noise`), every budget's parabola is refitted, and the envelope curve is refitted
through every draw of the optima (a parametric bootstrap). Where the vertex is not inside the sampled sizes, the
optimum was not bracketed: the point is the best sampled size instead (an upper bound on the optimal loss), flagged.

Arrays in, numbers out: no pandas, no plotting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from aunet.analysis.inputs import FitError, clean_columns, group_budgets
from aunet.analysis.power_law import PowerLawFit, fit_power_law
from aunet.analysis.robust import percentile_interval

OK = "ok"
BELOW = "optimum_below_sampled_sizes"  # the loss still falls towards the smallest size
ABOVE = "optimum_above_sampled_sizes"  # the loss still falls towards the largest size
FLAT = "opens_downward"
FEW = "too_few_sizes"


@dataclass(frozen=True, eq=False)
class EnvelopePoint:
    """A family's compute-optimal point at one budget.

    ``C``: the budget (median compute of its runs); ``L_star``: the loss at the optimum, the parabola's vertex
    when ``status == "ok"``, else the mean loss of the best sampled size; ``size_star``: the optimal size (in the
    unit of the sizes given, e.g. FLOPs per byte), or the best sampled size; ``L_interval`` and ``size_interval``:
    percentile intervals from the parametric bootstrap; ``L_samples`` ``[n_boot]``: the bootstrap draws of the
    optimal loss (for the envelope curve); ``sizes`` and ``losses``: the sampled sizes and their mean losses.
    """

    C: float
    L_star: float
    size_star: float
    status: str
    n_runs: int
    n_sizes: int
    L_interval: tuple[float, float]
    size_interval: tuple[float, float]
    sizes: tuple[float, ...]
    losses: tuple[float, ...]
    coeffs: tuple[float, float, float] = (float("nan"),) * 3
    L_samples: np.ndarray = field(default_factory=lambda: np.empty(0))

    def to_dict(self) -> dict[str, Any]:
        return {"C": self.C, "L_star": self.L_star, "size_star": self.size_star, "status": self.status,
                "n_runs": self.n_runs, "n_sizes": self.n_sizes, "L_interval": list(self.L_interval),
                "size_interval": list(self.size_interval), "sizes": list(self.sizes), "losses": list(self.losses),
                "coeffs": list(self.coeffs)}


def seed_noise(groups: list[ArrayLike]) -> float:
    """Pooled standard deviation of the losses of repeated runs: ``groups`` holds, per configuration run with
    several seeds, the losses of its seeds. ``sqrt(sum (n_g - 1) s_g^2 / sum (n_g - 1))``; NaN without repeats."""
    num, dof = 0.0, 0
    for g in groups:
        values = np.asarray(g, dtype=float)
        values = values[np.isfinite(values)]
        if len(values) >= 2:
            num += float(np.var(values, ddof=1)) * (len(values) - 1)
            dof += len(values) - 1
    return float(np.sqrt(num / dof)) if dof else float("nan")


def _valley(x: np.ndarray, L: np.ndarray) -> tuple[tuple[float, float, float], float, float, str]:
    """Parabola ``L = c0 + c1 x + c2 x^2`` through the runs of one budget (``x = ln size``, ``[m]`` each; repeated
    sizes are several seeds): coefficients, vertex ``x*``, ``L(x*)`` and the status."""
    if len(np.unique(x)) < 3:
        return (np.nan,) * 3, np.nan, np.nan, FEW
    c2, c1, c0 = np.polyfit(x, L, 2)
    if c2 <= 0:
        return (c0, c1, c2), np.nan, np.nan, FLAT
    x_star = -c1 / (2 * c2)
    if x_star < x.min():
        return (c0, c1, c2), x_star, np.nan, BELOW
    if x_star > x.max():
        return (c0, c1, c2), x_star, np.nan, ABOVE
    return (c0, c1, c2), x_star, c0 + c1 * x_star + c2 * x_star**2, OK


def envelope_points(C: ArrayLike, size: ArrayLike, L: ArrayLike, *, noise: float, rel_tol: float = 0.01,
                    n_boot: int = 200, seed: int = 0, level: float = 0.95) -> tuple[EnvelopePoint, ...]:
    """The compute-optimal point of one family at each budget, from its runs' compute ``C``, ``size`` and loss
    ``L`` (each ``[n]``).

    Runs whose ``C`` agree within ``rel_tol`` form one budget. ``noise``: the standard deviation of one run's loss
    across seeds (:func:`seed_noise`); each bootstrap draw adds that noise to every run and refits the parabola
    (0 or NaN: no interval). A budget whose vertex falls outside its sampled sizes, whose parabola opens downward,
    or which has fewer than 3 sizes gets the best sampled size's mean loss and a status saying why.
    """
    cols, _, _ = clean_columns("envelope_points", {"C": C, "size": size, "L": L}, positive=("C", "size"),
                               min_points=1, hint="add finished runs")
    C_, x, L_ = cols["C"], np.log(cols["size"]), cols["L"]
    labels, budget_C = group_budgets(C_, rel_tol)
    rng = np.random.default_rng(seed)
    sd = noise if np.isfinite(noise) else 0.0
    out = []
    for g, C_g in enumerate(budget_C):
        idx = np.flatnonzero(labels == g)
        xs, Ls = x[idx], L_[idx]
        unique = np.unique(xs)
        means = np.array([Ls[xs == u].mean() for u in unique])
        coeffs, x_star, L_star, status = _valley(xs, Ls)
        best = int(np.argmin(means))
        draws_L, draws_x = [], []
        if sd > 0:
            for _ in range(n_boot):
                noisy = Ls + rng.normal(0.0, sd, size=len(Ls))
                _, xb, Lb, sb = _valley(xs, noisy)
                if status == OK and sb == OK:
                    draws_L.append(Lb)
                    draws_x.append(xb)
                elif status != OK:  # the best sampled size under noise: its mean loss
                    m = np.array([noisy[xs == u].mean() for u in unique])
                    draws_L.append(m.min())
                    draws_x.append(unique[int(np.argmin(m))])
        if status != OK:
            L_star, x_star = float(means[best]), float(unique[best])
        L_samples = np.array(draws_L)
        nan2 = (float("nan"), float("nan"))
        L_int, size_int = nan2, nan2
        if len(draws_L):
            lo, hi = percentile_interval(L_samples[:, None], level)
            L_int = (float(lo[0]), float(hi[0]))
            lo, hi = percentile_interval(np.array(draws_x)[:, None], level)
            size_int = (float(np.exp(lo[0])), float(np.exp(hi[0])))
        out.append(EnvelopePoint(
            C=float(C_g), L_star=float(L_star), size_star=float(np.exp(x_star)), status=status, n_runs=len(idx),
            n_sizes=len(unique), L_interval=L_int, size_interval=size_int, sizes=tuple(map(float, np.exp(unique))),
            losses=tuple(map(float, means)), coeffs=tuple(map(float, coeffs)), L_samples=L_samples))
    return tuple(out)


def fit_envelope(points: tuple[EnvelopePoint, ...], *, irreducible: bool | None = None,
                 level: float = 0.95) -> PowerLawFit:
    """``L*(C) = E + A C^-alpha`` through the envelope points; intervals from refitting through every bootstrap
    draw of all the points at once (the points' own uncertainty; rows where a point has no draw are skipped).

    ``irreducible`` defaults to 4 or more budgets (3 budgets: ``E = 0``). Raises :class:`FitError` with fewer than
    3 points (a power law through 2 has no residual to judge it by)."""
    if len(points) < 3:
        raise FitError(f"fit_envelope: {len(points)} budget(s); the envelope curve needs 3 or more")
    irreducible = len(points) >= 4 if irreducible is None else irreducible
    C = np.array([p.C for p in points])
    L = np.array([p.L_star for p in points])
    n = min((len(p.L_samples) for p in points), default=0)
    draws = np.stack([p.L_samples[:n] for p in points], axis=1) if n else None
    return fit_power_law(C, L, irreducible=irreducible, level=level, resampled_L=draws,
                         n_boot=0 if draws is not None else 200)
