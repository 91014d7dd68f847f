"""Seed noise: how far one run's loss moves when only its seed changes, measured at each budget that repeated seeds.

A study repeats a few runs with other seeds (the same size and budget, another initialisation and data order). The
spread of those repeats is the noise every other run carries, and the envelope intervals redraw each run's loss with
it (:func:`aunet.analysis.envelope.envelope_points`). Noise is not one number: short runs are erratic, so in the CPU
study three seeds of an AU-Net spread by 0.2 bits per byte at 6e11 FLOPs and by 0.05 at 2e12. The :class:`NoiseModel`
therefore keeps the noise of each budget that has repeats, and uses the pooled value of all of them only at budgets
without any (the fallback, named in ``source``), where it is wider than the quiet budgets' and narrower than the
erratic ones'.

A standard deviation from three seeds has 2 degrees of freedom and is uncertain by a factor of about 2 either way;
plugging it in as if it were the truth gives a 95% interval that covers about 81% of the time (Student's t with 2
degrees of freedom against the normal). :meth:`NoiseModel.draw_sd` draws the noise of each bootstrap replicate from
its posterior, ``s * sqrt(dof / chi2(dof))``, which widens the intervals exactly as Student's t does for a mean, and
is what the coverage test (``tests/analysis/test_coverage.py``) needs to reach its 95%.

Arrays in, numbers out: no pandas.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from aunet.analysis.inputs import clean_columns, group_budgets

MEASURED = "measured"  # the budget's own repeats
POOLED = "pooled"  # no repeats at this budget: pooled over the budgets that have them
KNOWN = "known"  # a number given by the caller, taken as exact (no degrees of freedom)
NONE = "none"  # no repeats anywhere: no interval


def pooled_variance(groups: list[ArrayLike]) -> tuple[float, int]:
    """Pooled variance of repeated runs and its degrees of freedom: ``groups`` holds, per configuration run with
    several seeds, the losses of its seeds. ``(sum (n_g - 1) s_g^2 / sum (n_g - 1), sum (n_g - 1))``; ``(NaN, 0)``
    without repeats. Non-finite values are ignored."""
    num, dof = 0.0, 0
    for g in groups:
        values = np.asarray(g, dtype=float)
        values = values[np.isfinite(values)]
        if len(values) >= 2:
            num += float(np.var(values, ddof=1)) * (len(values) - 1)
            dof += len(values) - 1
    return (num / dof, dof) if dof else (float("nan"), 0)


def seed_noise(groups: list[ArrayLike]) -> float:
    """Pooled standard deviation of the losses of repeated runs (see :func:`pooled_variance`); NaN without repeats."""
    var, _ = pooled_variance(groups)
    return float(np.sqrt(var))


@dataclass(frozen=True)
class BudgetNoise:
    """The noise used at one budget: standard deviation ``sd`` of one run's loss, its degrees of freedom ``dof``
    (``inf`` when known exactly, 0 when there is none), and ``source``: ``measured`` (this budget's repeats),
    ``pooled`` (no repeats here: the pool of the budgets that have them), ``known`` or ``none``."""

    C: float
    sd: float
    dof: float
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {"C": self.C, "sd": self.sd, "dof": self.dof, "source": self.source}


@dataclass(frozen=True, eq=False)
class NoiseModel:
    """Seed noise per budget: ``budgets`` (those with repeats, increasing), their ``sd`` and ``dof``, and the pool of
    all of them (``pooled_sd``, ``pooled_dof``) used at every other budget.

    ``per_budget=False`` uses the pool at every budget (the single number of earlier versions). ``origin`` says
    whose repeats these are when they are borrowed (another series, another study); empty for the series' own.
    """

    budgets: tuple[float, ...] = ()
    sd: tuple[float, ...] = ()
    dof: tuple[int, ...] = ()
    pooled_sd: float = float("nan")
    pooled_dof: float = 0
    per_budget: bool = True
    origin: str = ""
    rel_tol: float = 0.01

    @classmethod
    def known(cls, sd: float) -> NoiseModel:
        """A noise given as one exact number at every budget (0 or NaN: none)."""
        ok = bool(np.isfinite(sd) and sd > 0)
        return cls(pooled_sd=float(sd) if ok else float("nan"), pooled_dof=float("inf") if ok else 0,
                   per_budget=False)

    def _index(self, C: float) -> int | None:
        """Index of the measured budget ``C`` falls on (within ``rel_tol``), None when it has no repeats."""
        if not self.per_budget:
            return None
        for i, b in enumerate(self.budgets):
            if abs(C / b - 1) <= self.rel_tol:
                return i
        return None

    def at(self, C: float) -> BudgetNoise:
        """The noise used at budget ``C``."""
        i = self._index(C)
        if i is not None:
            return BudgetNoise(float(C), self.sd[i], float(self.dof[i]), MEASURED)
        if not (np.isfinite(self.pooled_sd) and self.pooled_sd > 0):
            return BudgetNoise(float(C), float("nan"), 0.0, NONE)
        source = KNOWN if np.isinf(self.pooled_dof) else POOLED
        return BudgetNoise(float(C), self.pooled_sd, float(self.pooled_dof), source)

    def draw_sd(self, C_budgets: ArrayLike, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` draws of the noise at each of ``C_budgets`` (shape ``[k]``): shape ``[n, k]``.

        Each estimate is drawn from its posterior ``sd * sqrt(dof / chi2(dof))``: the noise is itself measured from
        a few repeats, and a bootstrap that took it as exact would give intervals too narrow (a 95% interval from 2
        degrees of freedom would cover about 81%). Budgets that use one estimate (the pool) share its draw, so the
        draws keep their correlation when the envelope curve is fitted through all budgets at once. Known noise is
        the same in every draw; budgets without noise get 0.
        """
        C = np.atleast_1d(np.asarray(C_budgets, dtype=float))
        cache: dict[object, np.ndarray] = {}
        out = np.zeros((n, len(C)))
        for j, c in enumerate(C):
            key = self._index(float(c))
            if key not in cache:
                noise = self.at(float(c))
                if noise.source == NONE:
                    cache[key] = np.zeros(n)
                elif np.isinf(noise.dof):
                    cache[key] = np.full(n, noise.sd)
                else:
                    cache[key] = noise.sd * np.sqrt(noise.dof / rng.chisquare(noise.dof, size=n))
            out[:, j] = cache[key]
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers for ``fits.json``."""
        return {"per_budget": self.per_budget, "origin": self.origin,
                "measured": [{"C": c, "sd": s, "dof": d} for c, s, d in zip(self.budgets, self.sd, self.dof)],
                "pooled": {"sd": self.pooled_sd, "dof": self.pooled_dof}}


def repeat_groups(C: ArrayLike, size: ArrayLike, L: ArrayLike, *, rel_tol: float = 0.01
                  ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Runs that repeat one configuration with other seeds: those whose budget ``C`` and ``size`` agree within
    ``rel_tol`` (each ``[n]``; ``L`` the losses). Returns each group's budget (shape ``[g]``) and its losses; only
    groups of 2 or more runs. Rows with NaN are left out."""
    cols, _, _ = clean_columns("repeat_groups", {"C": C, "size": size, "L": L}, positive=("C", "size"),
                               min_points=0)
    C_, size_, L_ = cols["C"], cols["size"], cols["L"]
    if not len(C_):
        return np.empty(0), []
    labels, budgets = group_budgets(C_, rel_tol)
    out_C, out_L = [], []
    for g, c in enumerate(budgets):
        idx = np.flatnonzero(labels == g)
        size_labels, _ = group_budgets(size_[idx], rel_tol)  # the same grouping, of sizes within one budget
        for s in np.unique(size_labels):
            members = idx[size_labels == s]
            if len(members) >= 2:
                out_C.append(float(c))
                out_L.append(L_[members])
    return np.array(out_C), out_L


def noise_model(group_C: ArrayLike, groups: list[ArrayLike], *, per_budget: bool = True, origin: str = "",
                rel_tol: float = 0.01) -> NoiseModel:
    """The :class:`NoiseModel` of repeat groups (from :func:`repeat_groups`): ``group_C`` (shape ``[g]``) the budget of
    each group, ``groups`` their losses. Groups of one budget are pooled into that budget's noise; all groups into the
    fallback. ``per_budget=False``: the pool everywhere."""
    group_C = np.asarray(group_C, dtype=float)
    if len(group_C) != len(groups):
        raise ValueError(f"noise_model: {len(group_C)} budgets for {len(groups)} groups")
    var, dof = pooled_variance(groups)
    budgets, sds, dofs = [], [], []
    if len(group_C):
        labels, centres = group_budgets(group_C, rel_tol)
        for g, c in enumerate(centres):
            v, d = pooled_variance([groups[i] for i in np.flatnonzero(labels == g)])
            if d:
                budgets.append(float(c))
                sds.append(float(np.sqrt(v)))
                dofs.append(int(d))
    return NoiseModel(budgets=tuple(budgets), sd=tuple(sds), dof=tuple(dofs), pooled_sd=float(np.sqrt(var)),
                      pooled_dof=effective_dof(np.square(sds), dofs) if dof else 0, per_budget=per_budget,
                      origin=origin, rel_tol=rel_tol)


def effective_dof(variances: ArrayLike, dofs: ArrayLike) -> float:
    """Degrees of freedom of the pool of per-budget variances (Welch-Satterthwaite): ``(sum d_b v_b)^2 /
    sum d_b v_b^2``. Equal variances give ``sum d_b``; when one budget's spread dominates the pool (an AU-Net's at
    6e11, five times the others'), the pool is about as uncertain as that budget's own estimate and its degrees of
    freedom are about that budget's, not the sum: counting them all would make the fallback look better measured
    than it is."""
    v = np.asarray(variances, dtype=float)
    d = np.asarray(dofs, dtype=float)
    num, den = float(np.sum(d * v)) ** 2, float(np.sum(d * v**2))
    return num / den if den > 0 else float(np.sum(d))
