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
from scipy.special import ndtr, ndtri


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
# Iterations of the screening phase of :func:`minimise` (batched Levenberg-Marquardt steps) and of its final phase.
SCREEN_ITER = 30
MAX_ITER = 1000


def minimise(problem: LseProblem, starts: np.ndarray, *, keep: int = 2) -> tuple[np.ndarray, float]:
    """Minimise ``problem.objective`` with L-BFGS-B from each row of ``starts`` (shape ``[S, P]`` or ``[P]``).

    Two phases, because some starts crawl for hundreds of iterations along the valley towards ``E -> 0`` (where
    ``log E`` has a vanishing gradient) while the grid also holds a start at the floor of ``E`` that gets there at
    once: every start descends with :func:`minimise_batch`, then the ``keep`` best continue to convergence with
    L-BFGS-B.
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
        # Screening: every start descends at once (minimise_batch, one array for all of them), the `keep` best
        # continue with L-BFGS-B to convergence (50 scipy calls of 20 iterations each cost 20 times more).
        thetas, funs, _ = minimise_batch(problem.y[None], problem.logx, problem.has_exponent, problem.delta, starts,
                                         max_iter=SCREEN_ITER, every_start=True)
        order = np.argsort(np.where(np.isfinite(funs[0]), funs[0], np.inf), kind="stable")
        starts = thetas[0][order[:keep]]
    fun, theta = min((run(s, MAX_ITER) for s in starts), key=lambda item: item[0])
    if not np.isfinite(fun):
        raise RuntimeError("every start failed; the data has non-finite logs")
    return theta, fun


def minimise_batch(y: np.ndarray, logx: np.ndarray, has_exponent: np.ndarray, delta: float, starts: np.ndarray, *,
                   max_iter: int = 200, tol: float = 1e-10, every_start: bool = False
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Many problems of one shape at once: the :class:`LseProblem` of each row of ``y`` (shape ``[M, n]``) with
    ``logx`` (shape ``[n, K]``, shared, or ``[M, n, K]``), from each row of ``starts`` (shape ``[S, P]``, shared).

    A bootstrap refits one small model hundreds of times, and :func:`minimise` spends most of each fit in scipy's
    per-call overhead. Here every problem takes Levenberg-Marquardt steps on the iteratively reweighted least squares
    form of the Huber loss (weight 1 inside ``delta``, ``delta / |r|`` outside: the Huber loss's own majoriser), all
    problems in one array; a step is kept only if it lowers that problem's objective (the same function
    :meth:`LseProblem.objective` minimises), and each problem's parameters stay within the bounds of
    :func:`minimise`. Returns the best parameters over the starts (``[M, P]``), their objectives (``[M]``) and whether
    each problem converged (``[M]``: its last step changed the objective by less than ``tol``, relative, or no step
    lowered it any more); ``every_start``: the result of every start instead (``[M, S, P]``, ``[M, S]``, ``[M, S]``).

    Against L-BFGS-B run on each problem alone from the same starts (``pytest -s tests/analysis/test_fits.py -k
    batched``, which prints both times): the same objective to 1e-5 or lower on 98% or more of bootstrap draws of
    synthetic envelopes, in about a thirtieth of the time. The few that differ lie on flat valleys of the objective,
    where either optimiser stops somewhere.
    """
    y = np.asarray(y, dtype=float)
    M, n = y.shape
    starts = np.atleast_2d(np.asarray(starts, dtype=float))
    S, P = starts.shape
    K = logx.shape[-1]
    expo = np.flatnonzero(has_exponent)
    shared = logx.ndim == 2  # one design for every problem: broadcast it instead of copying it M * S times
    LX = logx[None] if shared else np.repeat(np.asarray(logx, dtype=float), S, axis=0)
    Y = np.repeat(y, S, axis=0)  # [M*S, n]: problem m, start s at row m * S + s
    theta = np.tile(starts, (M, 1))
    lower = np.full((M * S, P), -np.inf)
    upper = np.full((M * S, P), np.inf)
    floor = Y.min(axis=1) + np.log(CONSTANT_FLOOR)
    for k in range(K):
        if not has_exponent[k]:
            lower[:, k] = floor
    lower[:, K:], upper[:, K:] = 0.0, MAX_EXPONENT
    theta = np.clip(theta, lower, upper)
    eye = np.eye(P)[None]

    def evaluate(th: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Objective ``[R]``, residuals ``[R, n]`` and Jacobian of the prediction ``[R, n, P]`` of ``th`` (``[R, P]``),
        the parameters of problems ``rows``."""
        lx = LX if shared else LX[rows]
        p = np.zeros((len(th), K))
        p[:, expo] = th[:, K:]
        u = th[:, None, :K] - p[:, None, :] * lx  # [R, n, K]
        m = u.max(axis=2, keepdims=True)
        e = np.exp(u - m)
        total = e.sum(axis=2, keepdims=True)
        w = e / total
        r = Y[rows] - (m + np.log(total))[..., 0]
        a = np.abs(r)
        loss = np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta)).sum(axis=1) / delta
        jac = np.concatenate([w, -(w * lx)[:, :, expo]], axis=2)
        return loss, r, jac

    fun, r, jac = evaluate(theta, np.arange(M * S))
    lam = np.full(M * S, 1e-3)
    done = ~np.isfinite(fun)
    converged = np.zeros(M * S, dtype=bool)
    for _ in range(max_iter):
        active = np.flatnonzero(~done)
        if not len(active):
            break
        ra, ja = r[active], jac[active]
        omega = np.minimum(1.0, delta / np.maximum(np.abs(ra), 1e-300))  # IRLS weights of the Huber loss
        weighted = omega[:, :, None] * ja
        grad = (weighted * ra[:, :, None]).sum(axis=1)
        hess = np.matmul(ja.transpose(0, 2, 1), weighted)
        # A parameter at a bound that the step would push through is held there (projected Newton): clipping a step
        # computed as if it could move would spoil the step of the others.
        th_a = theta[active]
        held = ((th_a <= lower[active]) & (grad < 0)) | ((th_a >= upper[active]) & (grad > 0))
        grad = np.where(held, 0.0, grad)
        free = (~held).astype(float)
        hess = hess * free[:, :, None] * free[:, None, :] + eye * (1 - free)[:, :, None]
        diag = np.diagonal(hess, axis1=1, axis2=2)
        damped = hess + (lam[active, None] * (diag + 1e-12))[:, :, None] * eye
        try:
            step = np.linalg.solve(damped, grad[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:  # a singular system (a term that vanished): the least-squares step
            step = np.einsum("rpq,rq->rp", np.linalg.pinv(damped), grad)
        trial = np.clip(th_a + step, lower[active], upper[active])
        f_trial, r_trial, j_trial = evaluate(trial, active)
        better = np.isfinite(f_trial) & (f_trial < fun[active])
        change = np.where(better, fun[active] - f_trial, 0.0)
        take = active[better]
        theta[take], fun[take], r[take], jac[take] = trial[better], f_trial[better], r_trial[better], j_trial[better]
        lam[active] = np.where(better, lam[active] / 3, lam[active] * 4)
        small = better & (change <= tol * np.maximum(1.0, fun[active]))
        stuck = lam[active] > 1e12  # no step of any length lowers the objective: a minimum (or a bound)
        converged[active] = small | stuck
        done[active] = small | stuck
    ok = converged & np.isfinite(fun)
    if every_start:
        return theta.reshape(M, S, P), fun.reshape(M, S), ok.reshape(M, S)
    fun_ms = fun.reshape(M, S)
    best = np.argmin(np.where(np.isfinite(fun_ms), fun_ms, np.inf), axis=1)
    pick = np.arange(M) * S + best
    return theta[pick], fun[pick], ok[pick]


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


def bias_corrected_interval(samples: np.ndarray, estimate: np.ndarray, level: float = 0.95
                            ) -> tuple[np.ndarray, np.ndarray]:
    """Bias-corrected percentile interval (Efron's BC) over the first axis of ``samples`` (shape ``[B, ...]``) around
    ``estimate`` (shape ``samples.shape[1:]``), ignoring NaN samples; ``(lo, hi)`` of that shape.

    A plain percentile interval assumes the bootstrap draws scatter around the estimate as the estimate scatters
    around the truth, centred. A minimum is biased downward (the vertex of a noisy valley falls below the true
    optimum), and its redraws fall below it again: the plain interval then sits too low and misses the truth above
    it. The share of draws below the estimate measures that shift (``z0 = Phi^-1(share)``), and the percentiles
    are moved by it: ``Phi(2 z0 +- z_{level})`` instead of ``(1 +- level) / 2``. With ``z0 = 0`` this is the
    percentile interval.
    """
    samples = np.asarray(samples, dtype=float)
    estimate = np.broadcast_to(np.asarray(estimate, dtype=float), samples.shape[1:])
    lo = np.full(samples.shape[1:], np.nan)
    hi = np.full(samples.shape[1:], np.nan)
    z = float(ndtri(1 - (1 - level) / 2))
    for index in np.ndindex(*samples.shape[1:]):
        column = samples[(slice(None), *index)]
        column = column[~np.isnan(column)]
        if not len(column) or not np.isfinite(estimate[index]):
            continue
        share = (np.sum(column < estimate[index]) + 0.5 * np.sum(column == estimate[index])) / len(column)
        share = min(max(share, 0.5 / len(column)), 1 - 0.5 / len(column))  # a finite z0 with every draw on one side
        z0 = float(ndtri(share))
        q_lo, q_hi = ndtr(2 * z0 - z), ndtr(2 * z0 + z)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lo[index], hi[index] = np.percentile(column, [100 * q_lo, 100 * q_hi])
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
