"""Input checks shared by the fits: equal lengths, dropping non-finite rows, positivity, grouping budgets.

Every fit takes plain arrays. Rows with NaN or inf in any column are dropped and counted (an unfinished or
diverged run leaves empty cells in ``runs.csv``); everything else that makes a fit meaningless raises
:class:`FitError` with one line naming the problem and the fix.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from numpy.typing import ArrayLike

from aunet.errors import UserError


class FitError(UserError, ValueError):
    """A fit that cannot be made from the given points (too few, non-positive, one budget where several are needed)."""


def clean_columns(fit: str, columns: dict[str, ArrayLike], *, positive: Sequence[str] = (), min_points: int,
                  hint: str = "add runs") -> tuple[dict[str, np.ndarray], np.ndarray, int]:
    """Check and clean the columns of one fit.

    ``columns`` maps a name (used in messages) to a 1-D array; all must have the same length ``n``. Returns the
    columns restricted to the rows where every column is finite (each of shape ``[m]``), the boolean mask of those
    rows (shape ``[n]``) and the number of dropped rows ``n - m``. Raises :class:`FitError` when lengths differ,
    when a column in ``positive`` has a finite value <= 0 (logs of it are taken), or when fewer than ``min_points``
    rows remain.
    """
    arrays: dict[str, np.ndarray] = {}
    for name, values in columns.items():
        try:
            array = np.asarray(values, dtype=float)
        except (TypeError, ValueError):
            raise FitError(f"{fit}: {name} is not numeric; pass numbers (convert the column with pd.to_numeric)"
                           ) from None
        if array.ndim != 1:
            raise FitError(f"{fit}: {name} must be one-dimensional, got shape {array.shape}")
        arrays[name] = array
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        described = ", ".join(f"{k}={v}" for k, v in lengths.items())
        raise FitError(f"{fit}: columns have different lengths ({described}); pass one value per run in each")
    n = next(iter(lengths.values()))
    keep = np.ones(n, dtype=bool)
    for array in arrays.values():
        keep &= np.isfinite(array)
    for name in positive:
        bad = int(np.sum(arrays[name][keep] <= 0))
        if bad:
            raise FitError(f"{fit}: {name} has {bad} non-positive value(s); logs need {name} > 0, "
                           "drop or fix those rows")
    dropped = int(n - keep.sum())
    if keep.sum() < min_points:
        note = f" ({dropped} row(s) with NaN/inf dropped)" if dropped else ""
        raise FitError(f"{fit}: needs at least {min_points} points with finite values, got {int(keep.sum())}"
                       f"{note}; {hint}")
    return {name: a[keep] for name, a in arrays.items()}, keep, dropped


def group_budgets(C: np.ndarray, rel_tol: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Group compute values that agree within ``rel_tol`` (relative to the smallest value of the group).

    Runs of one budget spend slightly different FLOPs (whole steps), so equality would split them. ``C`` has
    shape ``[n]`` (positive); returns ``labels`` of shape ``[n]`` (0 for the smallest budget, increasing with
    compute) and the budget of each group, the median of its members, shape ``[n_groups]``.
    """
    C = np.asarray(C, dtype=float)
    order = np.argsort(C, kind="stable")
    labels = np.empty(len(C), dtype=int)
    group, first = -1, -np.inf
    for i in order:
        if C[i] > first * (1 + rel_tol):
            group, first = group + 1, C[i]
        labels[i] = group
    budgets = np.array([np.median(C[labels == g]) for g in range(group + 1)])
    return labels, budgets
