"""Seed noise per budget: repeats found by budget and size, each budget's own spread where it has repeats, the pool
(with honest degrees of freedom) elsewhere, and draws of the noise that widen intervals as Student's t does."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from aunet.analysis.noise import (
    KNOWN,
    MEASURED,
    NONE,
    POOLED,
    NoiseModel,
    effective_dof,
    noise_model,
    repeat_groups,
    seed_noise,
)


def test_repeats_are_runs_of_one_budget_and_size():
    # Budget 1e12 (spent within 0.3%): size 10 three times, size 20 once; budget 3e12: size 10 twice.
    C = [1e12, 1.002e12, 0.999e12, 1e12, 3e12, 3e12]
    size = [10.0, 10.0, 10.0, 20.0, 10.0, 10.0]
    L = [2.0, 2.1, 2.2, 1.5, 1.8, 1.9]
    group_C, groups = repeat_groups(C, size, L)
    assert group_C == pytest.approx([1e12, 3e12], rel=0.01)
    assert [sorted(g) for g in groups] == [[2.0, 2.1, 2.2], [1.8, 1.9]]


def test_each_budget_keeps_its_own_noise_and_the_others_get_the_pool():
    groups = [[2.0, 2.2, 2.4], [3.0, 3.1], [1.0, 1.01, 1.02]]
    model = noise_model([1e12, 1e12, 3e12], groups)
    # 1e12 pools its two groups (2 + 1 degrees of freedom); 3e12 has its own.
    assert model.budgets == (1e12, 3e12) and model.dof == (3, 2)
    assert model.sd[0] == pytest.approx(math.sqrt((2 * 0.04 + 0.005) / 3))
    assert model.sd[1] == pytest.approx(0.01)
    at = model.at(1.003e12)
    assert (at.source, at.sd, at.dof) == (MEASURED, model.sd[0], 3)
    fallback = model.at(1e13)  # no repeats there: the pool of all
    assert fallback.source == POOLED and fallback.sd == pytest.approx(seed_noise(groups))
    # The pool is dominated by 1e12's spread: its degrees of freedom are about those of 1e12, not 5.
    assert 3 <= fallback.dof < 3.2
    pooled_only = noise_model([1e12, 1e12, 3e12], groups, per_budget=False)
    assert pooled_only.at(1e12).source == POOLED and pooled_only.at(1e12).sd == pytest.approx(fallback.sd)


def test_effective_dof_is_the_sum_for_equal_spreads_and_one_budgets_for_a_dominant_one():
    assert effective_dof([0.01, 0.01, 0.01], [2, 2, 2]) == pytest.approx(6)
    assert effective_dof([1.0, 1e-4], [2, 2]) == pytest.approx(2, rel=1e-3)


def test_no_repeats_no_noise_and_a_known_number_is_exact():
    empty = noise_model(np.empty(0), [])
    assert empty.at(1e12).source == NONE and math.isnan(empty.at(1e12).sd)
    assert np.all(empty.draw_sd([1e12, 2e12], np.random.default_rng(0), 5) == 0)
    known = NoiseModel.known(0.02)
    assert known.at(5e12).source == KNOWN and np.all(known.draw_sd([1e12], np.random.default_rng(0), 4) == 0.02)
    assert NoiseModel.known(0.0).at(1e12).source == NONE


def test_noise_draws_widen_an_interval_as_students_t():
    """A mean's bootstrap with the noise drawn from its posterior gives Student's t quantiles: from 3 seeds (2 degrees
    of freedom) the 97.5% point is 4.30 standard errors, not the normal's 1.96."""
    model = noise_model([1e12], [[0.0, 1.0, 2.0]])  # sd 1 with 2 degrees of freedom
    rng = np.random.default_rng(0)
    sd = model.draw_sd([1e12], rng, 200_000)[:, 0]
    q = np.quantile(rng.normal(size=len(sd)) * sd, 0.975)
    assert q == pytest.approx(stats.t.ppf(0.975, 2), rel=0.03)


def test_budgets_sharing_the_pool_share_its_draw():
    model = noise_model([1e12, 2e12], [[1.0, 1.1, 1.3], [2.0, 2.05]])
    draws = model.draw_sd([1e12, 5e12, 2e12, 9e12], np.random.default_rng(1), 50)
    assert np.array_equal(draws[:, 1], draws[:, 3])  # 5e12 and 9e12: the pool, one estimate
    assert not np.array_equal(draws[:, 0], draws[:, 2]) and not np.array_equal(draws[:, 0], draws[:, 1])
