"""The fitting library on synthetic data with known parameters: recovery within the reported intervals, analytic
values, and one-line FitErrors on degenerate input."""

from __future__ import annotations

import time

import numpy as np
import pytest

from aunet.analysis import (
    FitError,
    PowerLawFit,
    compute_equivalent_gain,
    compute_equivalent_gain_interval,
    fit_hyperparameter_law,
    fit_loss_surface,
    fit_power_law,
    group_budgets,
    isoflop_analysis,
)
from aunet.analysis.isoflop import OK, OPENS_DOWNWARD, OUTSIDE_RANGE, TOO_FEW_SIZES
from aunet.analysis.power_law import _starts
from aunet.analysis.robust import LseProblem, bias_corrected_interval, minimise, minimise_batch, percentile_interval
from aunet.errors import UserError

E_TRUE, ALPHA_TRUE = 0.7, 0.15
A_TRUE = 0.4 * 1e19**ALPHA_TRUE  # L(1e19) = 1.1


def power_law_data(seed: int = 1, n: int = 12, noise: float = 0.004, E: float = E_TRUE) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    C = np.logspace(18, 21, n)
    return C, (E + A_TRUE * C**-ALPHA_TRUE) * np.exp(rng.normal(0, noise, n))


def assert_within(fit, name: str, truth: float) -> None:
    lo, hi = fit.intervals[name]
    assert lo <= truth <= hi, f"{name}: truth {truth} outside [{lo}, {hi}] (estimate {getattr(fit, name)})"


# --- power law ---------------------------------------------------------------------------------------------------


def test_power_law_recovers_known_parameters_within_intervals():
    C, L = power_law_data()
    fit = fit_power_law(C, L, n_boot=200)
    for name, truth in (("E", E_TRUE), ("A", A_TRUE), ("alpha", ALPHA_TRUE)):
        assert_within(fit, name, truth)
    assert fit.E == pytest.approx(E_TRUE, abs=0.05) and fit.alpha == pytest.approx(ALPHA_TRUE, abs=0.03)
    assert fit.n_points == 12 and fit.n_dropped == 0 and fit.samples.shape == (200, 3)
    assert 0.001 < fit.residual_scale < 0.01  # the 0.4% noise, in log units
    assert fit.predict(1e20) == pytest.approx(E_TRUE + A_TRUE * 1e20**-ALPHA_TRUE, rel=0.01)
    lo, hi = fit.predict_band(C)
    assert np.all(lo <= fit.predict(C) + 1e-9) and np.all(fit.predict(C) <= hi + 1e-9)


def test_power_law_with_irreducible_loss_forced_to_zero():
    C, L = power_law_data(n=5, E=0.0)
    fit = fit_power_law(C, L, irreducible=False, n_boot=100)
    assert fit.E == 0.0 and not fit.irreducible and fit.n_points == 5
    assert_within(fit, "alpha", ALPHA_TRUE)
    assert_within(fit, "A", A_TRUE)
    assert fit.alpha == pytest.approx(ALPHA_TRUE, abs=0.01)


def test_power_law_is_robust_to_one_outlier():
    C, L = power_law_data(noise=0.002)
    L[5] *= 1.3  # one diverged run
    fit = fit_power_law(C, L, n_boot=0)
    assert fit.alpha == pytest.approx(ALPHA_TRUE, abs=0.02) and fit.E == pytest.approx(E_TRUE, abs=0.04)


def test_power_law_drops_nan_and_inf_rows_and_counts_them():
    C, L = power_law_data(n=8)
    C = np.append(C, [1e19, np.nan])
    L = np.append(L, [np.inf, 1.0])
    fit = fit_power_law(C, L, n_boot=20)
    assert fit.n_dropped == 2 and fit.n_points == 8


