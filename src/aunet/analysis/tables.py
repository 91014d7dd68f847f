"""Reading a sweep's results: ``runs.csv``, per-run ``metrics.csv``, and the fixed colour and label of each family.

``runs.csv`` has one row per run (schema in :data:`RUNS_COLUMNS`); unfinished runs leave cells empty and extra
columns are kept as they are. Every schema column is present in the frame :func:`read_runs` returns (all-NaN when
the file lacks it), so the notebooks can test for values with :func:`has_values` instead of guarding every access.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from aunet.errors import UserError

TEXT_COLUMNS = ("run_id", "sweep", "family", "variant", "status", "error", "unit", "run_dir")
NUMERIC_COLUMNS = (
    "budget_flops", "seed", "params", "non_embedding_params", "flops_per_unit", "flops_per_byte", "head_share",
    "bytes_planned", "steps", "batch_size", "batch_bytes", "lr", "planned_flops", "flops_spent", "bytes_seen",
    "tokens_seen", "bytes_per_token", "val_bpb", "val_loss", "wall_time_s", "bytes_per_s", "flops_per_s", "mfu",
)
RUNS_COLUMNS = TEXT_COLUMNS + NUMERIC_COLUMNS
METRICS_COLUMNS = ("step", "train/loss", "train/lr", "train/flops_spent", "train/units_seen", "train/units_per_s",
                   "train/flops_per_s", "val/bpb", "val/loss")
# Evaluation scores are named <task>.<metric>, e.g. hellaswag.acc_norm.
SCORE_PATTERN = re.compile(r"^[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+$")
FAMILIES = ("bpe", "aunet1", "aunet2", "aunet3", "aunet4", "hnet1", "hnet2")

# One colour per family in every plot: BPE near-black, AU-Nets a sequential palette (viridis samples from light
# green to indigo, darker with more stages), learned chunking (hnet1, hnet2: 1 and 2 chunking steps) orange to dark
# red, off the viridis range, readable on white and by colour-blind readers.
_COLORS = {"bpe": "#222222", "aunet1": "#7ad151", "aunet2": "#22a884", "aunet3": "#2a788e", "aunet4": "#414487",
           "hnet1": "#f28e2b", "hnet2": "#b2182b"}
_UNKNOWN_COLOR = "#999999"


class ResultsError(UserError):
    """A results folder or table that cannot be read; the message names the path and the fix."""


def family_colors() -> dict[str, str]:
    """The colour (hex) of each known family: ``bpe``, ``aunet1`` .. ``aunet4``."""
    return dict(_COLORS)


def family_color(family: str) -> str:
    """The colour of ``family``; grey for a family this table does not know."""
    return _COLORS.get(family, _UNKNOWN_COLOR)


FIXED_LABELS = {"bpe": "BPE"}
# Series named <prefix><stages>: AU-Nets by their stage count, learned chunking by its chunking steps.
NUMBERED_LABELS = {"aunet": "AU-Net", "hnet": "Learned"}


def family_label(family: str) -> str:
    """``bpe`` -> ``BPE``, ``aunet2`` -> ``AU-Net-2``, ``hnet1`` -> ``Learned-1`` (learned chunking, 1 chunking
    step); anything else unchanged."""
    if family in FIXED_LABELS:
        return FIXED_LABELS[family]
    match = re.fullmatch(r"([a-z]+)(\d+)", family)
    if not match or match.group(1) not in NUMBERED_LABELS:
        return family
    return f"{NUMBERED_LABELS[match.group(1)]}-{match.group(2)}"


def family_order(families: Iterable[str]) -> list[str]:
    """Distinct families in plotting order: BPE, AU-Net-1..4, then any others alphabetically."""
    unique = set(families)
    known = [f for f in FAMILIES if f in unique]
    return known + sorted(unique - set(FAMILIES))


def series_order(series: Iterable[str]) -> list[str]:
    """Distinct series (``family`` or ``family/variant``) in plotting order: by family, the plain family first."""
    unique = set(series)
    families = family_order(s.partition("/")[0] for s in unique)
    return sorted(unique, key=lambda s: (families.index(s.partition("/")[0]), s.partition("/")[2]))


def read_runs(results_dir: str | Path) -> pd.DataFrame:
    """The runs table of a sweep folder, ``results_dir/runs.csv``, with every schema column present.

    Text columns are strings (empty where the file has no value), numeric columns floats (NaN where empty or
    unparseable), and a ``series`` column names what one curve is drawn for: the family, or ``family/variant`` for
    ablation variants. Raises :class:`ResultsError` when the folder or the file is missing or unreadable.
    """
    folder = Path(results_dir)
    if not folder.is_dir():
        raise ResultsError(f"{folder}: no such results folder; pass a folder results/<sweep> that holds runs.csv")
    path = folder / "runs.csv"
    if not path.is_file():
        raise ResultsError(f"{path}: missing; run the sweep first (it writes runs.csv) or pass another folder")
    try:
        runs = pd.read_csv(path, dtype={c: "string" for c in TEXT_COLUMNS}, keep_default_na=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: not a readable CSV table ({exc}); regenerate it with the sweep runner") from None
    columns = {}
    for name in TEXT_COLUMNS:
        col = runs[name] if name in runs else pd.Series("", index=runs.index)
        columns[name] = col.fillna("").astype(str).str.strip()
    for name in NUMERIC_COLUMNS:
        columns[name] = pd.to_numeric(runs[name], errors="coerce") if name in runs else float("nan")
    runs = runs.assign(**columns)
    for name in score_columns(runs, require_values=False):
        runs[name] = pd.to_numeric(runs[name], errors="coerce")
    series = runs["family"].where(runs["variant"] == "", runs["family"] + "/" + runs["variant"])
    return runs.assign(series=series)


# Columns without which no notebook can draw or fit anything: which curve a run belongs to, its loss, its compute.
REQUIRED_COLUMNS = ("family", "val_bpb")
COMPUTE_COLUMNS = ("flops_spent", "planned_flops", "budget_flops")


def check_columns(results_dir: str | Path) -> None:
    """Raise :class:`ResultsError` when ``runs.csv`` lacks a column every analysis needs (:func:`read_runs` fills
    missing columns with empty values, so the notebooks would run and quietly draw nothing)."""
    path = Path(results_dir) / "runs.csv"
    header = list(pd.read_csv(path, nrows=0).columns)
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if not any(c in header for c in COMPUTE_COLUMNS):
        missing.append(" or ".join(COMPUTE_COLUMNS))
    if missing:
        raise ResultsError(f"{path}: no column {', '.join(missing)}; every analysis needs them: write the table "
                           "with aunet sweep run (or aunet sweep eval)")


def _claimed(runs: pd.DataFrame) -> pd.Series:
    """Rows that claim a result: ``status == "finished"``, or every row when no row has a status."""
    if (runs["status"] == "").all():
        return pd.Series(True, index=runs.index)
    return runs["status"] == "finished"


def invalid_results(runs: pd.DataFrame) -> pd.Series:
    """Why each row that claims a result cannot be one, or "" (indexed like ``runs``): a ``val_bpb`` that is not a
    positive finite number (a NaN of a diverged run, a string, a negative value) or no positive finite compute
    (``flops_spent``, else ``planned_flops``, else ``budget_flops``). A table written by ``aunet sweep run`` never
    has such rows; a hand-edited or older one may, and ten NaN rows changed a fitted exponent from 0.12 to 0.047
    without a note."""
    claimed = _claimed(runs)
    bpb = runs["val_bpb"]
    bad_bpb = claimed & ~(np.isfinite(bpb) & (bpb > 0))
    compute = pd.Series(np.nan, index=runs.index)
    for column in COMPUTE_COLUMNS:
        if column in runs:
            compute = compute.fillna(runs[column].where(runs[column] > 0))
    bad_compute = claimed & ~bad_bpb & ~(np.isfinite(compute) & (compute > 0))
    no_compute = "no positive compute (" + " or ".join(COMPUTE_COLUMNS) + ")"
    return pd.Series([f"val_bpb {value}" if b else no_compute if c else ""
                      for value, b, c in zip(bpb, bad_bpb, bad_compute)], index=runs.index, dtype=object)


def finished(runs: pd.DataFrame) -> pd.DataFrame:
    """The finished runs (``status == "finished"``; all rows when no row has a status) whose numbers can be results
    (:func:`invalid_results`); the others are listed by ``aunet analyze``, never used."""
    return runs[_claimed(runs) & (invalid_results(runs) == "")]


def has_values(runs: pd.DataFrame, *columns: str, min_count: int = 1) -> bool:
    """Whether every column exists and at least ``min_count`` rows have all of them set (finite or non-empty)."""
    if any(c not in runs for c in columns):
        return False
    ok = pd.Series(True, index=runs.index)
    for c in columns:
        col = runs[c]
        ok &= col.notna() if pd.api.types.is_numeric_dtype(col) else col.notna() & (col.astype(str) != "")
    return int(ok.sum()) >= min_count


def first_with_values(runs: pd.DataFrame, *candidates: str) -> str | None:
    """The first of ``candidates`` that has values (e.g. FLOPs spent, else planned FLOPs), or None."""
    return next((c for c in candidates if has_values(runs, c)), None)


def score_columns(runs: pd.DataFrame, require_values: bool = True) -> list[str]:
    """Evaluation score columns ``<task>.<metric>`` (with at least one value unless ``require_values`` is False)."""
    cols = [c for c in runs.columns if SCORE_PATTERN.match(str(c))]
    if require_values:
        cols = [c for c in cols if pd.to_numeric(runs[c], errors="coerce").notna().any()]
    return cols


def headline_scores(runs: pd.DataFrame) -> dict[str, str]:
    """One score column per task: ``acc_norm`` for HellaSwag and ARC (length-normalised, the usual headline),
    ``acc`` for MMLU, and for other tasks ``acc_norm`` if present, else ``acc``, else their first metric."""
    by_task: dict[str, list[str]] = {}
    for col in score_columns(runs):
        task, metric = col.split(".", 1)
        by_task.setdefault(task, []).append(metric)
    chosen = {}
    for task, metrics in by_task.items():
        preference = ["acc", "acc_norm"] if task.startswith("mmlu") else ["acc_norm", "acc"]
        metric = next((m for m in preference if m in metrics), metrics[0])
        chosen[task] = f"{task}.{metric}"
    return chosen


def resolve_run_dir(run_dir: str, results_dir: str | Path) -> Path | None:
    """The folder of one run: ``run_dir`` as given when absolute, else relative to the repository root (taken as
    two levels above ``results/<sweep>``), the current directory, or the results folder; None if none exists."""
    if not run_dir:
        return None
    path = Path(run_dir)
    results = Path(results_dir).resolve()
    candidates = [path] if path.is_absolute() else [results.parent.parent / path, Path.cwd() / path, results / path]
    return next((c for c in candidates if c.is_dir()), None)


def read_metrics(path: str | Path) -> pd.DataFrame:
    """One run's ``metrics.csv`` (a file, or a run folder holding it) with every column numeric (NaN when empty)."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.csv"
    if not path.is_file():
        raise ResultsError(f"{path}: missing; the run has not logged metrics yet")
    metrics = pd.read_csv(path)
    return metrics.apply(pd.to_numeric, errors="coerce")


