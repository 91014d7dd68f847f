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

from aunet.analysis.gain import GainInterval, compute_equivalent_gain, compute_equivalent_gain_interval
from aunet.analysis.hyperparameters import HyperparameterLawFit, fit_hyperparameter_law
from aunet.analysis.inputs import FitError, group_budgets
from aunet.analysis.isoflop import IsoFlopBudget, IsoFlopFit, isoflop_analysis
from aunet.analysis.power_law import PowerLawFit, fit_power_law
from aunet.analysis.surface import Allocation, LossSurfaceFit, fit_loss_surface

__all__ = [
    "Allocation",
    "FitError",
    "GainInterval",
    "HyperparameterLawFit",
    "IsoFlopBudget",
    "IsoFlopFit",
    "LossSurfaceFit",
    "PowerLawFit",
    "compute_equivalent_gain",
    "compute_equivalent_gain_interval",
    "fit_hyperparameter_law",
    "fit_loss_surface",
    "fit_power_law",
    "group_budgets",
    "isoflop_analysis",
]