@pytest.mark.parametrize(
    "C, L, kwargs, message",
    [
        ([1e19, 1e20], [1.0, 0.9], {}, "fit_power_law: needs at least 3 points with finite values, got 2; add budgets "
                                       "or fit with irreducible=False"),
        ([1e19, 1e19, 1e19, 1e19], [1.0, 0.9, 0.95, 0.97], {}, "needs at least 3 distinct compute values, got 1"),
        ([1e19, 1e20, 1e21], [1.0, 0.0, 0.8], {}, "L has 1 non-positive value(s); logs need L > 0"),
        ([-1e19, 1e20, 1e21], [1.0, 0.9, 0.8], {}, "C has 1 non-positive value(s)"),
        ([1e19, 1e20, np.nan, 1e21], [1.0, 0.9, 0.8, np.nan], {}, "got 2 (2 row(s) with NaN/inf dropped)"),
        ([1e19, 1e20, 1e21], [1.0, 0.9], {}, "columns have different lengths (C=3, L=2)"),
        ([1e19], [1.0], {"irreducible": False}, "needs at least 2 points with finite values, got 1; add budgets"),
    ],
)
def test_power_law_degenerate_inputs(C, L, kwargs, message):
    with pytest.raises(FitError) as info:
        fit_power_law(C, L, n_boot=5, **kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, UserError)


def test_batched_refits_reach_the_optimum_of_one_fit_at_a_time():
    """The bootstrap refits all draws at once (robust.minimise_batch); each must reach the objective L-BFGS-B reaches
    on that draw alone from the same starts, up to 1e-5, on nearly every draw: noisy envelopes of 4 budgets, free
    floor."""
    rng = np.random.default_rng(3)
    C = np.array([6e11, 2e12, 6e12, 2e13])
    x = np.log(C) - np.log(C).mean()
    logx = np.stack([np.zeros(4), x], axis=1)
    has_exponent = np.array([False, True])
    L = 1.2 + 25.0 * C**-0.12
    draws = L * np.exp(rng.normal(0, 0.02, (100, 4)))
    # The starts fit_power_law gives every refit: the full-data optimum and two coarse ones.
    best, _ = minimise(LseProblem(np.log(L), logx, has_exponent, 1e-3), _starts(np.log(L), True))
    starts = np.vstack([best, _starts(np.log(L), True, coarse=True)])
    started = time.perf_counter()
    batch, fun_batch, converged = minimise_batch(np.log(draws), logx, has_exponent, 1e-3, starts)
    batch_s = time.perf_counter() - started
    # L-BFGS-B alone from each start (one start per call: no batched screening), the best of them.
    started = time.perf_counter()
    one = np.array([min(minimise(LseProblem(np.log(d), logx, has_exponent, 1e-3), s[None], keep=1)[1] for s in starts)
                    for d in draws])
    print(f"{len(draws)} refits: batched {batch_s:.2f} s, one by one {time.perf_counter() - started:.2f} s")
    # The objective is a sum of Huber losses divided by delta (about 0.01 to 0.1 here): 1e-5 is a change of the
    # residuals by about 1e-8 in log loss.
    worse = fun_batch > one + 1e-5 * np.maximum(1.0, one)
    assert worse.mean() <= 0.02 and converged.mean() >= 0.8, (worse.mean(), converged.mean())


def test_bias_corrected_interval_shifts_with_the_draws_below_the_estimate():
    rng = np.random.default_rng(0)
    draws = rng.normal(0, 1, (20_000, 1))
    lo, hi = bias_corrected_interval(draws, np.array([0.0]))
    plain_lo, plain_hi = percentile_interval(draws)
    assert (lo[0], hi[0]) == pytest.approx((plain_lo[0], plain_hi[0]), abs=0.02)  # centred: the percentile interval
    # A minimum's redraws fall below it (here 69% of them): the interval moves up, towards the biased-away truth.
    lo, hi = bias_corrected_interval(draws, np.array([0.5]))
    assert lo[0] > plain_lo[0] + 0.5 and hi[0] > plain_hi[0] + 0.5


# --- loss surface ------------------------------------------------------------------------------------------------

SURFACE = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)  # Chinchilla's published approach-3 values


def surface_data(seed: int = 0, noise: float = 0.003) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    N = np.repeat(np.logspace(7, 9.5, 6), 6)
    D = np.tile(np.logspace(9, 11.5, 6), 6)
    s = SURFACE
    L = (s["E"] + s["A"] * N ** -s["alpha"] + s["B"] * D ** -s["beta"]) * np.exp(rng.normal(0, noise, len(N)))
    return N, D, L


