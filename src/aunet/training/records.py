"""Run records: the folder layout of a run and what goes into it.

``<run_dir>/``
    ``config.yaml``      the fully resolved run config
    ``metrics.csv``      every logged step, whole across resumes (rebuilt from ``logs/version_*/metrics.csv``)
    ``summary.json``     final numbers and provenance (:class:`aunet.training.summary.RunSummary`)
    ``failure.json``     why the run stopped with an error: ``failed``, or ``diverged`` for a NaN (written by
                         ``train()``; a sweep goes on, ``--retry-failed`` runs it again; removed once it finishes)
    ``checkpoints/``     ``last.ckpt`` (latest, for resuming) and ``final.ckpt``
    ``logs/``            raw Lightning CSV logs, one version per segment, ``segments.json`` and
                         ``checkpoint.json`` (the step of the last checkpoint saved, so a lost one is noticed);
                         with ``trainer.loggers``, ``tensorboard/version_*/`` (event files, numbered like the CSV
                         versions) and ``wandb/`` (offline W&B runs, for ``wandb sync``)
    ``tokenizer/``       the BPE tokenizer of a BPE run
    ``eval/``            ``scores.json`` and the evaluations' own files (:mod:`aunet.evaluation.evaluate`)
    ``.train.lock``      held (flock) by the process training into the folder
    ``.lock``            held by the sweep worker that trains the run (:class:`aunet.sweeps.runner.RunLock`)

:class:`RunPaths` is the only place that knows these names.
"""

from __future__ import annotations

import csv
import hashlib
import io
import platform
import socket
import subprocess
import time
import traceback
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from aunet.errors import DivergedError, StateError
from aunet.io import atomic_write_json, atomic_write_text, read_json
from aunet.models import family_of


def _under(*parts: str) -> property:
    """A path of the run folder: ``root / parts``."""
    return property(lambda self: self.root.joinpath(*parts))


@dataclass(frozen=True)
class RunPaths:
    """The files of the run folder ``root`` (see the module docstring)."""

    root: Path

    config = _under("config.yaml")
    metrics = _under("metrics.csv")
    summary = _under("summary.json")
    failure = _under("failure.json")
    tokenizer = _under("tokenizer")
    eval_dir = _under("eval")
    scores = _under("eval", "scores.json")
    sweep_lock = _under(".lock")
    lock = _under(".train.lock")
    checkpoints = _under("checkpoints")
    last_checkpoint = _under("checkpoints", "last.ckpt")
    final_checkpoint = _under("checkpoints", "final.ckpt")
    logs = _under("logs")
    segments = _under("logs", "segments.json")
    checkpoint_record = _under("logs", "checkpoint.json")
    tensorboard = _under("logs", "tensorboard")
    wandb = _under("logs", "wandb")

    @property
    def model_checkpoints(self) -> tuple[Path, Path]:
        """The checkpoints to evaluate, preferred first: the final one, else the latest of an unfinished run."""
        return self.final_checkpoint, self.last_checkpoint


def git_commit(path: Path | None = None) -> dict[str, Any]:
    """Commit of the git checkout holding this package (or ``path``), and whether tracked files were modified."""
    where = path or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return {"commit": "unknown", "dirty": None}
        status = subprocess.run(["git", "status", "--porcelain", "-uno"], cwd=where, capture_output=True, text=True,
                                timeout=10)
        return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("aunet", "torch", "lightning", "torchmetrics", "numpy", "tokenizers", "regex", "lm_eval", "optuna"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    out["cuda"] = torch.version.cuda or "none"
    return out


def weights_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 over parameter names, dtypes, shapes and bytes, in name order (independent of device)."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def checkpoint_weights_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """:func:`weights_sha256` of the network in a LightningModule checkpoint's ``state_dict`` (keys ``model.*``; a
    compiled module adds ``_orig_mod.``): the value ``summary.json`` records for the run's final weights."""
    return weights_sha256({key[len("model."):].replace("_orig_mod.", ""): value
                           for key, value in state_dict.items() if key.startswith("model.")})


def failure_status(exc: BaseException) -> str:
    """``diverged`` for a run stopped by a NaN or infinity (:class:`~aunet.errors.DivergedError`), else ``failed``."""
    return "diverged" if isinstance(exc, DivergedError) else "failed"


def write_failure(paths: RunPaths, exc: BaseException) -> None:
    """Record in ``failure.json`` why the run stopped with an error: its status (:func:`failure_status`), the
    error's one line, the traceback, when and where. A sweep table shows the run as failed or diverged, never
    finished; ``aunet sweep run --retry-failed`` (or ``aunet train --resume``) runs it again."""
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    atomic_write_json(paths.failure, {"status": failure_status(exc),
                                      "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:500],
                                      "traceback": "".join(lines)[-4000:], "time": time.time(),
                                      "host": socket.gethostname()})


