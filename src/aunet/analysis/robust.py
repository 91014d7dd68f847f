"""The robust fitting core shared by the power-law and loss-surface fits, and bootstrap helpers.

Models are sums of power laws, ``L = sum_k exp(c_k) * X_k^(-p_k)``, fitted in log space:
``log L ≈ logsumexp_k(c_k - p_k * log X_k)``. Writing the coefficients as logs keeps them positive and lets the
prediction be computed without overflow; the Huber loss of the log residual (as in Chinchilla's approach 3 and its
replications) keeps a few outlying runs from dragging the fit. The minimiser is L-BFGS-B with an analytic gradient,
started from a grid of points, keeping the best.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from scipy.optimize import minimize


@dataclass(frozen=True, eq=False)
class LseProblem:
    """Data of one fit: ``y = log L`` of shape ``[n]`` and ``logx`` of shape ``[n, K]``, one column per term.

    ``has_exponent`` (shape ``[K]``) says which terms carry an exponent; a term without one (the irreducible loss
    ``E``) is a constant and its column of ``logx`` is ignored. The parameter vector is
    ``[c_1..c_K, p_k for each term with an exponent]``.
    """

    y: np.ndarray
    logx: np.ndarray
    has_exponent: np.ndarray
    delta: float

    def unpack(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Coefficients ``c`` (shape ``[K]``) and exponents ``p`` (shape ``[K]``, 0 for constant terms)."""
        K = self.logx.shape[1]
        p = np.zeros(K)
        p[self.has_exponent] = theta[K:]
        return theta[:K], p

    def log_predict(self, theta: np.ndarray) -> np.ndarray:
        """``log L`` predicted at the problem's points, shape ``[n]``."""
        c, p = self.unpack(theta)
        return _logsumexp_rows(c[None, :] - p[None, :] * self.logx)[0]

    def residuals(self, theta: np.ndarray) -> np.ndarray:
        return self.y - self.log_predict(theta)

    def objective(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """Sum of Huber losses of the log residuals divided by ``delta``, and its gradient.

        Divided by ``delta`` so that the objective is of order ``sum |r|`` rather than ``delta * sum |r|`` (about
        1e-5 for a good fit): L-BFGS-B's stopping rule compares changes with ``max(|f|, 1)``, and a tiny objective
        would stop it before it converges.
        """
        c, p = self.unpack(theta)
        u = c[None, :] - p[None, :] * self.logx  # [n, K]
        lse, w = _logsumexp_rows(u)  # w = d lse / d c_k, [n, K]
        r = self.y - lse
        a = np.abs(r)
        loss = np.where(a <= self.delta, 0.5 * r * r, self.delta * (a - 0.5 * self.delta)).sum() / self.delta
        dr = np.clip(r, -self.delta, self.delta) / self.delta  # d loss / d r
        grad_c = -(dr @ w)
        grad_p = (dr @ (w * self.logx))
        return float(loss), np.concatenate([grad_c, grad_p[self.has_exponent]])


def _logsumexp_rows(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise log-sum-exp of ``u`` (shape ``[n, K]``) and the softmax weights, both stable for large ``|u|``.

    Written out rather than calling scipy.special (several times slower on arrays this small, and the objective is
    evaluated ~10^5 times per bootstrap).
    """
    m = u.max(axis=1, keepdims=True)
    e = np.exp(u - m)
    s = e.sum(axis=1, keepdims=True)
    return (m + np.log(s))[:, 0], e / s


# Exponents are bounded to be non-negative (loss does not grow with scale) and below a generous ceiling so that a
# start in a flat region cannot run away. A constant term (E) is floored at 1e-4 of the smallest loss: below that it
# is indistinguishable from 0, and without the floor the optimiser spends hundreds of iterations drifting
# log E towards -infinity when the data do not pin E down. Other coefficients are free.
MAX_EXPONENT = 5.0
CONSTANT_FLOOR = 1e-4
# Iterations of the screening phase of :func:`minimise` and of the final phase.
SCREEN_ITER = 20
MAX_ITER = 1000


def minimise(problem: LseProblem, starts: np.ndarray, *, keep: int = 2) -> tuple[np.ndarray, float]:
    """Minimise ``problem.objective`` with L-BFGS-B from each row of ``starts`` (shape ``[S, P]`` or ``[P]``).

    Two phases, because some starts crawl for hundreds of iterations along the valley towards ``E -> 0`` (where
    ``log E`` has a vanishing gradient) while the grid also holds a start at the floor of ``E`` that gets there at
    once: every start runs ``SCREEN_ITER`` iterations, then the ``keep`` best continue to convergence.
    Returns the best parameters (shape ``[P]``) and their objective.
    """
    n_exp = int(problem.has_exponent.sum())
    floor = float(problem.y.min() + np.log(CONSTANT_FLOOR))
    bounds = [(None, None) if e else (floor, None) for e in problem.has_exponent] + [(0.0, MAX_EXPONENT)] * n_exp
    lower = np.array([-np.inf if b[0] is None else b[0] for b in bounds])

    def run(start: np.ndarray, maxiter: int) -> tuple[float, np.ndarray]:
        res = minimize(problem.objective, np.maximum(start, lower), jac=True, method="L-BFGS-B", bounds=bounds,
                       options={"maxiter": maxiter, "ftol": 1e-10, "gtol": 1e-8})
        ok = np.all(np.isfinite(res.x)) and np.isfinite(res.fun)
        return (float(res.fun) if ok else np.inf), np.asarray(res.x, dtype=float)

    starts = np.atleast_2d(starts)
    if len(starts) > keep:
        screened = sorted((run(s, SCREEN_ITER) for s in starts), key=lambda item: item[0])
        starts = np.array([theta for _, theta in screened[:keep]])
    fun, theta = min((run(s, MAX_ITER) for s in starts), key=lambda item: item[0])
    if not np.isfinite(fun):
        raise RuntimeError("every start failed; the data has non-finite logs")
    return theta, fun


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Limit BLAS to one thread while fitting, when threadpoolctl is installed.

    scipy's L-BFGS-B calls BLAS on vectors of a few elements; with several BLAS threads on a busy machine the
    threads spin against each other and a fit that takes one second took twenty in our measurements.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it fits are only slower on loaded machines
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def robust_scale(residuals: np.ndarray) -> float:
    """1.4826 times the median absolute residual: the standard deviation for Gaussian residuals, robust to outliers."""
    return float(1.4826 * np.median(np.abs(residuals))) if len(residuals) else float("nan")


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over the first axis of ``samples`` (shape ``[B, ...]``), ignoring NaN samples.

    Returns ``(lo, hi)`` of shape ``samples.shape[1:]``; NaN where there are no finite samples.
    """
    samples = np.asarray(samples, dtype=float)
    if samples.shape[0] == 0:
        shape = samples.shape[1:]
        return np.full(shape, np.nan), np.full(shape, np.nan)
    tail = 100 * (1 - level) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN slice gives NaN, which is what we want
        lo, hi = np.nanpercentile(samples, [tail, 100 - tail], axis=0)
    return lo, hi


def bootstrap_indices(rng: np.random.Generator, n: int, valid, n_boot: int, max_tries: int = 20) -> list[np.ndarray]:
    """``n_boot`` resamples of ``range(n)`` with replacement, each accepted by ``valid(indices)``.

    A resample that cannot be fitted (fewer distinct budgets than parameters) is drawn again, up to ``max_tries``
    times per sample, so small data sets give fewer samples rather than an endless loop.
    """
    out: list[np.ndarray] = []
    for _ in range(n_boot):
        for _ in range(max_tries):
            idx = rng.integers(0, n, size=n)
            if valid(idx):
                out.append(idx)
                break
    return out