def test_loss_surface_recovers_parameters_and_allocation():
    N, D, L = surface_data()
    fit = fit_loss_surface(N, D, L, n_boot=100)
    for name, truth in SURFACE.items():
        assert_within(fit, name, truth)
    assert fit.alpha == pytest.approx(SURFACE["alpha"], abs=0.03) and fit.E == pytest.approx(SURFACE["E"], abs=0.1)
    # The closed-form optimum of the true surface lies in the allocation's interval.
    s = SURFACE
    C = np.array([1e20, 1e22])
    G = (s["alpha"] * s["A"] / (s["beta"] * s["B"])) ** (1 / (s["alpha"] + s["beta"]))
    a, b = s["beta"] / (s["alpha"] + s["beta"]), s["alpha"] / (s["alpha"] + s["beta"])
    N_true, D_true = G * (C / 6) ** a, (C / 6) ** b / G
    alloc = fit.optimal_allocation(C)
    assert np.all(alloc.N_interval[0] <= N_true) and np.all(N_true <= alloc.N_interval[1])
    assert np.all(alloc.D_interval[0] <= D_true) and np.all(D_true <= alloc.D_interval[1])
    np.testing.assert_allclose(6 * alloc.N * alloc.D, C, rtol=1e-9)  # the allocation spends exactly C


def test_loss_surface_rejects_collinear_sizes_and_data():
    N = np.logspace(7, 9, 8)
    with pytest.raises(FitError, match="log N and log D are collinear"):
        fit_loss_surface(N, 20 * N, 2 + 100 / N**0.3, n_boot=5)


def test_loss_surface_needs_five_points():
    with pytest.raises(FitError, match="needs at least 5 points with finite values, got 4"):
        fit_loss_surface([1e7, 1e8, 1e7, 1e8], [1e9, 1e9, 1e10, 1e10], [3.0, 2.8, 2.7, 2.5], n_boot=5)


# --- isoFLOP -----------------------------------------------------------------------------------------------------

ISOFLOP_SIZES = np.logspace(-0.8, 0.8, 7)


def isoflop_data(budgets=(1e18, 1e19, 1e20, 1e21), seed: int = 0, sizes=ISOFLOP_SIZES):
    rng = np.random.default_rng(seed)
    s = SURFACE
    G = (s["alpha"] * s["A"] / (s["beta"] * s["B"])) ** (1 / (s["alpha"] + s["beta"]))
    a = s["beta"] / (s["alpha"] + s["beta"])
    rows = []
    for C in budgets:
        for N in G * (C / 6) ** a * sizes:
            D = C / (6 * N)
            L = (s["E"] + s["A"] * N ** -s["alpha"] + s["B"] * D ** -s["beta"]) * np.exp(rng.normal(0, 0.002))
            rows.append((C * (1 + rng.uniform(-0.003, 0.003)), N, L))  # FLOPs spent differ slightly per run
    C, N, L = map(np.array, zip(*rows))
    return C, N, L, a, G * 6**-a


def test_isoflop_recovers_the_optimal_size_trend():
    C, N, L, a_true, k_true = isoflop_data()
    fit = isoflop_analysis(C, N, L, n_boot=200)
    assert [b.status for b in fit.budgets] == [OK] * 4 and [b.n_runs for b in fit.budgets] == [7] * 4
    assert_within(fit, "a", a_true)
    assert_within(fit, "k", k_true)
    assert fit.a == pytest.approx(a_true, abs=0.02)
    assert fit.a_D == pytest.approx(1 - fit.a) and fit.k_D == pytest.approx(1 / (6 * fit.k))
    np.testing.assert_allclose(6 * fit.n_opt(1e20) * fit.d_opt(1e20), 1e20)


def test_isoflop_flags_budgets_instead_of_extrapolating():
    C, N, L, _, _ = isoflop_data()
    # A budget sampled only below its optimum, one with two sizes, and one whose parabola opens downward.
    C2, N2, L2, _, _ = isoflop_data(budgets=(1e22,), sizes=np.logspace(-1.6, -0.8, 4))
    C3, N3, L3 = np.full(2, 1e23), np.array([1e10, 2e10]), np.array([2.0, 1.9])
    x = np.log(np.logspace(10, 11, 5))
    C4, N4, L4 = np.full(5, 1e24), np.exp(x), 2.0 - (x - x.mean()) ** 2
    fit = isoflop_analysis(np.concatenate([C, C2, C3, C4]), np.concatenate([N, N2, N3, N4]),
                           np.concatenate([L, L2, L3, L4]), n_boot=50)
    statuses = {round(np.log10(b.C)): b.status for b in fit.budgets}
    assert statuses == {18: OK, 19: OK, 20: OK, 21: OK, 22: OUTSIDE_RANGE, 23: TOO_FEW_SIZES, 24: OPENS_DOWNWARD}
    flagged = [b for b in fit.budgets if b.status != OK]
    assert all(np.isnan(b.N_star) for b in flagged)
    # The trend comes from the four good budgets only: the same as without the flagged ones.
    alone = isoflop_analysis(C, N, L, n_boot=0)
    assert fit.a == pytest.approx(alone.a) and fit.k == pytest.approx(alone.k)


