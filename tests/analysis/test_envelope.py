"""Compute-optimal envelopes: isoFLOP vertices per budget and the curve through them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aunet.analysis.envelope import BELOW, OK, envelope_points, fit_envelope, seed_noise
from aunet.analysis.gain import compute_equivalent_gain
from aunet.analysis.inputs import FitError

E, A, ALPHA = 1.2, 40.0, 0.12  # the synthetic family's compute-optimal curve L*(C) = E + A C^-alpha
BUDGETS = np.array([6e11, 2e12, 6e12, 2e13])


def optimum_size(C):  # the synthetic optimum moves as C^0.5
    return 0.4 * np.sqrt(C)


def isoflop_runs(curvature=0.08, multipliers=(0.5, 1.0, 2.0), shift=1.3):
    """Runs at 3 sizes per budget on exact parabolas in log size whose vertices lie on the known curve."""
    C, size, L = [], [], []
    for c in BUDGETS:
        star = optimum_size(c)
        for m in multipliers:
            s = star * m * shift  # the grid is not centred on the optimum
            C.append(c * (1 + 0.002 * m))  # runs spend their budget up to rounding
            size.append(s)
            L.append(E + A * c**-ALPHA + curvature * math.log(s / star) ** 2)
    return np.array(C), np.array(size), np.array(L)


def test_vertices_recover_the_known_optimum_at_every_budget():
    points = envelope_points(*isoflop_runs(), noise=0.0)
    assert [p.status for p in points] == [OK] * 4 and [p.n_sizes for p in points] == [3] * 4
    for p, c in zip(points, BUDGETS):
        assert p.size_star == pytest.approx(optimum_size(c), rel=1e-6)
        assert p.L_star == pytest.approx(E + A * c**-ALPHA, abs=1e-9)
        assert p.L_star < min(p.losses)  # the vertex is below every sampled size: between two of them
        assert math.isnan(p.L_interval[0])  # no noise given: no interval


def test_envelope_curve_recovers_the_known_law_and_the_gain_between_two_families():
    fit = fit_envelope(envelope_points(*isoflop_runs(), noise=0.0))
    assert (fit.E, fit.A, fit.alpha) == pytest.approx((E, A, ALPHA), rel=1e-3)
    C, size, L = isoflop_runs()
    better = fit_envelope(envelope_points(C, size, L - 0.1, noise=0.0))  # another family, 0.1 bits better everywhere
    g = compute_equivalent_gain(better, fit, [1e13])[0]
    # BPE-like `fit` needs g C to reach better's loss at C: A (gC)^-alpha = A C^-alpha - 0.1
    expected = ((A * 1e13**-ALPHA - 0.1) / A) ** (-1 / ALPHA) / 1e13
    assert g == pytest.approx(expected, rel=1e-2)


def test_an_optimum_below_the_sampled_sizes_is_flagged_and_the_best_size_stands_in():
    C, size, L = isoflop_runs(shift=4.0)  # the grid 2x..8x the optimum: the loss still falls at the smallest size
    points = envelope_points(C, size, L, noise=0.0)
    assert {p.status for p in points} == {BELOW}
    for p in points:
        assert p.L_star == pytest.approx(min(p.losses)) and p.size_star == pytest.approx(min(p.sizes))


def test_noise_gives_intervals_that_cover_the_truth():
    C, size, L = isoflop_runs()
    rng = np.random.default_rng(1)
    noisy = L + rng.normal(0, 0.005, len(L))
    points = envelope_points(C, size, noisy, noise=0.005, n_boot=300)
    covered = [p.L_interval[0] <= E + A * c**-ALPHA <= p.L_interval[1] for p, c in zip(points, BUDGETS)]
    # A draw whose noisy vertex leaves the sampled sizes has no vertex: it is dropped, rarely.
    assert sum(covered) >= 3 and all(270 <= len(p.L_samples) <= 300 for p in points)
    fit = fit_envelope(points)
    assert len(fit.samples) == min(len(p.L_samples) for p in points)
    assert fit.intervals["alpha"][0] < fit.alpha < fit.intervals["alpha"][1]


def test_seed_noise_pools_the_repeats():
    assert seed_noise([[1.0, 1.2], [2.0, 2.0, 2.3], [5.0]]) == pytest.approx(
        math.sqrt((0.02 + 2 * np.var([2.0, 2.0, 2.3], ddof=1)) / 3))
    assert math.isnan(seed_noise([[1.0], [2.0]]))


def test_an_envelope_needs_three_budgets():
    C, size, L = isoflop_runs()
    with pytest.raises(FitError, match="3 or more"):
        fit_envelope(envelope_points(C[:6], size[:6], L[:6], noise=0.0))
