"""Compute-optimal envelopes: each family at its own best size at every budget, and the curve through those points.

A study that compares families at one size per budget compares them where each happens to be, not where each is
best. With several sizes per budget (an isoFLOP grid), a family's loss at a budget traces a valley in the log of
its size; the vertex of a parabola through the valley is the family's compute-optimal size and loss there
(Chinchilla's approach 2, SpaceByte's protocol). Through the optima of all budgets, ``L*(C) = E + A C^-alpha`` is
the family's compute-optimal curve: the thing to compare between families, and the input of the
compute-equivalent gain.

Uncertainty comes from the runs' own noise: each run's loss is redrawn with the seed-to-seed spread measured on the
sweep's repeated runs at its budget (:mod:`aunet.analysis.noise`, with the uncertainty of that spread), every
budget's parabola is refitted, and the envelope curve is refitted through every draw of the optima (a parametric
bootstrap). Where the vertex is not inside the sampled sizes, the optimum was not bracketed: the point is the best
sampled size instead (an upper bound on the optimal loss), flagged. How often these intervals contain the truth is
measured on synthetic studies (:mod:`aunet.analysis.coverage`).

Arrays in, numbers out: no pandas, no plotting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from aunet.analysis.inputs import FitError, clean_columns, group_budgets
from aunet.analysis.noise import NONE, BudgetNoise, NoiseModel, noise_model, repeat_groups
from aunet.analysis.noise import seed_noise as seed_noise  # re-exported: the notebooks import it from here
from aunet.analysis.power_law import PowerLawFit, fit_power_law
from aunet.analysis.robust import bias_corrected_interval, percentile_interval

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
    noise: BudgetNoise | None = None
    L_samples: np.ndarray = field(default_factory=lambda: np.empty(0))

    def to_dict(self) -> dict[str, Any]:
        return {"C": self.C, "L_star": self.L_star, "size_star": self.size_star, "status": self.status,
                "n_runs": self.n_runs, "n_sizes": self.n_sizes, "L_interval": list(self.L_interval),
                "size_interval": list(self.size_interval), "sizes": list(self.sizes), "losses": list(self.losses),
                "coeffs": list(self.coeffs), "noise": self.noise.to_dict() if self.noise else None}


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


def _draw_optima(x: np.ndarray, unique: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The estimator of :func:`envelope_points` applied to many redraws at once: ``x`` (``[m]``, ln size) and ``Y``
    (``[B, m]``, one redraw of every run's loss per row). Each row gets the vertex of its parabola when that opens
    upward within the sampled sizes, else its best sampled size's mean loss (the rule the point itself follows).
    Returns the optimal loss and ln size of each row, each ``[B]``.

    Vectorised least squares (one pseudo-inverse for every row) in ``x`` centred on its mean, where
    ``[1, x, x^2]`` is well conditioned (``ln size`` ~ 13 squared is not)."""
    means = np.stack([Y[:, x == u].mean(axis=1) for u in unique], axis=1)  # [B, k]
    best = np.argmin(means, axis=1)
    L_best, x_best = means[np.arange(len(Y)), best], unique[best]
    if len(unique) < 3:
        return L_best, x_best
    centre = float(x.mean())
    xc = x - centre
    coef = Y @ np.linalg.pinv(np.stack([np.ones_like(xc), xc, xc**2], axis=1)).T  # [B, 3]: c0, c1, c2
    c0, c1, c2 = coef[:, 0], coef[:, 1], coef[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        x_star = -c1 / (2 * c2)
        inside = (c2 > 0) & (x_star >= xc.min()) & (x_star <= xc.max())
        L_vertex = c0 - c1**2 / (4 * c2)
    return np.where(inside, L_vertex, L_best), np.where(inside, x_star + centre, x_best)


def envelope_points(C: ArrayLike, size: ArrayLike, L: ArrayLike, *, noise: float | NoiseModel,
                    rel_tol: float = 0.01, n_boot: int = 200, seed: int = 0, level: float = 0.95,
                    bias_correct: bool = True) -> tuple[EnvelopePoint, ...]:
    """The compute-optimal point of one family at each budget, from its runs' compute ``C``, ``size`` and loss
    ``L`` (each ``[n]``).

    Runs whose ``C`` agree within ``rel_tol`` form one budget. ``noise``: the seed noise of one run's loss, a
    :class:`~aunet.analysis.noise.NoiseModel` (per budget, with its degrees of freedom) or one number taken as exact
    (0 or NaN: no interval). Each bootstrap draw adds noise of that size to every run (the size itself drawn from its
    posterior, :meth:`~aunet.analysis.noise.NoiseModel.draw_sd`) and applies the same estimator again: the vertex
    where it lies within the sampled sizes, else the best sampled size. A budget whose vertex falls outside its
    sampled sizes, whose parabola opens downward, or which has fewer than 3 sizes gets the best sampled size's mean
    loss and a status saying why.

    The interval of the optimal loss is bias-corrected (:func:`~aunet.analysis.robust.bias_corrected_interval`): a
    minimum over a noisy valley is biased downward and its redraws fall lower still, so the plain percentile interval
    sits too low (``bias_correct=False`` gives it, for comparison). The interval of the optimal size is the plain
    percentile one.
    """
    cols, _, _ = clean_columns("envelope_points", {"C": C, "size": size, "L": L}, positive=("C", "size"),
                               min_points=1, hint="add finished runs")
    C_, x, L_ = cols["C"], np.log(cols["size"]), cols["L"]
    labels, budget_C = group_budgets(C_, rel_tol)
    model = noise if isinstance(noise, NoiseModel) else NoiseModel.known(float(noise))
    rng = np.random.default_rng(seed)
    sd_draws = model.draw_sd(budget_C, rng, n_boot)  # [n_boot, n_budgets]
    out = []
    for g, C_g in enumerate(budget_C):
        idx = np.flatnonzero(labels == g)
        xs, Ls = x[idx], L_[idx]
        unique = np.unique(xs)
        means = np.array([Ls[xs == u].mean() for u in unique])
        coeffs, x_star, L_star, status = _valley(xs, Ls)
        best = int(np.argmin(means))
        budget_noise = model.at(float(C_g))
        L_samples, x_samples = np.empty(0), np.empty(0)
        if budget_noise.source != NONE and n_boot > 0:
            noisy = Ls[None, :] + rng.normal(size=(n_boot, len(Ls))) * sd_draws[:, g:g + 1]
            L_samples, x_samples = _draw_optima(xs, unique, noisy)
        if status != OK:
            L_star, x_star = float(means[best]), float(unique[best])
        nan2 = (float("nan"), float("nan"))
        L_int, size_int = nan2, nan2
        if len(L_samples):
            lo, hi = bias_corrected_interval(L_samples[:, None], np.array([L_star]), level) if bias_correct else \
                percentile_interval(L_samples[:, None], level)
            L_int = (float(lo[0]), float(hi[0]))
            lo, hi = percentile_interval(x_samples[:, None], level)
            size_int = (float(np.exp(lo[0])), float(np.exp(hi[0])))
        out.append(EnvelopePoint(
            C=float(C_g), L_star=float(L_star), size_star=float(np.exp(x_star)), status=status, n_runs=len(idx),
            n_sizes=len(unique), L_interval=L_int, size_interval=size_int, sizes=tuple(map(float, np.exp(unique))),
            losses=tuple(map(float, means)), coeffs=tuple(map(float, coeffs)), noise=budget_noise,
            L_samples=L_samples))
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


def family_noise(C: ArrayLike, size: ArrayLike, L: ArrayLike, *, fallback: NoiseModel | None = None,
                 per_budget: bool = True, rel_tol: float = 0.01) -> NoiseModel:
    """The noise model of one family's runs (every seed): its repeats (runs of one budget and size) per budget, the
    pool of them at budgets without repeats; ``fallback`` (another series' or study's model) when it has none."""
    group_C, groups = repeat_groups(C, size, L, rel_tol=rel_tol)
    model = noise_model(group_C, groups, per_budget=per_budget, rel_tol=rel_tol)
    if not model.budgets and fallback is not None:
        return fallback
    return model


def family_envelope(C: ArrayLike, size: ArrayLike, run_seed: ArrayLike, L: ArrayLike, *,
                    noise: float | NoiseModel, **kwargs: Any) -> tuple[EnvelopePoint, ...]:
    """:func:`envelope_points` of the runs of one family's base seed (``run_seed``: each run's seed; the base is the
    most common one; all runs when no seed is given); ``kwargs`` go to :func:`envelope_points`. The base seed's runs
    share one data order across sizes; the repeats of other seeds only measure the noise (mixed into one size they
    would tilt the parabola)."""
    seed_ = np.asarray(run_seed, dtype=float)
    known = seed_[np.isfinite(seed_)]
    if len(known):
        values, counts = np.unique(known, return_counts=True)
        keep = seed_ == values[np.argmax(counts)]  # ties: the smallest seed, as pandas' mode().iloc[0]
    else:
        keep = np.ones(len(seed_), dtype=bool)
    C_, size_, L_ = (np.asarray(a, dtype=float)[keep] for a in (C, size, L))
    return envelope_points(C_, size_, L_, noise=noise, **kwargs)


@dataclass(frozen=True)
class Difference:
    """``a`` minus ``b`` at one budget: the difference of the two optimal losses and its interval (NaN bounds when
    either point has no bootstrap draws); ``resolved``: the interval excludes 0."""

    estimate: float
    lo: float
    hi: float

    @property
    def resolved(self) -> bool:
        return bool(self.lo > 0 or self.hi < 0)


def difference_interval(a: EnvelopePoint, b: EnvelopePoint, level: float = 0.95) -> Difference:
    """The difference of two families' optimal losses at one budget (``a.L_star - b.L_star``) and its ``level``
    interval, from the two points' bootstrap draws taken as independent (each family's runs carry their own seed
    noise).

    Each point's draws are first recentred on its own estimate (their median moved onto ``L_star``): a noisier
    valley's redrawn minima fall further below its optimum (see :func:`envelope_points`), and that bias would shift
    the difference toward the quieter family. The interval is then the percentile interval of the paired
    differences. Efron's bias correction applied to the difference instead reached into the last few draws of the
    heavy tails that noise measured with 2 degrees of freedom gives, and moved its bounds by draws; recentring does
    not. How often it contains the true difference on synthetic studies: :func:`aunet.analysis.coverage.
    simulate_coverage`, quantity ``difference`` (tests/analysis/test_coverage.py).
    """
    n = min(len(a.L_samples), len(b.L_samples))
    estimate = a.L_star - b.L_star
    if n == 0:
        return Difference(float(estimate), float("nan"), float("nan"))
    da = a.L_samples[:n] - np.nanmedian(a.L_samples[:n]) + a.L_star
    db = b.L_samples[:n] - np.nanmedian(b.L_samples[:n]) + b.L_star
    lo, hi = percentile_interval((da - db)[:, None], level)
    return Difference(float(estimate), float(lo[0]), float(hi[0]))


def held_out_prediction(points: tuple[EnvelopePoint, ...], *, irreducible: bool = True,
                        level: float = 0.95) -> dict[str, Any]:
    """Fit the envelope curve on every budget but the largest and predict the largest: how well the fit extrapolates,
    checked where a measurement exists.

    The curve through the others keeps its floor ``E`` free (``irreducible``), as the curve through all budgets has:
    the check is of that model. With 3 points for 3 parameters the fit passes through them, but its interval comes
    from refitting every bootstrap draw of the points, which is well defined; forcing ``E = 0`` there instead bends
    the extrapolation below any curve with a floor, and the prediction comes out too low for a family whose curve
    flattens (as the CPU study's AU-Nets' do).

    Returns ``C`` (the held-out budget), ``prediction`` and ``curve_interval`` (the fitted curve there, its 95%
    band), ``measured`` and ``measured_interval`` (the envelope point there), ``interval`` (where a measurement of
    that point is expected to fall: each curve sample plus one draw of the point's own noise, paired by index) and
    ``contains`` (whether ``interval`` holds ``measured``), ``status`` (the point's: not ``ok`` means the measured
    value is the best sampled size's, an upper bound on the optimum), ``n_fitted``, ``irreducible`` and ``fit``
    (the held-out curve's parameters and intervals). Raises :class:`FitError` with fewer than 4 points."""
    ordered = sorted(points, key=lambda p: p.C)
    if len(ordered) < 4:
        raise FitError(f"held_out_prediction: {len(ordered)} budget(s); predicting the largest needs 3 others")
    top, rest = ordered[-1], tuple(ordered[:-1])
    fit = fit_envelope(rest, irreducible=irreducible, level=level)
    prediction = float(fit.predict(top.C))
    curve = fit.predict_samples([top.C])[:, 0]
    lo, hi = percentile_interval(curve[:, None], level)
    curve_interval = (float(lo[0]), float(hi[0]))
    n = min(len(curve), len(top.L_samples))
    if n:
        # The point's noise around its own estimate (L_samples - L_star) added to the curve: a measured envelope value
        # scatters around the curve by that much even when the curve is right.
        expected = curve[:n] + (top.L_samples[:n] - top.L_star)
        lo, hi = percentile_interval(expected[:, None], level)
        interval = (float(lo[0]), float(hi[0]))
    else:
        interval = curve_interval
    contains = bool(np.isfinite(interval[0]) and interval[0] <= top.L_star <= interval[1])
    return {"C": top.C, "prediction": prediction, "curve_interval": curve_interval, "interval": interval,
            "measured": top.L_star, "measured_interval": top.L_interval, "contains": contains, "status": top.status,
            "n_fitted": len(rest), "irreducible": fit.irreducible, "level": level,
            "fit": {"E": fit.E, "A": fit.A, "alpha": fit.alpha, "intervals": fit.intervals}}
