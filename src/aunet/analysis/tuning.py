"""Learning-rate and batch laws from a tuning sweep's table (``aunet sweep tune``): the finished trials of each
family, fitted by :func:`aunet.analysis.hyperparameters.fit_tuning_laws`, and with ``near_best`` also pooled per
model kind (``aunet``, ``bpe``: the paper fits one law per architecture)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from aunet.analysis.hyperparameters import fit_tuning_laws
from aunet.models import FAMILY_CLASSES
from aunet.sweeps.spec import TuneSpec

COLUMNS = ("budget_flops", "lr", "batch_bytes", "val_bpb")
POOLED = tuple(FAMILY_CLASSES)  # label prefixes pooled under ``near_best`` (each model family)


def tuning_laws(table: Path, tune: TuneSpec) -> dict[str, Any]:
    """``{family: {"lr": law, "batch_bytes": law}, ..., "errors": {family: reason}}`` from the tuning table."""
    runs = pd.read_csv(table)
    done = runs[runs["status"] == "finished"]
    by_family = {str(f): {c: g[c].to_numpy(float) for c in COLUMNS} for f, g in done.groupby("family")}
    options = dict(method=tune.fit, tolerance=tune.tolerance, fixed_batch=tune.fixed_batch)
    laws = fit_tuning_laws(by_family, **options)
    laws.setdefault("errors", {})
    if tune.fit == "near_best":
        pooled = {g: {c: done[done["family"].str.startswith(g)][c].to_numpy(float) for c in COLUMNS}
                  for g in POOLED if done["family"].str.startswith(g).any()}
        pooled_laws = fit_tuning_laws(pooled, **options)
        laws["errors"].update(pooled_laws.pop("errors", {}) or {})
        laws.update(pooled_laws)
    return laws
