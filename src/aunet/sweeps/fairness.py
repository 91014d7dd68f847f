"""Is a sweep fair by construction? Per run and stage: shapes, where the FLOPs go, how much data each stage sees, and
what the caps cost (sequences truncated, positions padded), measured on the training text before anything trains.

A family's comparison is only as good as its worst run: a stage too narrow to attend, a cap that cuts a third of
the sequences, or a stage that sees a handful of units per parameter all make a family lose for reasons that are not
its architecture. :func:`fairness_report` puts those numbers next to each planned run; :func:`check_caps` refuses a
sweep whose caps truncate more than ``size.max_truncation`` of the training sequences (with caps that would not,
from :func:`suggest_caps`), and warns where padding is heavy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import numpy as np

from aunet.data.packing import ByteEncoder, pack
from aunet.data.pipeline import training_documents
from aunet.errors import ConfigError
from aunet.flops import flops_report, layer_params
from aunet.models import ModelConfig, family_of

HEAVY_PADDING = 0.35  # warn when more than this share of a deeper stage's positions are padding


@dataclass(frozen=True)
class CapStats:
    """Boundary counts of one AU-Net family's training windows against its caps.

    ``counts`` ``[windows, transitions]``: positions selected at transition ``i`` (entries of stage ``i+1``) in each
    training window, BOS included; ``truncated[i]``: share of windows whose count exceeds ``caps[i+1]``;
    ``padding[i]``: mean share of stage ``i+1``'s ``caps[i+1]`` positions left as padding.
    """

    caps: tuple[int, ...]
    counts: np.ndarray
    truncated: tuple[float, ...]
    padding: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"caps": list(self.caps), "windows": int(len(self.counts)), "truncated": list(self.truncated),
                "padding": list(self.padding),
                "count_percentiles": {str(p): np.percentile(self.counts, p, axis=0).tolist() for p in (50, 90, 99)}}


def boundary_counts(documents: Iterable[bytes], splits: list[str], seq_len: int, max_windows: int = 512) -> np.ndarray:
    """``[windows, len(splits)]`` boundary counts of the first ``max_windows`` training windows of ``seq_len`` bytes
    packed from ``documents`` exactly as training packs them (BOS at the top level)."""

    encoder = ByteEncoder(splits)
    rows = []
    for _, levels in pack((encoder.encode(d) for d in documents), seq_len + 1, encoder.top_level):
        lv = levels[:seq_len].astype(np.int64)  # the inputs of a training window
        lv[0] = len(splits)  # the first position is pooled at every transition (P3), as the model forces it
        rows.append([(lv > i).sum() for i in range(len(splits))])
        if len(rows) >= max_windows:
            break
    if not rows:
        raise ConfigError("data", f"the training text holds no window of {seq_len} bytes to measure caps on")
    return np.array(rows, dtype=np.int64)


def cap_stats(counts: np.ndarray, caps: list[int] | tuple[int, ...]) -> CapStats:
    """Truncation and padding shares of ``caps`` (``[caps[0], caps[1], ...]``, the first being the byte sequence) for
    boundary ``counts`` ``[windows, transitions]``."""
    deeper = np.asarray(caps[1:], dtype=np.int64)
    truncated = (counts > deeper[None, :]).mean(axis=0)
    padding = (1 - np.minimum(counts, deeper[None, :]) / deeper[None, :]).mean(axis=0)
    return CapStats(tuple(int(c) for c in caps), counts, tuple(map(float, truncated)), tuple(map(float, padding)))


def suggest_caps(counts: np.ndarray, seq_len: int, percentile: float = 99.0, multiple: int = 8) -> list[int]:
    """Caps from measured boundary counts: the ``percentile`` of each transition's counts, rounded up to a
    ``multiple`` (so about ``100 - percentile`` % of sequences are truncated), never above the stage before."""
    caps = [seq_len]
    for i in range(counts.shape[1]):
        value = int(math.ceil(np.percentile(counts[:, i], percentile) / multiple) * multiple)
        caps.append(max(multiple, min(value, caps[-1])))
    return caps


@dataclass(frozen=True)
class StageShape:
    """One stage of a planned run: width, layers on each side (the deepest stage: in total), the share of the
    run's FLOPs per byte spent there, and the units (bytes, pooled entries or tokens) it sees per parameter."""

    stage: int
    width: int
    layers: int
    flops_share: float
    units_per_param: float


def stage_shapes(config: ModelConfig, n_bytes: float, bytes_per_unit: float = 1.0) -> list[StageShape]:
    """The :class:`StageShape` of every stage of ``config`` over a run reading ``n_bytes`` bytes. Units seen by a
    stage are its static positions (its cap per sequence, as FLOPs are charged), padding included."""
    report = flops_report(config)
    units = n_bytes / bytes_per_unit
    out = []
    for s in report.stages:
        params = s.layers_counted * layer_params(s.dim, s.ffn_dim)
        # A non-deepest stage is counted twice (its encoder and its decoder); shown per side.
        layers = s.layers_counted // 2 if s.stage < len(report.stages) - 1 else s.layers_counted
        share = (s.linear_flops + s.attention_flops) / report.flops_per_unit
        out.append(StageShape(s.stage, s.dim, layers, share, units * s.ratio / params))
    return out


