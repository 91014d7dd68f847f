"""Loss surface over model size and data, Chinchilla's approach 3: ``L(N, D) = E + A / N^alpha + B / D^beta``.

``N`` and ``D`` are generic here: for our runs ``N`` is a parameter count (total or non-embedding, the caller's
choice) and ``D`` the units seen in training (bytes for AU-Net, tokens for BPE). The compute-optimal allocation
assumes ``C = k * N * D`` with ``k = flops_per_param_token`` (6 for a plain transformer); for AU-Net, whose FLOPs
per byte are not 6 x parameters, pass the ratio of its own FLOPs formula or read the allocation as indicative.
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
    percentile_interval,
    robust_scale,
    single_threaded_blas,
)

PARAMS = ("E", "A", "B", "alpha", "beta")


@dataclass(frozen=True, eq=False)
class Allocation:
    """Compute-optimal size and data at each compute ``C`` (all arrays of shape ``[n]``).

    ``N_interval`` and ``D_interval`` are ``(lo, hi)`` percentile intervals from the bootstrap samples of the
    surface (NaN when the fit had no bootstrap).
    """

    C: np.ndarray
    N: np.ndarray
    D: np.ndarray
    N_interval: tuple[np.ndarray, np.ndarray]
    D_interval: tuple[np.ndarray, np.ndarray]


def _allocation(params: np.ndarray, C: np.ndarray, k: float) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form minimiser of ``L(N, D)`` subject to ``k N D = C`` for parameters of shape ``[..., 5]``.

    Returns ``N_opt`` and ``D_opt`` of shape ``[..., n]``.
    """
    E, A, B, alpha, beta = (params[..., i : i + 1] for i in range(5))
    with np.errstate(all="ignore"):  # a bootstrap sample with alpha or beta = 0 has no optimum: NaN
        G = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
        a, b = beta / (alpha + beta), alpha / (alpha + beta)
        return G * (C / k) ** a, (C / k) ** b / G