def test_isoflop_errors():
    C, N, L, _, _ = isoflop_data(budgets=(1e19,))
    with pytest.raises(FitError, match=r"all runs share one budget \(1e\+19 FLOPs\)"):
        isoflop_analysis(C, N, L)
    C, N, L, _, _ = isoflop_data(budgets=(1e19, 1e20), sizes=np.logspace(-1.6, -0.8, 4))
    with pytest.raises(FitError, match="needs optima at 2 or more budgets, got 0 .*minimum_outside_sampled_sizes"):
        isoflop_analysis(C, N, L)


def test_group_budgets_within_one_percent():
    labels, budgets = group_budgets(np.array([1e19, 1.004e19, 0.998e19, 1.03e19, 3e19, 3.02e19]))
    assert labels.tolist() == [0, 0, 0, 1, 2, 2]
    np.testing.assert_allclose(budgets, [1e19, 1.03e19, 3.01e19])


# --- compute-equivalent gain -------------------------------------------------------------------------------------

GRID = np.logspace(18, 22, 9)


def test_gain_is_two_when_b_needs_twice_the_compute():
    a = PowerLawFit(E=0.7, A=A_TRUE, alpha=ALPHA_TRUE)
    b = PowerLawFit(E=0.7, A=A_TRUE * 2**ALPHA_TRUE, alpha=ALPHA_TRUE)  # L_b(C) = L_a(C / 2)
    np.testing.assert_allclose(compute_equivalent_gain(a, b, GRID), 2.0, rtol=1e-10)
    np.testing.assert_allclose(compute_equivalent_gain(b, a, GRID), 0.5, rtol=1e-10)


def test_gain_matches_the_closed_form_for_pure_power_laws():
    a = PowerLawFit(E=0.0, A=50.0, alpha=0.12)
    b = PowerLawFit(E=0.0, A=80.0, alpha=0.15)
    # A_b (gC)^-ab = A_a C^-aa  =>  g = (A_b / A_a)^(1/ab) * C^(aa/ab - 1)
    expected = (80.0 / 50.0) ** (1 / 0.15) * GRID ** (0.12 / 0.15 - 1)
    np.testing.assert_allclose(compute_equivalent_gain(a, b, GRID), expected, rtol=1e-9)


def test_gain_is_nan_where_b_never_reaches_the_loss():
    a = PowerLawFit(E=0.5, A=A_TRUE, alpha=ALPHA_TRUE)
    b = PowerLawFit(E=0.75, A=A_TRUE, alpha=ALPHA_TRUE)
    g = compute_equivalent_gain(a, b, GRID)
    reachable = a.predict(GRID) > 0.75
    assert reachable.any() and (~reachable).any()
    assert np.all(np.isfinite(g[reachable])) and np.all(np.isnan(g[~reachable]))
    np.testing.assert_allclose(b.predict(g[reachable] * GRID[reachable]), a.predict(GRID[reachable]), rtol=1e-9)


def test_gain_interval_from_bootstrap_samples_of_two_fits():
    C, La = power_law_data(seed=3)
    rng = np.random.default_rng(4)
    Lb = (E_TRUE + A_TRUE * (C / 2) ** -ALPHA_TRUE) * np.exp(rng.normal(0, 0.004, len(C)))
    fa, fb = fit_power_law(C, La, n_boot=100), fit_power_law(C, Lb, n_boot=100, seed=1)
    inside = np.logspace(18.5, 20.5, 5)
    g = compute_equivalent_gain_interval(fa, fb, inside)
    assert np.all(g.lo <= 2.0) and np.all(2.0 <= g.hi), (g.lo, g.hi)
    np.testing.assert_allclose(g.gain, 2.0, rtol=0.3)
    np.testing.assert_array_equal(g.gain, compute_equivalent_gain(fa, fb, inside))