def load_metrics(runs: pd.DataFrame, results_dir: str | Path) -> pd.DataFrame:
    """The ``metrics.csv`` of every run that has one, stacked, with ``run_id``, ``family`` and ``series`` columns.

    Runs without a run folder or metrics file are skipped; the frame is empty (with those columns) when none has.
    """
    frames = []
    for row in runs.itertuples(index=False):
        folder = resolve_run_dir(row.run_dir, results_dir)
        if folder is None or not (folder / "metrics.csv").is_file():
            continue
        metrics = read_metrics(folder)
        frames.append(metrics.assign(run_id=row.run_id, family=row.family, series=row.series))
    if not frames:
        return pd.DataFrame(columns=[*METRICS_COLUMNS, "run_id", "family", "series"])
    return pd.concat(frames, ignore_index=True)


def learning_curve(metrics: pd.DataFrame, y: str = "val/bpb", x: str = "train/flops_spent") -> pd.DataFrame:
    """The logged values of ``y`` against ``x`` for one run's metrics (columns ``x``, ``y``, sorted by step).

    Validation rows are often logged without the training columns of their step; ``x`` is interpolated over
    ``step`` from the rows that have it (FLOPs and units seen grow linearly with steps). Empty when either column
    is missing or never set.
    """
    if not {x, y, "step"} <= set(metrics.columns) or metrics[x].notna().sum() < 1:
        return pd.DataFrame({x: [], y: []})
    known = metrics.dropna(subset=[x]).sort_values("step")
    rows = metrics.dropna(subset=[y]).sort_values("step")
    xs = np.interp(rows["step"].to_numpy(float), known["step"].to_numpy(float), known[x].to_numpy(float))
    return pd.DataFrame({x: xs, y: rows[y].to_numpy(float)})


def best_per_budget(runs: pd.DataFrame, metric: str, budget: str, by: tuple[str, ...] = ("series", "seed")
                    ) -> pd.DataFrame:
    """For each ``by`` group and budget, the run with the lowest ``metric`` (rows with NaN ``metric`` dropped).

    A tuning sweep has several runs per budget (learning rates, batch sizes); a scaling curve should use the best.
    Runs that differ only in ``seed`` are all kept (``seed`` is in ``by``).
    """
    valid = runs[runs[metric].notna() & runs[budget].notna()]
    keys = [c for c in (*by, budget) if c in valid]
    # dropna=False: a run without a seed is its own group rather than silently dropped.
    best = valid.groupby(keys, sort=True, dropna=False)[metric].idxmin()
    return valid.loc[best.to_numpy()].reset_index(drop=True)