@dataclass(frozen=True, eq=False)
class LossSurfaceFit:
    """A fitted ``L(N, D) = E + A / N^alpha + B / D^beta``.

    ``intervals`` maps each of ``E, A, B, alpha, beta`` to a percentile bootstrap interval at ``level``;
    ``samples`` has shape ``[n_boot, 5]`` in that column order. ``residual_scale`` is the robust standard deviation
    of the log residuals.
    """

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    n_points: int = 0
    n_dropped: int = 0
    residual_scale: float = float("nan")
    samples: np.ndarray = field(default_factory=lambda: np.empty((0, 5)))
    level: float = 0.95

    @property
    def params(self) -> np.ndarray:
        return np.array([self.E, self.A, self.B, self.alpha, self.beta])

    def predict(self, N: ArrayLike, D: ArrayLike) -> np.ndarray:
        """Loss for model size ``N`` and data ``D`` (broadcast together)."""
        N, D = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
        return self.E + self.A * N ** (-self.alpha) + self.B * D ** (-self.beta)

    def optimal_allocation(self, C: ArrayLike, flops_per_param_token: float = 6.0) -> Allocation:
        """``N_opt(C)`` and ``D_opt(C)`` minimising the loss at compute ``C = k N D`` (``C`` of shape ``[n]``).

        With ``G = (alpha A / (beta B))^(1/(alpha+beta))``: ``N_opt = G (C/k)^(beta/(alpha+beta))`` and
        ``D_opt = G^-1 (C/k)^(alpha/(alpha+beta))``; intervals from the same formula on every bootstrap sample.
        """
        C = np.atleast_1d(np.asarray(C, dtype=float))
        N, D = _allocation(self.params, C, flops_per_param_token)
        Ns, Ds = _allocation(self.samples, C, flops_per_param_token)
        return Allocation(C=C, N=N, D=D, N_interval=percentile_interval(Ns, self.level),
                          D_interval=percentile_interval(Ds, self.level))

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers for ``fits.json`` (no bootstrap samples)."""
        return {**dict(zip(PARAMS, map(float, self.params))),
                "intervals": {k: list(v) for k, v in self.intervals.items()}, "level": self.level,
                "n_points": self.n_points, "n_dropped": self.n_dropped, "n_boot": int(len(self.samples)),
                "residual_scale": self.residual_scale}


def _starts(y: np.ndarray, coarse: bool = False) -> np.ndarray:
    """Grid of starting points ``[e, a', b', alpha, beta]`` in normalised units (see :func:`fit_loss_surface`)."""
    l_min, l_mid = float(np.exp(y.min())), float(np.exp(y.mean()))
    exps = (0.3,) if coarse else (0.1, 0.3, 0.7)
    rows = []
    for frac in (1e-4, 0.5, 0.9) if coarse else (1e-4, 0.3, 0.6, 0.9):
        E = frac * l_min
        rest = max(l_mid - E, 1e-3 * l_mid)  # what the two power-law terms add at the middle of the data
        for share in (0.5,) if coarse else (0.2, 0.5, 0.8):
            rows += [[np.log(E), np.log(share * rest), np.log((1 - share) * rest), al, be]
                     for al in exps for be in exps]
    return np.array(rows)


def fit_loss_surface(N: ArrayLike, D: ArrayLike, L: ArrayLike, *, n_boot: int = 200, seed: int = 0,
                     huber_delta: float = 1e-3, level: float = 0.95) -> LossSurfaceFit:
    """Fit ``L = E + A / N^alpha + B / D^beta`` to runs with size ``N``, data ``D`` and loss ``L`` (each ``[n]``).

    Same robust method as :func:`aunet.analysis.fit_power_law`: Huber loss of the log residual with the prediction
    written as ``logsumexp(e, a - alpha log N, b - beta log D)``, L-BFGS-B from a grid of starts, the best kept;
    ``N`` and ``D`` are divided by their geometric means inside the fit (conditioning) and ``A``, ``B`` reported
    in the original units. ``n_boot`` resamples of the runs give percentile intervals at ``level``.

    Raises :class:`FitError` with fewer than 5 points, non-positive values, or when ``log N`` and ``log D`` are
    collinear (every run on one line, e.g. a fixed data-to-size ratio), which leaves ``alpha`` and ``beta``
    unidentifiable.
    """
    cols, _, dropped = clean_columns("fit_loss_surface", {"N": N, "D": D, "L": L}, positive=("N", "D", "L"),
                                     min_points=5, hint="add runs (the surface has 5 parameters)")
    logN, logD, y = np.log(cols["N"]), np.log(cols["D"]), np.log(cols["L"])
    design = np.stack([np.ones_like(logN), logN, logD], axis=1)
    if np.linalg.matrix_rank(design, tol=1e-6 * max(1.0, np.abs(design).max())) < 3:
        raise FitError("fit_loss_surface: log N and log D are collinear (all runs on one line); the surface needs "
                       "several model sizes at a given data size or several budgets per size")
    n0, d0 = float(logN.mean()), float(logD.mean())
    xN, xD = logN - n0, logD - d0

    def problem(idx: np.ndarray) -> LseProblem:
        logx = np.stack([np.zeros(len(idx)), xN[idx], xD[idx]], axis=1)
        return LseProblem(y[idx], logx, np.array([False, True, True]), huber_delta)

    def to_params(theta: np.ndarray) -> np.ndarray:
        e, a, b, alpha, beta = theta
        return np.array([np.exp(e), np.exp(a + alpha * n0), np.exp(b + beta * d0), alpha, beta])

    def identifiable(idx: np.ndarray) -> bool:
        return len(np.unique(idx)) >= 5 and np.linalg.matrix_rank(design[idx], tol=1e-6) == 3

    full = problem(np.arange(len(y)))
    rng = np.random.default_rng(seed)
    resamples = bootstrap_indices(rng, len(y), identifiable, n_boot)
    with single_threaded_blas():
        best, _ = minimise(full, _starts(y))
        starts = np.vstack([best, _starts(y, coarse=True)])
        samples = np.array([to_params(minimise(problem(idx), starts, keep=1)[0]) for idx in resamples])
    samples = samples.reshape(-1, 5)
    lo, hi = percentile_interval(samples, level)
    params = to_params(best)
    return LossSurfaceFit(
        *map(float, params), intervals={k: (float(lo[i]), float(hi[i])) for i, k in enumerate(PARAMS)},
        n_points=len(y), n_dropped=dropped, residual_scale=robust_scale(full.residuals(best)), samples=samples,
        level=level)
