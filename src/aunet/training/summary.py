"""``summary.json``: the record of a finished run, as one dataclass with one writer and one reader.

:func:`train` builds a :class:`RunSummary` and writes it with :func:`write_summary`, which refuses a record that
lacks what a finished run must have. Everything else (sweep tables, the sweep queue, evaluation's weight check,
the CLI) reads it with :func:`read_summary` or :func:`load_summary`. Reading is lenient so that every record
ever written still loads: a field an older writer did not know (``stages``) takes its default, and a key this
version does not know is kept in ``extra`` and written back unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from aunet.errors import StateError
from aunet.io import atomic_write_json, read_json

OMITTED_WHEN_EMPTY = ("cost",)  # fields only some runs have (learned-cost families)
# What a finished run's record must hold (the writer checks them; readers may meet older records without some).
REQUIRED = (
    "run_id", "family", "val_bpb", "val_loss", "params", "flops_per_unit", "steps", "flops_spent", "bytes_seen",
    "tokens_seen", "bytes_per_token", "wall_time_s", "throughput", "git_commit", "seed", "versions",
    "data_fingerprint", "weights_sha256",
)


@dataclass
class RunSummary:
    """The numbers and provenance of one finished run (``<run_dir>/summary.json``).

    Attributes:
        run_id, name, family, status: the run's folder name, config name, model family and ``finished``.
        val_bpb, val_loss: final validation bits per byte and mean next-unit loss (nats).
        params, non_embedding_params, flops_per_unit, unit, head_share: the model by the one FLOPs formula.
        budget_flops, steps, flops_per_step, flops_spent: the budget (None for a fixed step count) and its spending.
        bytes_seen, tokens_seen, bytes_per_token, val_text_bytes: text read (tokens_seen: units, bytes or tokens).
        wall_time_s, throughput: wall clock of the last segment and ``bytes_per_s``, ``units_per_s``,
            ``flops_per_s``, ``mfu``, ``train_time_s``, ``devices``.
        git_commit, git_dirty, host, versions: provenance.
        seed, config_fingerprint, data_fingerprint, data, weights_sha256: what the run is (config, data, weights).
        stages: per stage of a multi-stage model, realized boundaries (chunks), truncated and padding shares, units
            per parameter; for learned chunking also bytes per chunk and the share of chunk starts at word starts.
        cost: for a family whose cost is learned, how the FLOPs charged compare with the plan: ``planned_steps``
            (the schedule's length), ``flops_planned`` (the steps taken at the planned FLOPs per step),
            ``flops_drift`` (``flops_spent / flops_planned - 1``) and ``stopped_by`` (``budget`` or ``steps``).
            Empty (and not written) for the families the formula charges exactly.
        extra: keys of the file this version does not know, kept as they were.
    """

    run_id: str = ""
    name: str = ""
    family: str = ""
    status: str = "finished"
    val_bpb: Union[float, None] = None
    val_loss: Union[float, None] = None
    params: Union[int, None] = None
    non_embedding_params: Union[int, None] = None
    flops_per_unit: Union[float, None] = None
    unit: str = ""
    head_share: Union[float, None] = None
    budget_flops: Union[float, None] = None
    steps: Union[int, None] = None
    flops_per_step: Union[float, None] = None
    flops_spent: Union[float, None] = None
    bytes_seen: Union[float, None] = None
    tokens_seen: Union[int, None] = None
    bytes_per_token: Union[float, None] = None
    val_text_bytes: Union[int, None] = None
    wall_time_s: Union[float, None] = None
    throughput: dict[str, Any] = field(default_factory=dict)
    git_commit: Union[str, None] = None
    git_dirty: Union[bool, None] = None
    seed: Union[int, None] = None
    versions: dict[str, str] = field(default_factory=dict)
    data_fingerprint: Union[str, None] = None
    data: dict[str, Any] = field(default_factory=dict)
    weights_sha256: Union[str, None] = None
    stages: list[dict[str, float]] = field(default_factory=list)
    config_fingerprint: Union[str, None] = None
    host: Union[str, None] = None
    cost: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> RunSummary:
        """The summary of a decoded ``summary.json`` object (any version of it)."""
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in record.items() if k in known},
                   extra={k: v for k, v in record.items() if k not in known})

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``summary.json`` (field order as written since the first version; ``extra`` last; an
        empty ``cost`` is left out, so the records of fixed-cost runs are what they always were)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name != "extra" and not (f.name in OMITTED_WHEN_EMPTY and not getattr(self, f.name))}
        return {**out, **self.extra}

    @property
    def bpb(self) -> float:
        """``val_bpb`` as a number (NaN when the record has none)."""
        return float("nan") if self.val_bpb is None else float(self.val_bpb)

    def missing(self) -> list[str]:
        """Fields a finished run must have that this record lacks."""
        return [k for k in REQUIRED if getattr(self, k) in (None, "", {})]


def write_summary(path: Path, summary: RunSummary) -> Path:
    """Write ``summary`` to ``path`` atomically; a ValueError names the fields a finished run must have but lacks."""
    missing = summary.missing()
    if missing:
        raise ValueError(f"summary lacks {missing}")
    return atomic_write_json(path, summary.to_dict())


def read_summary(path: Path, hint: str = "delete it to finish the run again from its last checkpoint "
                                         "(--resume)") -> RunSummary:
    """The summary at ``path``; a StateError naming the file (and ``hint``) when it is truncated or garbled."""
    record = read_json(path, hint)
    if not isinstance(record, dict):
        raise StateError(f"{path}: not a run summary (a JSON object); {hint}")
    return RunSummary.from_dict(record)


def load_summary(path: Path) -> RunSummary | None:
    """The summary at ``path``, or None when it is missing or unreadable (a table row or a queue check must not
    stop on a damaged record; they report it instead)."""
    try:
        return read_summary(path)
    except (OSError, StateError):
        return None
