"""Power law of loss against compute with an irreducible term: ``L(C) = E + A * C^(-alpha)``.

Fitted robustly in log space (Huber loss of ``log L - log(E + A C^-alpha)``, written as a log-sum-exp of
``e = log E`` and ``a - alpha log C``), from a grid of starts, with percentile bootstrap intervals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from aunet.analysis.inputs import FitError, clean_columns
from aunet.analysis.robust import (
    LseProblem,
    bootstrap_indices,
    minimise,
    minimise_batch,
    percentile_interval,
    robust_scale,
    single_threaded_blas,
)

PARAMS = ("E", "A", "alpha")


@dataclass(frozen=True, eq=False)
class PowerLawFit:
    """A fitted ``L(C) = E + A * C^(-alpha)`` (``E = 0`` when fitted with ``irreducible=False``).

    ``intervals`` maps ``E``, ``A``, ``alpha`` to percentile bootstrap intervals ``(lo, hi)`` at ``level``;
    ``samples`` holds the bootstrap parameters, shape ``[B, 3]`` with columns ``(E, A, alpha)``, kept so that
    derived quantities (the compute-equivalent gain) get intervals too. ``residual_scale`` is the robust standard
    deviation of the log residuals (1.4826 x median |log L - log L_fit|), i.e. the typical relative error of the
    curve; ``n_dropped`` counts input rows dropped for NaN/inf. ``E`` is floored at 1e-4 of the smallest loss
    (:data:`aunet.analysis.robust.CONSTANT_FLOOR`): an ``E`` at that floor means the data cannot tell it from 0.
    """

    E: float
    A: float
    alpha: float
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    n_points: int = 0
    n_dropped: int = 0
    residual_scale: float = float("nan")
    irreducible: bool = True
    samples: np.ndarray = field(default_factory=lambda: np.empty((0, 3)))
    C_range: tuple[float, float] = (float("nan"), float("nan"))
    level: float = 0.95

    def predict(self, C: ArrayLike) -> np.ndarray:
        """Loss at compute ``C`` (any shape; same shape out)."""
        C = np.asarray(C, dtype=float)
        return self.E + self.A * C ** (-self.alpha)

    def predict_samples(self, C: ArrayLike) -> np.ndarray:
        """Loss of every bootstrap sample at ``C`` (shape ``[n]``): shape ``[B, n]``."""
        C = np.atleast_1d(np.asarray(C, dtype=float))
        s = self.samples
        return s[:, 0:1] + s[:, 1:2] * C[None, :] ** (-s[:, 2:3])

    def predict_band(self, C: ArrayLike, level: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise percentile band of the bootstrap curves at ``C`` (shape ``[n]``): ``(lo, hi)``, each ``[n]``."""
        return percentile_interval(self.predict_samples(C), self.level if level is None else level)

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers for ``fits.json`` (no bootstrap samples)."""
        return {"E": self.E, "A": self.A, "alpha": self.alpha,
                "intervals": {k: list(v) for k, v in self.intervals.items()}, "level": self.level,
                "n_points": self.n_points, "n_dropped": self.n_dropped, "n_boot": int(len(self.samples)),
                "residual_scale": self.residual_scale, "irreducible": self.irreducible, "C_range": list(self.C_range)}


def _starts(y: np.ndarray, irreducible: bool, coarse: bool = False) -> np.ndarray:
    """Grid of starting points in the normalised parameters (see :func:`fit_power_law`); ``coarse``: 2 of them."""
    L = np.exp(y)
    l_min, l_mid = float(L.min()), float(np.exp(y.mean()))
    alphas = (0.3,) if coarse else (0.05, 0.15, 0.3, 0.6, 1.0)
    rows = []
    if irreducible:
        # A start at the floor of E (robust.CONSTANT_FLOOR) reaches an optimum at E ~ 0 at once; from larger E the
        # optimiser crawls there along a long curved valley (log E -> -infinity).
        for frac in (1e-4, 0.7) if coarse else (1e-4, 0.1, 0.5, 0.8, 0.95):
            E = frac * l_min
            for scale in (1.0,) if coarse else (0.5, 2.0):
                A = scale * max(l_mid - E, 1e-3 * l_mid)  # the power-law term at the middle of the data
                rows += [[np.log(E), np.log(A), alpha] for alpha in alphas]
    else:
        rows = [[np.log(l_mid), alpha] for alpha in alphas]
    return np.array(rows)


def fit_power_law(C: ArrayLike, L: ArrayLike, *, n_boot: int = 200, seed: int = 0, huber_delta: float = 1e-3,
                  irreducible: bool = True, level: float = 0.95, resampled_L: ArrayLike | None = None) -> PowerLawFit:
    """Fit ``L = E + A * C^(-alpha)`` to points ``C`` (compute, shape ``[n]``) and ``L`` (loss, shape ``[n]``).

    Minimises the Huber loss (``huber_delta``, in log units) of ``log L - log(E + A C^-alpha)`` with L-BFGS-B from
    a grid of starts and keeps the best. ``C`` is divided by its geometric mean inside the fit so that the
    coefficient and the exponent are of similar size (``C`` ~ 1e20 would otherwise tie ``log A`` to ``46 * alpha``
    and make the problem badly conditioned); ``A`` is reported for ``C`` in its own units. With ``irreducible=False``,
    ``E = 0`` (2 parameters, for few points). ``n_boot`` resamples of the points with replacement give percentile
    intervals at ``level``; each is refitted from the full-data optimum and two coarse starts.

    ``resampled_L`` (shape ``[B, n]``, aligned with ``L``): a parametric bootstrap instead: each row is a draw of
    all the losses from their own uncertainty (an isoFLOP vertex's, say), and the samples are the fits to those
    rows, every point kept (``n_boot`` is then ignored). Use it when each point is itself an estimate.

    Rows with NaN/inf are dropped (counted in ``n_dropped``). Raises :class:`FitError` with fewer points, or fewer
    distinct compute values, than parameters, or with ``C`` or ``L`` <= 0.
    """
    n_params = 3 if irreducible else 2
    hint = "add budgets" + (" or fit with irreducible=False (E = 0, 2 parameters)" if irreducible else "")
    cols, valid, dropped = clean_columns("fit_power_law", {"C": C, "L": L}, positive=("C", "L"),
                                         min_points=n_params, hint=hint)
    C_, L_ = cols["C"], cols["L"]
    n_distinct = len(np.unique(C_))
    if n_distinct < n_params:
        raise FitError(f"fit_power_law: needs at least {n_params} distinct compute values, got {n_distinct}; {hint}")

    log_c0 = float(np.mean(np.log(C_)))
    x = np.log(C_) - log_c0
    y = np.log(L_)

    def problem(idx: np.ndarray) -> LseProblem:
        if irreducible:  # terms: E (constant), A * C^-alpha
            logx = np.stack([np.zeros(len(idx)), x[idx]], axis=1)
            return LseProblem(y[idx], logx, np.array([False, True]), huber_delta)
        return LseProblem(y[idx], x[idx][:, None], np.array([True]), huber_delta)

    def to_params(theta: np.ndarray) -> np.ndarray:
        """Normalised parameters -> (E, A, alpha) with A for C in its own units."""
        if irreducible:
            e, a, alpha = theta
            E = np.exp(e)
        else:
            (a, alpha), E = theta, 0.0
        return np.array([E, np.exp(a + alpha * log_c0), alpha])

    full = problem(np.arange(len(y)))
    rng = np.random.default_rng(seed)
    # A resample with fewer distinct budgets than parameters has no unique fit: it is drawn again.
    resamples = bootstrap_indices(rng, len(y), lambda idx: len(np.unique(C_[idx])) >= n_params, n_boot)
    with single_threaded_blas():
        best, _ = minimise(full, _starts(y, irreducible))
        # Each resample starts from the full-data optimum and two coarse starts: the optimum alone can sit where the
        # gradient in E vanishes (E -> 0) and would never let a resample find a positive E.
        starts = np.vstack([best, _starts(y, irreducible, coarse=True)])
        if resampled_L is not None:
            draws = np.asarray(resampled_L, dtype=float)
            if draws.ndim != 2 or draws.shape[1] != len(valid):
                raise FitError(f"fit_power_law: resampled_L must have shape [B, {len(valid)}], got {draws.shape}")
            draws = draws[:, valid]  # the rows the fit kept
            draws = draws[np.all(np.isfinite(draws) & (draws > 0), axis=1)]
            y_rows, logx = np.log(draws), full.logx
        else:
            idx = np.array(resamples, dtype=int).reshape(-1, len(y))
            y_rows, logx = y[idx], np.stack([problem(i).logx for i in idx]) if len(idx) else full.logx
        # All refits at once (robust.minimise_batch): the same objective and bounds as the full fit, from the same
        # starts; one scipy call per refit spent 20 times longer in call overhead than in arithmetic.
        thetas = minimise_batch(y_rows, logx, full.has_exponent, huber_delta, starts)[0] if len(y_rows) else \
            np.empty((0, len(best)))
        samples = np.array([to_params(t) for t in thetas]).reshape(-1, 3)
    params = to_params(best)
    lo, hi = percentile_interval(samples, level)
    return PowerLawFit(
        E=float(params[0]), A=float(params[1]), alpha=float(params[2]),
        intervals={name: (float(lo[i]), float(hi[i])) for i, name in enumerate(PARAMS)},
        n_points=len(y), n_dropped=dropped, residual_scale=robust_scale(full.residuals(best)),
        irreducible=irreducible, samples=samples, C_range=(float(C_.min()), float(C_.max())), level=level)
