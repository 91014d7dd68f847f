"""Do the intervals hold? Synthetic isoFLOP studies drawn from known laws, fitted with the suite's own functions.

A 95% interval is a claim about a procedure: applied to many studies, it contains the truth 95% of the time. On
measured results the truth is unknown, but on a synthetic study it is known: each family's compute-optimal loss
follows ``L*(C) = E + A C^-alpha``, each budget's runs lie on a valley ``L*(C) + k (ln size/size*)^2`` around it, and
every run carries seed noise of a chosen size per budget. :func:`simulate_coverage` draws many such studies with the
design of a real one (its budgets, sizes per budget, which runs are repeated with other seeds), fits each exactly as
``analysis/scaling.py`` does (:func:`fit_study`: repeats, noise model, base-seed envelope points, envelope curve,
gain over the reference family) and counts how often each reported interval contains the true value:

- the envelope vertex at each budget (against the true ``L*(C)``),
- the exponent ``alpha`` of each family's envelope curve,
- the compute-equivalent gain of each other family over the reference family at each budget,
- the difference of each other family's optimal loss and the reference family's at each budget
  (:func:`~aunet.analysis.envelope.difference_interval`),
- the held-out prediction: the curve fitted without the largest budget, at the largest budget.

``tests/analysis/test_coverage.py`` runs it on a study shaped like the CPU study and requires 90% or more;
``python -m aunet.analysis.coverage`` runs a larger one and prints the rates (the figures in docs/intervals.md);
the scaling notebook runs it with each study's own fitted curves and measured noise.

Arrays in, numbers out: no pandas, no plotting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aunet.analysis.envelope import (
    EnvelopePoint,
    difference_interval,
    family_envelope,
    family_noise,
    fit_envelope,
    held_out_prediction,
)
from aunet.analysis.gain import compute_equivalent_gain, compute_equivalent_gain_interval
from aunet.analysis.inputs import FitError
from aunet.analysis.noise import NoiseModel
from aunet.analysis.power_law import PowerLawFit


@dataclass(frozen=True)
class Law:
    """A family's true compute-optimal curve ``L*(C) = E + A C^-alpha``."""

    E: float
    A: float
    alpha: float

    @classmethod
    def through(cls, E: float, alpha: float, C0: float, L0: float) -> Law:
        """The law with floor ``E`` and exponent ``alpha`` that passes through ``(C0, L0)``."""
        return cls(E, (L0 - E) * C0**alpha, alpha)

    def at(self, C: Any) -> np.ndarray:
        return self.E + self.A * np.asarray(C, dtype=float) ** (-self.alpha)

    def as_fit(self) -> PowerLawFit:
        """The law as a :class:`PowerLawFit` without samples (for the true gain)."""
        return PowerLawFit(E=self.E, A=self.A, alpha=self.alpha)


@dataclass(frozen=True)
class Family:
    """A synthetic family: its true law and the standard deviation of one run's loss at each budget of the design."""

    law: Law
    noise: tuple[float, ...]


@dataclass(frozen=True)
class Design:
    """How a study samples: ``budgets`` (FLOPs), the size multipliers of each budget (relative to the grid centre),
    the centre's offset from the true optimum size (``offset`` > 1: the grid sits above it), the valley's curvature
    ``k`` (loss per ``(ln size)^2``), and where seeds repeat a run: ``repeats`` maps a budget index to the multiplier
    repeated there, ``n_seeds`` runs in all (the base seed and ``n_seeds - 1`` others)."""

    budgets: tuple[float, ...]
    multipliers: tuple[tuple[float, ...], ...]
    offset: float = 1.25
    curvature: float = 0.1
    repeats: dict[int, float] = field(default_factory=dict)
    n_seeds: int = 3

    def __post_init__(self) -> None:
        if len(self.multipliers) != len(self.budgets):
            raise ValueError(f"Design: {len(self.multipliers)} multiplier sets for {len(self.budgets)} budgets")


def optimum_size(C: float) -> float:
    """The synthetic optimum size at budget ``C`` (FLOPs per byte ``sqrt(C / 20)``; only ratios matter)."""
    return math.sqrt(C / 20.0)