def fairness_rows(plan: Any, cap_table: dict[str, CapStats]) -> list[dict[str, Any]]:
    """One row per planned run: its stages (:class:`StageShape`), epochs, LR and its source, grid shift, and for
    AU-Nets the truncation and padding of its caps and the share of its FLOPs per byte spent on padding."""
    rows = []
    for run in plan.runs:
        model = run.config.model
        k = plan.bytes_per_token.get(run.family, 1.0) if run.unit == "token" else 1.0
        shapes = stage_shapes(model, run.bytes, k)
        row = {"run_id": run.run_id, "family": run.family, "budget_flops": run.budget_flops, "seed": run.seed,
               "multiplier": run.multiplier, "grid_shift": run.grid_shift, "epochs": run.epochs, "lr": run.lr,
               "lr_source": run.hparams_source, "batch_bytes": run.batch_bytes,
               "stages": [s.__dict__ for s in shapes], "head_share": run.head_share}
        stats = cap_table.get(_caps_key(model)) if family_of(model).split_rules() else None
        if stats is not None:
            row["truncated"] = list(stats.truncated)
            row["padding"] = list(stats.padding)
            # FLOPs of a deeper stage spent on padding positions, as a share of all its FLOPs per byte.
            row["padding_flops_share"] = sum(shapes[i + 1].flops_share * stats.padding[i]
                                             for i in range(len(stats.padding)))
        rows.append(row)
    return rows


def _caps_key(model: ModelConfig) -> str:
    """Split rules and caps of a model whose deeper stages follow split rules: what its boundary counts against
    the caps depend on."""
    return f"{','.join(family_of(model).split_rules())}|{','.join(map(str, model.caps))}"


def _multi_stage_aunets(plan: Any) -> Iterator[tuple[Any, ModelConfig, str]]:
    """``(run, model, caps key)`` for the first run of each distinct (splits, caps) among the plan's models whose
    deeper stages follow split rules (AU-Nets of several stages; learned boundaries cannot be measured before
    training, their record says what they did)."""
    seen: set[str] = set()
    for run in plan.runs:
        model = run.config.model
        if family_of(model).split_rules() and _caps_key(model) not in seen:
            seen.add(_caps_key(model))
            yield run, model, _caps_key(model)


def measure_caps(plan: Any, documents: list[bytes]) -> dict[str, CapStats]:
    """:class:`CapStats` of every distinct (splits, caps) of the plan's AU-Nets with several stages, measured on
    ``documents`` (a sample of the training split)."""
    table: dict[str, CapStats] = {}
    counts_by_splits: dict[tuple[str, int], np.ndarray] = {}
    for _, model, key in _multi_stage_aunets(plan):
        rules = family_of(model).split_rules()
        splits_key = (",".join(rules), model.caps[0])
        if splits_key not in counts_by_splits:
            counts_by_splits[splits_key] = boundary_counts(documents, rules, model.caps[0])
        table[key] = cap_stats(counts_by_splits[splits_key], model.caps)
    return table


def check_caps(plan: Any, cap_table: dict[str, CapStats], max_truncation: float) -> list[str]:
    """Refuse caps that truncate more than ``max_truncation`` of the training sequences at any transition (one
    ConfigError naming the family, the stage and caps that would do); return warnings for heavy padding."""
    warnings = []
    for run, model, key in _multi_stage_aunets(plan):
        stats = cap_table[key]
        for i, share in enumerate(stats.truncated):
            if share > max_truncation:
                better = suggest_caps(stats.counts, model.caps[0])
                raise ConfigError(
                    f"families.{family_entry(plan.spec, run)}",
                    f"cap {model.caps[i + 1]} of stage {i + 2} truncates {share:.1%} of training sequences (at most "
                    f"{max_truncation:.1%} allowed); use caps {better} (99th percentile of measured boundaries, "
                    "aunet sweep plan --suggest-caps) or raise size.max_truncation knowingly")
        for i, share in enumerate(stats.padding):
            if share > HEAVY_PADDING:
                warnings.append(f"{family_entry(plan.spec, run)}: {share:.0%} of stage {i + 2}'s positions are padding "
                                f"(cap {model.caps[i + 1]}); its FLOPs are charged but learn nothing")
    return warnings


def family_entry(spec: Any, run: Any) -> str:
    """The key under ``families:`` that planned ``run``: several entries share one family in an ablation (told apart
    by their variant), so the family alone does not say which entry to fix."""
    for key, fam in spec.families.items():
        if (fam.family or key) == run.family and fam.variant == run.variant:
            return key
    return run.family


def training_sample(spec: Any, max_bytes: int = 2_000_000, chunk: int = 65_536) -> list[bytes]:
    """About ``max_bytes`` of the sweep's training split in ``chunk``-byte pieces, spread evenly over every training
    document (so one long book does not stand for the corpus)."""
    documents = training_documents(spec.data_config())
    if not documents:
        raise ConfigError("data", "the training split is empty")
    per_document = max(1, math.ceil(max_bytes / (chunk * len(documents))))
    pieces = []
    for d in documents:
        starts = np.linspace(0, max(0, len(d) - chunk), per_document).astype(int)
        pieces += [d[s : s + chunk] for s in sorted(set(starts.tolist()))]
    return pieces