def read_segments(paths: RunPaths) -> list[dict[str, Any]]:
    if not paths.segments.is_file():
        return []
    segments = read_json(paths.segments, "delete the run folder to start the run again")
    if not isinstance(segments, list) or not all(isinstance(s, dict) and {"version", "start_step"} <= s.keys()
                                                 for s in segments):
        raise StateError(f"{paths.segments}: not a list of logger segments; delete the run folder to start the run "
                         "again")
    return segments


def add_segment(paths: RunPaths, version: int, start_step: int) -> None:
    """Remember that logger version ``version`` started at optimizer step ``start_step`` (a resume point)."""
    segments = [s for s in read_segments(paths) if s["version"] != version]
    segments.append({"version": version, "start_step": start_step})
    atomic_write_json(paths.segments, sorted(segments, key=lambda s: s["version"]))


def record_checkpoint(paths: RunPaths, step: int) -> None:
    """Remember that ``checkpoints/last.ckpt`` now holds step ``step`` (written after the checkpoint itself, so the
    record never claims a checkpoint that is not there yet). A resume that finds the record but not the file
    refuses instead of training again from step 0."""
    atomic_write_json(paths.checkpoint_record,
                      {"step": int(step), "file": paths.last_checkpoint.relative_to(paths.root).as_posix()})


def recorded_checkpoint_step(paths: RunPaths) -> int | None:
    """The step of the last checkpoint this run saved, or None when it saved none (or predates the record: then a
    segment that started after step 0 shows that a checkpoint existed)."""
    if paths.checkpoint_record.is_file():
        record = read_json(paths.checkpoint_record, "delete it if checkpoints/last.ckpt is the run's latest checkpoint")
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            raise StateError(f"{paths.checkpoint_record}: not a checkpoint record; delete it if "
                             "checkpoints/last.ckpt is the run's latest checkpoint")
        return record["step"]
    starts = [s["start_step"] for s in read_segments(paths) if isinstance(s.get("start_step"), int)]
    return max(starts) if starts and max(starts) > 0 else None


def merge_metrics(paths: RunPaths) -> Path | None:
    """Rebuild ``metrics.csv`` from the logger versions: rows of a segment that a later segment re-did after a
    resume (its steps at or beyond the later segment's start) are dropped, so each step appears once."""
    segments = sorted(read_segments(paths), key=lambda s: s["version"])
    rows: list[dict[str, str]] = []
    columns: list[str] = []
    for i, seg in enumerate(segments):
        file = paths.logs / f"version_{seg['version']}" / "metrics.csv"
        if not file.is_file():
            continue
        limit = segments[i + 1]["start_step"] if i + 1 < len(segments) else None
        try:
            with file.open(newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                for name in reader.fieldnames or []:
                    if name not in columns:
                        columns.append(name)
                for row in reader:
                    if None in row.values() or None in row:
                        # A short or long row: the last line of a segment killed while Lightning appended to its
                        # log (a missing field could be the step itself, which would let the row through the limit).
                        continue
                    if limit is not None and row.get("step") not in (None, "") and int(float(row["step"])) >= limit:
                        continue
                    rows.append(row)
        except (csv.Error, UnicodeDecodeError, ValueError) as exc:
            raise StateError(f"{file}: garbled training log ({type(exc).__name__}: {str(exc)[:80]}); delete the run "
                             "folder to start the run again") from None
    if not columns:
        return None
    if "step" in columns:  # step first, then the rest in order of appearance
        columns = ["step"] + [c for c in columns if c != "step"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(paths.metrics, buffer.getvalue())


def stage_records(metrics_file: Path, config: Any, units_seen: float) -> list[dict[str, float]]:
    """Per stage of a multi-stage run, from its training log: what its family records
    (:meth:`aunet.models.family.Family.stage_records`; AU-Net: realized boundaries against the caps, truncation,
    padding, units per parameter; learned chunking adds chunks, bytes per chunk and word-start shares).

    ``metrics_file``: the run's merged ``metrics.csv`` (the family's ``train/...`` columns are logged every logged
    step); ``units_seen``: units the run read. Empty for BPE and one-stage models.
    """
    if not metrics_file.is_file():
        return []
    with metrics_file.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))

    def mean(column: str, tail: float = 1.0) -> float:
        values = [float(r[column]) for r in rows if r.get(column) not in (None, "")]
        values = values[len(values) - max(1, round(tail * len(values))):] if values else values
        return sum(values) / len(values) if values else float("nan")

    return family_of(config).stage_records(mean, units_seen)
