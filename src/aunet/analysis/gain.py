"""Compute-equivalent gain between two fitted scaling curves.

For a compute ``C``, the gain of family ``a`` over family ``b`` is the factor ``g`` such that ``b`` trained with
``g * C`` reaches the loss ``a`` reaches with ``C``: ``L_b(g C) = L_a(C)``. ``g > 1`` means ``a`` is more compute
efficient (``b`` needs ``g`` times the compute). Where ``L_a(C)`` is at or below ``b``'s irreducible loss ``E_b``,
no compute suffices and the gain is undefined (NaN; infinite in the bootstrap intervals).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from aunet.analysis.power_law import PowerLawFit
from aunet.analysis.robust import percentile_interval


def _gain(params_a: np.ndarray, params_b: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Gain for parameter rows ``(E, A, alpha)`` of shape ``[..., 3]`` (broadcast) at ``C`` of shape ``[n]``.

    Solved in logs: ``ln(g C) = (ln A_b - ln(L_a(C) - E_b)) / alpha_b``, so that ``C`` ~ 1e22 and ``alpha`` ~ 0.05
    do not overflow. Returns shape ``[..., n]``, NaN where ``L_a(C) <= E_b`` (or ``alpha_b = 0``).
    """
    Ea, Aa, aa = (params_a[..., i : i + 1] for i in range(3))
    Eb, Ab, ab = (params_b[..., i : i + 1] for i in range(3))
    with np.errstate(all="ignore"):
        La = Ea + Aa * C ** (-aa)
        gap = La - Eb
        log_gc = (np.log(Ab) - np.log(np.where(gap > 0, gap, np.nan))) / ab
        return np.exp(log_gc - np.log(C))


def compute_equivalent_gain(fit_a: PowerLawFit, fit_b: PowerLawFit, C_grid: ArrayLike) -> np.ndarray:
    """Gain of ``fit_a`` over ``fit_b`` at each compute in ``C_grid`` (shape ``[n]``); shape ``[n]``, NaN where
    ``b`` never reaches ``a``'s loss."""
    C = np.atleast_1d(np.asarray(C_grid, dtype=float))
    pa = np.array([fit_a.E, fit_a.A, fit_a.alpha])
    pb = np.array([fit_b.E, fit_b.A, fit_b.alpha])
    return _gain(pa, pb, C)


@dataclass(frozen=True, eq=False)
class GainInterval:
    """Gain with a bootstrap interval over a compute grid (all arrays of shape ``[n]``).

    ``gain`` is the point estimate (NaN where unreachable); ``lo``/``hi`` the percentile interval over pairs of
    bootstrap samples, counting an unreachable sample as an infinite gain (so ``hi`` can be ``inf``);
    ``unreachable`` the fraction of sample pairs for which ``b`` never reaches ``a``'s loss.
    """

    C: np.ndarray
    gain: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    unreachable: np.ndarray
    level: float


def compute_equivalent_gain_interval(fit_a: PowerLawFit, fit_b: PowerLawFit, C_grid: ArrayLike,
                                     level: float = 0.95) -> GainInterval:
    """Gain of ``fit_a`` over ``fit_b`` with a percentile interval from the fits' bootstrap samples.

    Sample ``i`` of ``a`` is paired with sample ``i`` of ``b`` (the two bootstraps are independent, so any pairing
    is a draw from the joint); the shorter of the two sample sets sets the number of pairs.
    """
    C = np.atleast_1d(np.asarray(C_grid, dtype=float))
    point = compute_equivalent_gain(fit_a, fit_b, C)
    m = min(len(fit_a.samples), len(fit_b.samples))
    if m == 0:
        nan = np.full(len(C), np.nan)
        return GainInterval(C, point, nan, nan.copy(), nan.copy(), level)
    g = _gain(fit_a.samples[:m], fit_b.samples[:m], C)  # [m, n]
    unreachable = ~np.isfinite(g)
    # Percentiles interpolate between neighbours and inf * 0 is NaN: stand in the largest float, then map back.
    big = np.finfo(float).max
    lo, hi = percentile_interval(np.where(unreachable, big, g), level)
    lo, hi = np.where(lo >= big, np.inf, lo), np.where(hi >= big, np.inf, hi)
    return GainInterval(C, point, lo, hi, unreachable.mean(axis=0), level)
