"""The results table of a sweep: ``results/<sweep>/runs.csv``, one row per planned run.

The table is rebuilt from the saved plan (``plan.json``) and the run folders (their summary, failure and
evaluation scores, :class:`~aunet.training.records.RunPaths`), never appended to, so it is complete and parseable
at every moment (atomic replace) and a sweep run twice still has exactly one row per run.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from aunet.data.config import LEGACY_STREAM
from aunet.errors import ConfigError, StateError
from aunet.io import atomic_write_json, atomic_write_text
from aunet.training.config import run_config_from_record
from aunet.training.records import RunPaths
from aunet.training.summary import RunSummary, read_summary

PLAN_FILE = "plan.json"
# Columns that come from a finished run's summary (the rest come from the plan, the throughput and evaluations).
SUMMARY_COLUMNS = ("params", "non_embedding_params", "flops_spent", "bytes_seen", "tokens_seen", "bytes_per_token",
                   "val_bpb", "val_loss", "wall_time_s")
TABLE_FILE = "runs.csv"

COLUMNS = [
    "run_id", "sweep", "family", "variant", "budget_flops", "seed", "multiplier", "status", "error",
    "params", "non_embedding_params", "flops_per_unit", "unit", "flops_per_byte", "target_flops_per_byte",
    "head_share", "bytes_planned", "epochs", "steps", "batch_size", "batch_bytes", "lr", "hparams_source",
    "planned_flops", "est_time_s", "flops_spent", "bytes_seen", "tokens_seen", "bytes_per_token", "val_bpb",
    "val_loss", "wall_time_s", "train_time_s", "bytes_per_s", "flops_per_s", "mfu", "dims", "layers", "stream",
    "run_dir",
]


# Statuses of failure.json (aunet.training.records.write_failure); an older record without one is "failed".
FAILURE_STATUSES = ("failed", "diverged")


def run_status(run_dir: Path, fingerprint: str | None = None) -> tuple[str, str]:
    """``finished``, ``failed`` or ``diverged`` (with the error), ``partial`` (a checkpoint, no summary) or
    ``planned``.

    A summary counts as finished only when it is a usable record (:func:`~aunet.training.summary.read_summary`
    checks its fields and numbers) of this run: its ``config_fingerprint`` must be ``fingerprint`` (the planned
    run's) when given. Otherwise the row is failed with the reason, never a result: a folder copied over another
    run's put that run's parameters, bits per byte and FLOPs into the table."""
    paths = RunPaths(run_dir)
    if paths.summary.exists():
        try:
            _finished_summary(paths, fingerprint)
        except StateError as exc:
            return "failed", str(exc)
        return "finished", ""
    if paths.failure.is_file():
        record = _read_json(paths.failure)
        status = record.get("status") if record.get("status") in FAILURE_STATUSES else "failed"
        return status, str(record.get("error", "")) if record else f"{paths.failure}: unreadable"
    if paths.last_checkpoint.is_file():
        return "partial", ""
    return "planned", ""


def _finished_summary(paths: RunPaths, fingerprint: str | None) -> RunSummary:
    """The run's summary, read and checked, and shown to be the planned run's (a StateError says why not)."""
    summary = read_summary(paths.summary, "delete it to finish the run again from its checkpoint")
    if fingerprint is not None and summary.config_fingerprint != fingerprint:
        recorded = summary.config_fingerprint[:10] if summary.config_fingerprint else "none"
        raise StateError(f"{paths.summary}: the record of another run (config {recorded}, this run "
                         f"{fingerprint[:10]}): the folder was copied or replaced; delete the run folder to train "
                         "this run again")
    return summary


def planned_fingerprint(planned: dict[str, Any]) -> str | None:
    """The config fingerprint of a planned run (its row in ``plan.json``), or None when its config cannot be built
    (a plan of an older version): then its record is checked for itself only."""
    try:
        return run_config_from_record(planned["run_config"]).fingerprint()  # an older plan: the streamed data
    except (ConfigError, KeyError, TypeError):
        return None


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object, or {} for a missing, truncated or garbled file (a table row must not stop a sweep)."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def row_for(planned: dict[str, Any], runs_dir: Path) -> dict[str, Any]:
    """One table row: the plan's fields, the run's summary when finished, and any evaluation scores."""
    run_dir = runs_dir / planned["run_id"]
    paths = RunPaths(run_dir)
    fingerprint = planned_fingerprint(planned)
    status, error = run_status(run_dir, fingerprint)
    model = planned["run_config"]["model"]
    row = {k: planned.get(k) for k in COLUMNS if k in planned}
    row.update(status=status, error=error, run_dir=str(run_dir), bytes_planned=planned.get("bytes"),
               dims=json.dumps(model.get("dims", [model.get("dim")])),
               layers=json.dumps(model["layers"] if isinstance(model.get("layers"), list) else [model.get("layers")]),
               # which training stream: a plan from before data.stream existed planned the streamed one
               stream=planned["run_config"].get("data", {}).get("stream", LEGACY_STREAM))
    summary = _finished_summary(paths, fingerprint) if status == "finished" else None
    if summary is not None:
        recorded = summary.to_dict()
        row.update({key: recorded[key] for key in SUMMARY_COLUMNS if recorded.get(key) is not None})
        for stage in summary.stages:  # per-stage records of multi-stage runs (realized, from the log)
            row.update({f"{key}_{stage['stage']}": value for key, value in stage.items() if key != "stage"})
        row.update(summary.cost)  # a learned cost against its plan (flops_drift, ...)
        throughput = summary.throughput
        row.update(bytes_per_s=throughput.get("bytes_per_s"), flops_per_s=throughput.get("flops_per_s"),
                   mfu=throughput.get("mfu"), train_time_s=throughput.get("train_time_s"))
    scores = _read_json(paths.scores)
    row.update({k: v for k, v in sorted(scores.items()) if isinstance(v, (int, float))})
    return row


def write_table(sweep_dir: Path, rows: list[dict[str, Any]]) -> Path:
    """Write ``runs.csv`` atomically: the fixed columns, then every score column any row has, sorted."""
    extra = sorted({k for row in rows for k in row} - set(COLUMNS))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS + extra, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return atomic_write_text(sweep_dir / TABLE_FILE, buffer.getvalue())


def save_plan(sweep_dir: Path, runs_dir: Path, spec: dict[str, Any], rows: list[dict[str, Any]]) -> Path:
    return atomic_write_json(sweep_dir / PLAN_FILE, {"spec": spec, "runs_dir": str(runs_dir), "runs": rows})


def refresh_table(sweep_dir: Path) -> Path | None:
    """Rebuild ``runs.csv`` of a sweep folder from its ``plan.json`` and the run folders."""
    plan = _read_json(Path(sweep_dir) / PLAN_FILE)
    if not plan:
        return None
    runs_dir = Path(plan["runs_dir"])
    return write_table(Path(sweep_dir), [row_for(r, runs_dir) for r in plan["runs"]])


def refresh_tables_for_run(run_dir: Path) -> list[Path]:
    """Rebuild every sweep table that lists the run of ``run_dir`` (its results root is two levels up)."""
    run_dir = Path(run_dir).resolve()
    root = run_dir.parent.parent
    updated = []
    for plan_file in sorted(root.glob(f"*/{PLAN_FILE}")):
        plan = _read_json(plan_file)
        if any(r.get("run_id") == run_dir.name for r in plan.get("runs", [])):
            table = refresh_table(plan_file.parent)
            if table is not None:
                updated.append(table)
    return updated
