"""``summary.json``: the record of a finished run, as one dataclass with one writer and one reader.

:func:`train` builds a :class:`RunSummary` and writes it with :func:`write_summary`, which refuses a record that
lacks what a finished run must have. Everything else (sweep tables, the sweep queue, evaluation's weight check,
the CLI) reads it with :func:`read_summary` or :func:`load_summary`. Reading is lenient about the fields a record
may lack, so that every record ever written still loads: a field an older writer did not know (``stages``) takes
its default, and a key this version does not know is kept in ``extra`` and written back unchanged. It is strict
about the values: a record without the numbers every finished run has (:data:`READ_REQUIRED`), or with a number
that is not finite or out of its range (:data:`RANGES`: a NaN, a string or a negative ``val_bpb``), is refused
naming the file. A hand-edited or foreign ``summary.json`` was otherwise tabled as a finished run.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from aunet.errors import StateError, excerpt
from aunet.io import atomic_write_json, read_json

OMITTED_WHEN_EMPTY = ("cost",)  # fields only some runs have (learned-cost families)
# What a finished run's record must hold (the writer checks them; readers may meet older records without some).
REQUIRED = (
    "run_id", "family", "val_bpb", "val_loss", "params", "flops_per_unit", "steps", "flops_spent", "bytes_seen",
    "tokens_seen", "bytes_per_token", "wall_time_s", "throughput", "git_commit", "seed", "versions",
    "data_fingerprint", "weights_sha256",
)
# What every record ever written holds (the oldest records, tests/fixtures/legacy-summary.json, included): a record
# read without them is not a finished run's.
READ_REQUIRED = ("run_id", "family", "val_bpb", "val_loss", "params", "steps", "flops_spent")
# Each number a record may hold: (integer only, least value, whether the least value itself is allowed, greatest).
# Checked on every field present, on reading and on writing; None stands for "not recorded" where a field allows it.
RANGES: dict[str, tuple[bool, float, bool, float]] = {
    "val_bpb": (False, 0.0, False, math.inf), "val_loss": (False, 0.0, True, math.inf),
    "params": (True, 1, True, math.inf), "non_embedding_params": (True, 0, True, math.inf),
    "flops_per_unit": (False, 0.0, False, math.inf), "head_share": (False, 0.0, True, 1.0),
    "budget_flops": (False, 0.0, False, math.inf), "steps": (True, 1, True, math.inf),
    "flops_per_step": (False, 0.0, False, math.inf), "flops_spent": (False, 0.0, False, math.inf),
    "bytes_seen": (False, 0.0, True, math.inf), "tokens_seen": (True, 0, True, math.inf),
    "bytes_per_token": (False, 0.0, False, math.inf), "val_text_bytes": (True, 0, True, math.inf),
    "wall_time_s": (False, 0.0, True, math.inf), "seed": (True, -math.inf, True, math.inf),
}
# Identities: sha256 hex digests.
DIGESTS = ("config_fingerprint", "data_fingerprint", "weights_sha256")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _number_problem(key: str, value: Any) -> str | None:
    """Why ``value`` cannot be field ``key`` of a record (None when it can)."""
    integer, least, inclusive, greatest = RANGES[key]
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        return f"{key} is {excerpt(value, 40)}, expected {kind}"
    if not math.isfinite(value):
        return f"{key} is {value}, expected a finite number"
    if value < least or (value == least and not inclusive) or value > greatest:
        bound = f"{'at least' if inclusive else 'above'} {least:g}" + (f" and at most {greatest:g}"
                                                                       if math.isfinite(greatest) else "")
        return f"{key} is {value:g}, expected {kind} {bound}"
    return None


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

    def problems(self, required: tuple[str, ...] = READ_REQUIRED) -> list[str]:
        """Why this record cannot be a finished run's (empty when it can): a field of ``required`` missing, a
        number not finite or out of range (:data:`RANGES`), an identity that is not a sha256 digest, a status other
        than ``finished``."""
        out = [f"no {key}" for key in required if getattr(self, key) in (None, "", {})]
        for key in ("run_id", "family"):
            value = getattr(self, key)
            if value not in (None, "") and not isinstance(value, str):
                out.append(f"{key} is {excerpt(value, 40)}, expected a string")
        for key in RANGES:
            value = getattr(self, key)
            if value is not None and (problem := _number_problem(key, value)):
                out.append(problem)
        for key in DIGESTS:
            value = getattr(self, key)
            if value is not None and not (isinstance(value, str) and _SHA256.fullmatch(value)):
                out.append(f"{key} is {excerpt(value, 40)}, expected a sha256 digest")
        if self.status != "finished":
            out.append(f"status is {excerpt(self.status, 40)}, expected 'finished'")
        return out


def write_summary(path: Path, summary: RunSummary) -> Path:
    """Write ``summary`` to ``path`` atomically; a ValueError names the fields a finished run must have but lacks,
    or a value no finished run can have (a NaN ``val_bpb``): such a record is never written."""
    missing = summary.missing()
    if missing:
        raise ValueError(f"summary lacks {missing}")
    problems = summary.problems(REQUIRED)
    if problems:
        raise ValueError(f"summary not written: {'; '.join(problems)}")
    return atomic_write_json(path, summary.to_dict())


def read_summary(path: Path, hint: str = "delete it to finish the run again from its last checkpoint "
                                         "(--resume)", check: bool = True) -> RunSummary:
    """The summary at ``path``; a StateError naming the file (and ``hint``) when it is truncated or garbled, or
    (``check``, the default) when it is not a finished run's record (:meth:`RunSummary.problems`)."""
    record = read_json(path, hint)
    if not isinstance(record, dict):
        raise StateError(f"{path}: not a run summary (a JSON object); {hint}")
    summary = RunSummary.from_dict(record)
    if check:
        problems = summary.problems()
        if problems:
            shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
            raise StateError(f"{path}: not a usable run record ({shown}); {hint}")
    return summary


def load_summary(path: Path) -> RunSummary | None:
    """The summary at ``path``, or None when it is missing or unreadable (a table row or a queue check must not
    stop on a damaged record; they report it instead)."""
    try:
        return read_summary(path)
    except (OSError, StateError):
        return None