def simulate_runs(design: Design, family: Family, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One family's runs of one synthetic study: arrays ``C``, ``size``, ``seed`` and ``L`` (each ``[n]``)."""
    if len(family.noise) != len(design.budgets):
        raise ValueError(f"simulate_runs: {len(family.noise)} noise values for {len(design.budgets)} budgets")
    C, size, seed, L = [], [], [], []
    for i, c in enumerate(design.budgets):
        star = optimum_size(c)
        for m in design.multipliers[i]:
            s = star * design.offset * m
            seeds = range(design.n_seeds) if design.repeats.get(i) == m else range(1)
            for k in seeds:
                C.append(c)
                size.append(s)
                seed.append(k)
                L.append(float(family.law.at(c)) + design.curvature * math.log(s / star) ** 2
                         + rng.normal(0.0, family.noise[i]))
    return {"C": np.array(C), "size": np.array(size), "seed": np.array(seed, dtype=float), "L": np.array(L)}


@dataclass(frozen=True, eq=False)
class StudyFit:
    """What :func:`fit_study` made of one family: its envelope points, the envelope curve (None when it could not be
    fitted) and the held-out-budget prediction (None with fewer than 4 budgets)."""

    points: tuple[EnvelopePoint, ...]
    fit: PowerLawFit | None
    held_out: dict[str, Any] | None


def fit_study(runs: dict[str, np.ndarray], *, n_boot: int, seed: int = 0, curves: bool = True,
              held_out: bool = True, baseline: bool = False) -> StudyFit:
    """Fit one family's runs (``C``, ``size``, ``seed``, ``L``) as ``analysis/scaling.py`` does: the noise model of
    its repeats (:func:`~aunet.analysis.envelope.family_noise`), the envelope points of its base seed, the curve
    through them (``E`` free with 4 or more budgets, 0 with 3; skipped without ``curves``) and the held-out-budget
    prediction (without ``held_out``, or with fewer than 4 budgets, None).

    ``baseline``: the method before the coverage test existed, for comparison: one noise for every budget, the pool
    of the family's repeats, taken as exact, and plain percentile intervals of the optima."""
    noise = family_noise(runs["C"], runs["size"], runs["L"])
    if baseline:
        noise = NoiseModel.known(noise.pooled_sd)
    points = family_envelope(runs["C"], runs["size"], runs["seed"], runs["L"], noise=noise, n_boot=n_boot,
                             seed=seed, bias_correct=not baseline)
    fit = prediction = None
    if curves:
        try:
            fit = fit_envelope(points, irreducible=len(points) >= 4)
        except FitError:
            fit = None
        if held_out and len(points) >= 4:
            prediction = held_out_prediction(points)
    return StudyFit(points, fit, prediction)


@dataclass
class Coverage:
    """Hits of the intervals of many synthetic studies: for each quantity, a list per study of 0/1 (one per interval
    checked in that study). :meth:`rate` is the share of hits, :meth:`stderr` its Monte Carlo standard error,
    computed from the per-study rates (the intervals of one study share its noise, so they are not independent)."""

    hits: dict[str, list[list[int]]] = field(default_factory=dict)
    n_studies: int = 0

    def add(self, quantity: str, study: int, hit: bool) -> None:
        rows = self.hits.setdefault(quantity, [])
        while len(rows) <= study:
            rows.append([])
        rows[study].append(int(hit))

    def count(self, quantity: str) -> int:
        return sum(len(r) for r in self.hits.get(quantity, []))

    def rate(self, quantity: str) -> float:
        n = self.count(quantity)
        return sum(sum(r) for r in self.hits.get(quantity, [])) / n if n else float("nan")

    def stderr(self, quantity: str) -> float:
        """Standard error of :meth:`rate`: a ratio estimator over studies (clustered by study)."""
        rows = [r for r in self.hits.get(quantity, []) if r]
        if len(rows) < 2:
            return float("nan")
        n = np.array([len(r) for r in rows], dtype=float)
        h = np.array([sum(r) for r in rows], dtype=float)
        p = h.sum() / n.sum()
        resid = h - p * n
        return float(np.sqrt(np.sum(resid**2) / (len(rows) * (len(rows) - 1))) / n.mean())

    def summary(self, detail: bool = False) -> dict[str, dict[str, float]]:
        """Per quantity: ``rate``, ``stderr`` and ``n`` (intervals checked), for printing and ``fits.json``;
        ``detail``: also the breakdowns (``vertex@family@budget``)."""
        return {q: {"rate": self.rate(q), "stderr": self.stderr(q), "n": self.count(q)} for q in self.hits
                if detail or "@" not in q}


def _inside(lo: float, value: float, hi: float) -> bool:
    """Whether ``value`` lies in ``[lo, hi]``; a missing bound (NaN: no interval) is a miss."""
    return bool(not np.isnan(lo) and not np.isnan(hi) and lo <= value <= hi)


def simulate_coverage(design: Design, families: dict[str, Family], *, reference: str, n_studies: int,
                      n_boot: int = 200, seed: int = 0, curves: bool = True, held_out: bool = True,
                      baseline: bool = False) -> Coverage:
    """Draw ``n_studies`` synthetic studies of ``design`` with ``families`` (their true laws and noise), fit each with
    :func:`fit_study` and count, per quantity, how often the 95% interval contains the truth: ``vertex`` (every
    budget of every family, against its true ``L*``; ``vertex@family@budget`` per cell), ``alpha`` (every family's
    curve), ``gain`` (every other family over ``reference`` at every budget), ``difference`` (every other family's
    optimal loss minus ``reference``'s at every budget, against the true laws' difference), and the held-out
    prediction of the largest budget from the others: ``held_out_curve`` (the curve's band, against the true ``L*``
    there) and ``held_out_measured`` (the interval for a measured point, against the envelope value measured there).
    ``curves=False``: the vertices only (fast); ``held_out=False``: no held-out fits; ``baseline``: see
    :func:`fit_study`."""
    if reference not in families:
        raise ValueError(f"simulate_coverage: reference family {reference!r} is not among {sorted(families)}")
    rng = np.random.default_rng(seed)
    out = Coverage(n_studies=n_studies)
    budgets = np.array(design.budgets)
    for study in range(n_studies):
        fits = {}
        for name, family in families.items():
            runs = simulate_runs(design, family, rng)
            fitted = fit_study(runs, n_boot=n_boot, seed=int(rng.integers(2**31)), curves=curves,
                               held_out=held_out, baseline=baseline)
            fits[name] = fitted
            for p in fitted.points:
                hit = _inside(p.L_interval[0], float(family.law.at(p.C)), p.L_interval[1])
                out.add("vertex", study, hit)
                out.add(f"vertex@{name}@{p.C:.2g}", study, hit)  # per family and budget: where it fails
            if fitted.fit is not None:
                lo, hi = fitted.fit.intervals["alpha"]
                out.add("alpha", study, _inside(lo, family.law.alpha, hi))
            if fitted.held_out is not None:
                h = fitted.held_out
                out.add("held_out_curve", study, _inside(h["curve_interval"][0], float(family.law.at(h["C"])),
                                                          h["curve_interval"][1]))
                out.add("held_out_measured", study, bool(h["contains"]))
        ref = fits[reference].fit
        for name, family in families.items():
            if name == reference or ref is None or fits[name].fit is None:
                continue
            g = compute_equivalent_gain_interval(fits[name].fit, ref, budgets)
            true = compute_equivalent_gain(family.law.as_fit(), families[reference].law.as_fit(), budgets)
            for lo, t, hi in zip(g.lo, true, g.hi):
                out.add("gain", study, _inside(lo, float(t), hi))
        for name, family in families.items():
            if name == reference:
                continue
            for p in fits[name].points:
                q = next((q for q in fits[reference].points if abs(q.C / p.C - 1) < 0.01), None)
                if q is not None:
                    d = difference_interval(p, q)
                    true = float(family.law.at(p.C)) - float(families[reference].law.at(p.C))
                    out.add("difference", study, _inside(d.lo, true, d.hi))
    return out


# A study shaped like the CPU study (sweeps/cpu-study.yaml): four budgets, FLOPs per byte x0.5, x1 and x2 around the
# grid centre and x4 at the largest, the centre repeated with two more seeds at the two smallest budgets. The laws
# and noise are round values of the size that study measured (BPE about 0.01 bits per byte at every budget, an AU-Net
# about 0.1 at 6e11 and 0.03 from 2e12 on), not its fits: the question is whether the procedure's intervals hold at
# that noise, whatever the true curves.
CPU_LIKE_DESIGN = Design(
    budgets=(6e11, 2e12, 6e12, 2e13),
    multipliers=((0.5, 1.0, 2.0), (0.5, 1.0, 2.0), (0.5, 1.0, 2.0), (0.5, 1.0, 2.0, 4.0)),
    offset=1.25, curvature=0.1, repeats={0: 1.0, 1: 1.0})
CPU_LIKE_FAMILIES = {
    "bpe": Family(Law.through(E=1.2, alpha=0.15, C0=6e11, L0=2.2), noise=(0.012, 0.012, 0.012, 0.012)),
    "aunet": Family(Law.through(E=1.2, alpha=0.15, C0=6e11, L0=2.6), noise=(0.1, 0.03, 0.03, 0.03)),
}


def with_repeats_everywhere(design: Design) -> Design:
    """``design`` with the centre size repeated at every budget (as the CPU study after its extra seeds)."""
    return Design(design.budgets, design.multipliers, design.offset, design.curvature,
                  {i: 1.0 for i in range(len(design.budgets))}, design.n_seeds)


def main(argv: list[str] | None = None) -> int:
    """``python -m aunet.analysis.coverage``: the coverage of the CPU-like study (seeds at its two smallest budgets,
    and at every budget), printed per kind of interval; ``--baseline`` the method before, for comparison."""
    import argparse
    import time

    parser = argparse.ArgumentParser(prog="python -m aunet.analysis.coverage", description=main.__doc__)
    parser.add_argument("--studies", type=int, default=400, help="synthetic studies per design (default 400)")
    parser.add_argument("--boot", type=int, default=200, help="bootstrap draws per fit (default 200, as aunet analyze)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline", action="store_true",
                        help="pooled noise taken as exact and plain percentile intervals (the method before)")
    args = parser.parse_args(argv)
    for label, design in (("seeds at 6e11 and 2e12", CPU_LIKE_DESIGN),
                          ("seeds at every budget", with_repeats_everywhere(CPU_LIKE_DESIGN))):
        started = time.perf_counter()
        cov = simulate_coverage(design, CPU_LIKE_FAMILIES, reference="bpe", n_studies=args.studies,
                                n_boot=args.boot, seed=args.seed, baseline=args.baseline)
        print(f"{label}{' (baseline)' if args.baseline else ''}: {args.studies} studies, {args.boot} draws, "
              f"{time.perf_counter() - started:.0f} s")
        for q, s in cov.summary().items():
            print(f"  {q:<18} {s['rate']:.3f} ± {s['stderr']:.3f}  ({s['n']} intervals)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
