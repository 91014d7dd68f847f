"""Scaling-curve fitting: pure functions from arrays of logged results to parameters with bootstrap intervals.

=============================================  =====================================================================
:func:`fit_power_law`                          ``L(C) = E + A C^-alpha``, robust (Huber in log space), intervals
:func:`fit_loss_surface`                       ``L(N, D) = E + A/N^alpha + B/D^beta`` and the optimal allocation
:func:`isoflop_analysis`                       parabolas per budget, ``N*(C) = k C^a`` and ``D*(C)``
:func:`compute_equivalent_gain`                compute factor at which one family matches another's loss
:func:`compute_equivalent_gain_interval`       the same with intervals from the fits' bootstrap samples
:func:`fit_hyperparameter_law`                 ``value = k C^a`` over the near-best runs of each budget
=============================================  =====================================================================

Reading results tables lives in :mod:`aunet.analysis.tables`, plotting helpers in :mod:`aunet.analysis.plots`,
``fits.json`` in :mod:`aunet.analysis.store`, running the notebooks in :mod:`aunet.analysis.notebooks`, and the
reference levels (Kneser-Ney byte n-grams, a token unigram) in :mod:`aunet.analysis.ngram` (the math) and
:mod:`aunet.analysis.reference` (which bytes of a sweep); none of them is imported here, so fitting needs neither
pandas nor matplotlib.
"""

from importlib import import_module
from typing import Any

# Loaded on first use (numpy and scipy): `aunet analyze --help` and the CLI's start-up read only the notebook list.
_LAZY = {
    "GainInterval": "gain", "compute_equivalent_gain": "gain", "compute_equivalent_gain_interval": "gain",
    "HyperparameterLawFit": "hyperparameters", "fit_hyperparameter_law": "hyperparameters",
    "FitError": "inputs", "group_budgets": "inputs",
    "IsoFlopBudget": "isoflop", "IsoFlopFit": "isoflop", "isoflop_analysis": "isoflop",
    "PowerLawFit": "power_law", "fit_power_law": "power_law",
    "Allocation": "surface", "LossSurfaceFit": "surface", "fit_loss_surface": "surface",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"aunet.analysis.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'aunet.analysis' has no attribute {name!r}")


__all__ = sorted(_LAZY)
