"""Compute-optimal envelopes: isoFLOP vertices per budget and the curve through them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aunet.analysis.envelope import (
    BELOW,
    OK,
    envelope_points,
    family_envelope,
    family_noise,
    fit_envelope,
    held_out_prediction,
    seed_noise,
)
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
    # Every draw counts: one whose vertex leaves the sampled sizes takes its best sampled size, as the point would.
    assert sum(covered) >= 3 and all(len(p.L_samples) == 300 for p in points)
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


def test_each_budget_draws_with_its_own_noise():
    """Repeats at the two smallest budgets, one ten times noisier than the other: each interval takes its budget's
    noise, the two larger budgets the pool (said in the point's record)."""
    C, size, L = isoflop_runs()
    rng = np.random.default_rng(4)
    centre = np.flatnonzero(np.isclose(size / optimum_size(C), 1.3, rtol=0.01))[:2]  # the centre of 6e11 and 2e12
    sds = {0: 0.05, 1: 0.005}
    seeds, extra_C, extra_size, extra_L = [0] * len(C), [], [], []
    for i, idx in enumerate(centre):
        for s in (1, 2):
            extra_C.append(C[idx])
            extra_size.append(size[idx])
            extra_L.append(L[idx] + rng.normal(0, sds[i]))
            seeds.append(s)
    C_all, size_all = np.concatenate([C, extra_C]), np.concatenate([size, extra_size])
    L_all = np.concatenate([L, extra_L])
    model = family_noise(C_all, size_all, L_all)
    points = family_envelope(C_all, size_all, seeds, L_all, noise=model, n_boot=200)
    assert [p.n_runs for p in points] == [3] * 4  # the valleys hold the base seed's runs only
    assert [p.noise.source for p in points] == ["measured", "measured", "pooled", "pooled"]
    widths = [p.L_interval[1] - p.L_interval[0] for p in points]
    assert widths[0] > 3 * widths[1] and points[2].noise.sd > points[1].noise.sd
    assert points[0].to_dict()["noise"] == {"C": points[0].C, "sd": model.sd[0], "dof": 2.0, "source": "measured"}


def test_the_largest_budget_is_predicted_from_the_others():
    C, size, L = isoflop_runs()
    rng = np.random.default_rng(5)
    noisy = L + rng.normal(0, 0.003, len(L))
    held = held_out_prediction(envelope_points(C, size, noisy, noise=0.003, n_boot=200))
    truth = E + A * BUDGETS[-1] ** -ALPHA
    assert held["C"] == pytest.approx(BUDGETS[-1], rel=0.01) and held["n_fitted"] == 3 and held["irreducible"]
    assert held["interval"][0] <= held["measured"] <= held["interval"][1] and held["contains"]
    assert held["curve_interval"][0] <= truth <= held["curve_interval"][1]
    # The point's own noise widens the interval for a measurement beyond the curve's band.
    assert held["interval"][1] - held["interval"][0] > held["curve_interval"][1] - held["curve_interval"][0]
    # A largest budget that left the law (0.2 bits per byte worse) is outside the interval.
    worse = noisy + np.where(C > 1e13, 0.2, 0.0)
    assert not held_out_prediction(envelope_points(C, size, worse, noise=0.003, n_boot=200))["contains"]
    with pytest.raises(FitError, match="3 others"):
        held_out_prediction(envelope_points(C[:9], size[:9], noisy[:9], noise=0.003))