def test_gain_interval_counts_unreachable_samples_as_infinite():
    samples_a = np.tile([0.5, A_TRUE, ALPHA_TRUE], (10, 1))
    samples_b = np.tile([0.6, A_TRUE, ALPHA_TRUE], (10, 1))
    samples_b[:5, 0] = 2.0  # half of b's samples sit above every loss a reaches
    a = PowerLawFit(E=0.5, A=A_TRUE, alpha=ALPHA_TRUE, samples=samples_a)
    b = PowerLawFit(E=0.6, A=A_TRUE, alpha=ALPHA_TRUE, samples=samples_b)
    g = compute_equivalent_gain_interval(a, b, np.array([1e19]))
    assert g.unreachable[0] == 0.5 and np.isinf(g.hi[0]) and np.isfinite(g.lo[0]) and np.isfinite(g.gain[0])


# --- hyperparameter laws -----------------------------------------------------------------------------------------

K_LR, A_LR = 5.0, -0.17


def tuning_data(seed: int = 0, runs_per_budget: int = 9):
    """LR grids around the optimum k C^a at 5 budgets; loss a bowl in log LR, so ~3 runs per budget are within 1%."""
    rng = np.random.default_rng(seed)
    C, lr, loss = [], [], []
    for budget in np.logspace(19, 21, 5):
        opt = K_LR * budget**A_LR
        offsets = np.arange(runs_per_budget) - (runs_per_budget - 1) / 2
        for value in opt * 1.3**offsets * np.exp(rng.uniform(-0.08, 0.08)):
            C.append(budget * (1 + rng.uniform(-0.002, 0.002)))
            lr.append(value)
            loss.append(1.0 * (1 + 0.1 * np.log(value / opt) ** 2) + rng.normal(0, 0.0005))
    return np.array(C), np.array(lr), np.array(loss)


def test_hyperparameter_law_recovers_the_optimum_trend():
    C, lr, loss = tuning_data()
    fit = fit_hyperparameter_law(C, lr, loss, tolerance=0.01, n_boot=200)
    assert_within(fit, "a", A_LR)
    assert_within(fit, "k", K_LR)
    assert fit.a == pytest.approx(A_LR, abs=0.03)
    assert fit.n_budgets == 5 and fit.runs_per_budget == 9 and 5 < fit.n_points < 45
    assert fit.predict(1e20) == pytest.approx(K_LR * 1e20**A_LR, rel=0.2)


def test_hyperparameter_law_keeps_the_runs_near_each_best():
    C, lr, loss = tuning_data()
    C = np.append(C, np.nan)  # a run without a budget: dropped, never kept
    lr, loss = np.append(lr, 1e-3), np.append(loss, 0.5)
    fit = fit_hyperparameter_law(C, lr, loss, tolerance=0.0, n_boot=10)
    assert fit.kept.shape == (46,) and not fit.kept[-1] and fit.n_dropped == 1
    assert fit.kept.sum() == 5  # exactly the best run of each budget
    best = [np.argmin(np.where(np.abs(C / b - 1) < 0.01, loss, np.inf)) for b in np.logspace(19, 21, 5)]
    assert sorted(np.flatnonzero(fit.kept).tolist()) == sorted(best)


def test_hyperparameter_law_with_one_run_per_budget_reports_it():
    C = np.logspace(19, 21, 4)
    fit = fit_hyperparameter_law(C, K_LR * C**A_LR, np.ones(4), n_boot=20)
    assert fit.runs_per_budget == 1 and fit.n_points == 4
    assert fit.a == pytest.approx(A_LR) and fit.k == pytest.approx(K_LR)


@pytest.mark.parametrize(
    "C, value, message",
    [
        ([1e19, 1e19, 1.005e19], [1e-3, 2e-3, 3e-3], "all runs share one budget (1e+19 FLOPs)"),
        ([1e19, 1e20, 1e21], [1e-3, -2e-3, 3e-3], "value has 1 non-positive value(s)"),
        ([1e19, np.nan, np.nan], [1e-3, 2e-3, 3e-3], "needs at least 2 points with finite values, got 1"),
    ],
)
def test_hyperparameter_law_degenerate_inputs(C, value, message):
    with pytest.raises(FitError) as info:
        fit_hyperparameter_law(C, value, [1.0, 1.1, 1.2], n_boot=5)
    assert message in str(info.value)
