"""Sweep definitions (``sweeps/*.yaml``), validated into dataclasses.

A sweep crosses *families* (``bpe``, ``aunet1`` ... ``aunet4``, or any name) with compute *budgets* and *seeds*.
At each budget a size rule fixes the bytes every family sees and the FLOPs per byte its model should cost; each
family then finds that model in its ladder or template; hyperparameters come from the paper's laws, laws we
fitted, or fixed values. Every run is then an ordinary run config (:mod:`aunet.training.config`).

Example::

    name: demo
    data: {corpus: gutenberg_en, val_bytes: 32768}
    budgets: [2.0e+10, 6.0e+10, 2.0e+11]
    size: {rule: data_ratio, gamma_bytes: 100}     # bytes = sqrt(gamma * C), the same for every family
    hparams: {aunet: {lr: 3.0e-3, batch_bytes: 4096}, bpe: {lr: 3.0e-3, batch_bytes: 4096}}
    families:
      bpe: {template: {family: bpe, head_dim: 32, vocab_size: 1024, seq_bytes: 512}}
      aunet2: {template: {family: aunet, widths: [0.5, 1.0], head_dims: [32, 32], caps: [512, 128],
                          splits: [word@1], windows: [128, null], layers: [1, null]}}
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from aunet.config import coerce, from_dict, read_yaml
from aunet.data.config import DataConfig
from aunet.errors import ConfigError, excerpt

SIZE_RULES = ("data_ratio", "isoflop", "fixed")


@dataclass
class SizeRule:
    """How bytes and model size follow from a budget C.

    ``data_ratio`` (the paper's protocol): bytes = sqrt(gamma_bytes * C) for every family, so the model of each family
    costs sqrt(C / gamma_bytes) FLOPs per byte. ``gamma_bytes`` is the data-to-model ratio in bytes (the paper's
    gamma of 10 in tokens is k^2 * 10 = 208 in bytes at k = 4.56 bytes per token).
    ``isoflop``: several sizes per budget, FLOPs per byte = multiplier x sqrt(C / gamma_bytes), each spending C.
    ``fixed``: each family's single model (``model:``) and bytes = C / (its FLOPs per byte).
    ``tolerance``: how far a family's model may be from the target FLOPs per byte before the plan warns.
    ``allow_below_floors``: plan models under the floors of a sensible shape (two heads per stage, widths growing
    with depth, layers on both sides of every non-deepest stage) instead of refusing them; for ablations only.
    ``shift_to_floor``: where a family's smallest grid size would fall under its floor model, move that family's
    whole grid up (keeping its spacing) until its smallest size is the floor model; recorded per run as
    ``grid_shift``. Without it such a budget is refused.
    ``max_truncation``: the largest share of training sequences a cap may truncate (measured by the plan) before it
    refuses the sweep; raise it knowingly, or raise the caps (``aunet sweep plan --suggest-caps``).
    """

    rule: str = "data_ratio"
    gamma_bytes: float = 208.0
    multipliers: list[float] = field(default_factory=lambda: [1.0])
    tolerance: float = 0.05
    allow_below_floors: bool = False
    shift_to_floor: bool = False
    max_truncation: float = 0.03

    def validate(self) -> None:
        if self.rule not in SIZE_RULES:
            raise ConfigError("size.rule", f"unknown rule {excerpt(self.rule)}; choose one of {', '.join(SIZE_RULES)}")
        if self.gamma_bytes <= 0:
            raise ConfigError("size.gamma_bytes", "must be positive")
        if not self.multipliers or any(m <= 0 for m in self.multipliers):
            raise ConfigError("size.multipliers", "give one or more positive multipliers")
        if self.rule != "isoflop" and self.multipliers != [1.0]:
            raise ConfigError("size.multipliers", "only used by rule: isoflop")
        if not 0 <= self.max_truncation <= 1:
            raise ConfigError("size.max_truncation", "a share between 0 and 1")


@dataclass
class HParams:
    """Learning rate and batch of one group of families (``aunet`` or ``bpe``).

    ``law: paper`` uses the paper's fits (AU-Net: batch 0.66 C^0.321 bytes, LR 6.6 C^-0.176; BPE: batch 29.9 C^0.231
    tokens, LR 19.3 C^-0.177); ``law: FILE`` reads laws fitted by ``aunet sweep tune``; otherwise ``lr`` and
    ``batch_bytes`` are fixed. ``lr_scale`` and ``batch_scale`` multiply whatever the source gives;
    ``min_batch_sequences`` keeps at least that many sequences per step.
    """

    law: Union[str, None] = None
    lr: Union[float, None] = None
    batch_bytes: Union[float, None] = None
    lr_scale: float = 1.0
    batch_scale: float = 1.0
    min_batch_sequences: int = 1

    def validate(self, key: str) -> None:
        if self.law is None and (self.lr is None or self.batch_bytes is None):
            raise ConfigError(key, "give law: paper (or a fitted-law file), or both lr and batch_bytes")
        if self.law is not None and (self.lr is not None or self.batch_bytes is not None):
            raise ConfigError(key, "give either a law or fixed lr/batch_bytes, not both")
        for name in ("lr", "batch_bytes"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{key}.{name}", "must be positive")


@dataclass
class FamilySpec:
    """One family: a ``template`` (sizes found by search), a ``ladder`` (a list of model sections or preset names,
    the closest is taken; or a mapping budget -> model, fixed per budget) or one fixed ``model``. ``variant`` labels
    an ablation; ``overrides`` are merged into every model of the family (e.g. ``{upsampling: simple}``). Ablations
    list several entries of one ``family`` with different ``variant`` labels."""

    template: Union[dict, None] = None
    ladder: Union[list, dict, None] = None
    model: Union[dict, str, None] = None
    variant: str = ""
    overrides: dict = field(default_factory=dict)
    hparams: Union[str, None] = None  # which hparams group; default: the entry's key if hparams has it, else aunet/bpe
    family: Union[str, None] = None  # the family column of the results; default: the entry's key
    size_scale: float = 1.0  # this family's size grid is centred at size_scale x the rule's FLOPs per byte


@dataclass
class ExtraSeeds:
    """More seeds for some runs, to measure the noise: ``seeds`` added at ``budgets`` for the sizes at
    ``multipliers`` (default: the grid's centre) of every family, or, when ``multipliers`` maps family entries to
    lists, for each named family's own sizes (e.g. its best size at a budget) and no others. ``extra_seeds`` is one
    such group or a list of them."""

    seeds: list[int] = field(default_factory=list)
    budgets: list[float] = field(default_factory=list)
    multipliers: Union[list[float], dict] = field(default_factory=lambda: [1.0])  # dict: entry -> sizes

    def applies(self, entry: str, budget: float, multiplier: float) -> bool:
        """Whether this group repeats family entry ``entry``'s size ``multiplier`` at ``budget``."""
        sizes = self.multipliers.get(entry, []) if isinstance(self.multipliers, dict) else self.multipliers
        return any(abs(budget / b - 1) < 1e-6 for b in self.budgets) and \
            any(abs(multiplier / m - 1) < 1e-6 for m in sizes)


@dataclass
class ExtraSizes:
    """More sizes at some budgets, to bracket an optimum the grid missed: ``multipliers`` (of the grid's centre,
    like ``size.multipliers``) added at ``budgets`` for every family (rule: isoflop)."""

    multipliers: list[float] = field(default_factory=list)
    budgets: list[float] = field(default_factory=list)


# Trials per family and budget of a tuning sweep: each is a training run, so more than this is a typo.
MAX_TRIALS = 10_000


@dataclass
class TuneSpec:
    """``aunet sweep tune``: a search over LR and batch at each budget, then power laws LR(C) and batch(C).

    ``trials`` per family and budget, sampled log-uniformly in ``lr`` and ``batch_bytes`` ranges by ``sampler``
    (``qmc``: quasi-random, as the paper; ``tpe``; ``random``; ``grid``: ``trials`` log-spaced learning rates, the
    clearest picture of loss against LR when the batch is fixed). A single ``batch_bytes`` number fixes the batch
    (its law is then that constant). With ``prune``, runs whose validation loss lags the median of earlier trials at
    the same step are stopped. Laws are fitted per family (and per model family, pooled): from the vertex of a
    parabola of loss in log LR at each budget (``fit: parabola``; ``parabola_shared``: one exponent for every family,
    per-family coefficients), or on the runs within ``tolerance`` (relative) of each budget's best validation bits
    per byte (``fit: near_best``, the paper's rule).
    """

    trials: int = 8
    lr: list[float] = field(default_factory=lambda: [1e-4, 3e-2])
    batch_bytes: Union[list[float], float] = field(default_factory=lambda: [1024.0, 16384.0])
    sampler: str = "qmc"
    prune: bool = True
    tolerance: float = 0.01
    fit: str = "near_best"

    @property
    def fixed_batch(self) -> float | None:
        """The batch in bytes when it is not searched."""
        return float(self.batch_bytes) if isinstance(self.batch_bytes, (int, float)) else None

    def validate(self) -> None:
        if not 1 <= self.trials <= MAX_TRIALS:
            # An upper bound too: a grid of 1e8 learning rates grew memory without bound before anything trained.
            raise ConfigError("tune.trials", f"{self.trials}: must lie in 1..{MAX_TRIALS} per family and budget")
        ranges = ["lr"] if self.fixed_batch is not None else ["lr", "batch_bytes"]
        for key in ranges:
            lo_hi = getattr(self, key)
            if len(lo_hi) != 2 or not 0 < lo_hi[0] < lo_hi[1]:
                raise ConfigError(f"tune.{key}", f"expected [low, high] with 0 < low < high, got {excerpt(lo_hi)}")
        if self.fixed_batch is not None and not self.fixed_batch > 0:
            raise ConfigError("tune.batch_bytes", "a fixed batch must be positive")
        if self.sampler not in ("qmc", "tpe", "random", "grid"):
            raise ConfigError("tune.sampler", f"expected qmc, tpe, random or grid, got {excerpt(self.sampler)}")
        if self.sampler == "grid" and self.fixed_batch is None:
            raise ConfigError("tune.sampler", "grid searches the LR only: give one batch_bytes number")
        if self.fit not in ("near_best", "parabola", "parabola_shared"):
            raise ConfigError("tune.fit", f"expected near_best, parabola or parabola_shared, got {excerpt(self.fit)}")


@dataclass
class EvalSpec:
    """Tasks ``aunet sweep eval`` runs on every finished run. ``limit`` caps the items per task: one number, or a
    mapping ``{default: 500, mmlu: 10}`` (lm-eval applies a limit to each of MMLU's 57 subjects)."""

    tasks: list[str] = field(default_factory=list)
    limit: Union[int, dict, None] = None
    num_fewshot: Union[int, None] = None

    def limit_for(self, task: str) -> int | None:
        if isinstance(self.limit, dict):
            value = self.limit.get(task, self.limit.get("default"))
            return None if value is None else int(value)
        return self.limit


@dataclass
class SweepSpec:
    name: str
    families: dict[str, FamilySpec]
    budgets: list[float]
    size: SizeRule = field(default_factory=SizeRule)
    hparams: dict[str, HParams] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0])
    data: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    trainer: dict = field(default_factory=dict)
    eval: EvalSpec = field(default_factory=EvalSpec)
    tune: Union[TuneSpec, None] = None
    bytes_per_token: Union[float, None] = None  # for BPE; default: measured with the tokenizer on the corpus
    extra_seeds: list[ExtraSeeds] = field(default_factory=list)
    extra_sizes: Union[ExtraSizes, None] = None
    results_dir: str = "results"
    description: str = ""
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def data_config(self) -> DataConfig:
        """The validated data section every run of the sweep reads."""
        data = from_dict(DataConfig, self.data or {}, prefix="data.")
        data.validate()
        return data


_TOP_KEYS = {f.name for f in dataclasses.fields(SweepSpec)} - {"source"}


def _folder_safe(name: str) -> bool:
    return bool(name) and not name.startswith(".") and all(c.isalnum() or c in "-_." for c in name)


def _refuse_repeats(values: list, key: str) -> None:
    """A value listed twice would plan its runs twice (one run folder, two rows) and count them twice in the fits."""
    seen: set = set()
    for i, value in enumerate(values):
        if value in seen:
            raise ConfigError(f"{key}[{i}]", f"{value:g} is listed twice; list each once")
        seen.add(value)


def sweep_from_dict(raw: dict[str, Any], source: str = "") -> SweepSpec:
    """Validate a parsed sweep YAML; every error names the dotted key."""
    for key in raw:
        if key not in _TOP_KEYS:
            hint = difflib.get_close_matches(str(key), _TOP_KEYS, n=1)
            suggestion = f"did you mean {hint[0]!r}? " if hint else ""
            raise ConfigError(excerpt(key, 60, quote=False),
                              f"unknown key; {suggestion}valid keys: {', '.join(sorted(_TOP_KEYS))}")
    for key in ("name", "families", "budgets"):
        if key not in raw:
            raise ConfigError(key, "required key is missing")
    name = raw["name"]
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_." for c in name):
        raise ConfigError("name", f"expected a folder-safe name (letters, digits, - _ .), got {excerpt(name)}")
    families_raw = raw["families"]
    if not isinstance(families_raw, dict) or not families_raw:
        raise ConfigError("families", "expected a mapping of family name to {template|ladder|model}")
    families = {}
    for fam, body in families_raw.items():
        spec = from_dict(FamilySpec, body or {}, prefix=f"families.{fam}.")
        for key, label in ((f"families.{fam}", fam), (f"families.{fam}.family", spec.family)):
            # The family names its runs' folders (<results>/runs/<family>-<hash>): no path may hide in it.
            if label is not None and not _folder_safe(str(label)):
                raise ConfigError(key, f"{excerpt(label)} cannot name run folders: use letters, digits, - _ . "
                                       "(not first)")
        if not spec.size_scale > 0:
            raise ConfigError(f"families.{fam}.size_scale", "must be positive")
        given = [k for k in ("template", "ladder", "model") if getattr(spec, k) is not None]
        if len(given) != 1:
            raise ConfigError(f"families.{fam}", "give exactly one of template, ladder, model")
        families[str(fam)] = spec
    labels: dict[tuple[str, str], str] = {}
    for fam, spec in families.items():
        # The results draw one curve per (family, variant): two entries under one label would be one curve of two
        # different models.
        label = (spec.family or fam, spec.variant)
        if label in labels:
            raise ConfigError(f"families.{fam}", f"same family {label[0]!r} and variant {label[1]!r} as "
                                                 f"families.{labels[label]}; give one of them another variant")
        labels[label] = fam
    budgets = raw["budgets"]
    if not isinstance(budgets, list) or not budgets:
        raise ConfigError("budgets", "expected a non-empty list of FLOPs budgets, e.g. [1.0e+11, 1.0e+12]")
    budgets = [coerce(b, float, f"budgets[{i}]") for i, b in enumerate(budgets)]
    if any(b <= 0 for b in budgets):
        raise ConfigError("budgets", "budgets must be positive")
    _refuse_repeats(budgets, "budgets")
    size = from_dict(SizeRule, raw.get("size") or {}, prefix="size.")
    size.validate()
    hparams = {}
    for group, body in (raw.get("hparams") or {}).items():
        hp = from_dict(HParams, body or {}, prefix=f"hparams.{group}.")
        hp.validate(f"hparams.{group}")
        hparams[str(group)] = hp
    evaluation = from_dict(EvalSpec, raw.get("eval") or {}, prefix="eval.")
    tune = None
    if raw.get("tune") is not None:
        tune = from_dict(TuneSpec, raw["tune"], prefix="tune.")
        tune.validate()
    seeds = [coerce(s, int, f"seeds[{i}]") for i, s in enumerate(raw.get("seeds") or [0])]
    _refuse_repeats(seeds, "seeds")
    _refuse_repeats(size.multipliers, "size.multipliers")
    for key in ("data", "train", "trainer"):
        if not isinstance(raw.get(key) or {}, dict):
            raise ConfigError(key, "expected a mapping (the same keys as a run config's section)")
    bpt = raw.get("bytes_per_token")
    extra = _extra_seeds(raw.get("extra_seeds"), budgets, seeds, families)
    extra_sizes = _extra_sizes(raw.get("extra_sizes"), size, budgets)
    return SweepSpec(
        name=name, families=families, budgets=budgets, size=size, hparams=hparams, seeds=seeds,
        data=dict(raw.get("data") or {}), train=dict(raw.get("train") or {}), trainer=dict(raw.get("trainer") or {}),
        eval=evaluation, tune=tune, bytes_per_token=None if bpt is None else coerce(bpt, float, "bytes_per_token"),
        extra_seeds=extra, extra_sizes=extra_sizes,
        results_dir=coerce(raw.get("results_dir") or "results", str, "results_dir"),
        description=coerce(raw.get("description") or "", str, "description"), source=source,
    )


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and validate a sweep file; errors carry the file name."""
    p = Path(path)
    raw = read_yaml(p)
    try:
        return sweep_from_dict(raw, source=str(p))
    except ConfigError as exc:
        raise exc.with_source(str(p)) from None


def _extra_seeds(raw: Any, budgets: list[float], seeds: list[int], families: dict) -> list[ExtraSeeds]:
    """``extra_seeds`` (one group or a list of groups) checked: budgets of the sweep, seeds not already planned,
    family entries of the sweep where multipliers are given per family."""
    if raw is None:
        return []
    groups = raw if isinstance(raw, list) else [raw]
    out = []
    for g, body in enumerate(groups):
        key = f"extra_seeds[{g}]" if isinstance(raw, list) else "extra_seeds"
        if not isinstance(body, dict):
            raise ConfigError(key, "expected a mapping with seeds, budgets and multipliers")
        extra = from_dict(ExtraSeeds, body, prefix=f"{key}.")
        extra.seeds = [coerce(s, int, f"{key}.seeds[{i}]") for i, s in enumerate(extra.seeds)]
        extra.budgets = [coerce(b, float, f"{key}.budgets[{i}]") for i, b in enumerate(extra.budgets)]
        if isinstance(extra.multipliers, dict):
            unknown = sorted(set(map(str, extra.multipliers)) - set(families))
            if unknown:
                raise ConfigError(f"{key}.multipliers", f"{unknown[0]!r} is not a family entry of the sweep "
                                                         f"({', '.join(families)})")
            extra.multipliers = {
                str(fam): [coerce(m, float, f"{key}.multipliers.{fam}[{i}]") for i, m in enumerate(
                    sizes if isinstance(sizes, list) else [sizes])]
                for fam, sizes in extra.multipliers.items()}
        else:
            extra.multipliers = [coerce(m, float, f"{key}.multipliers[{i}]")
                                 for i, m in enumerate(extra.multipliers)]
        missing = [b for b in extra.budgets if not any(abs(b / c - 1) < 1e-6 for c in budgets)]
        if missing:
            raise ConfigError(f"{key}.budgets", f"{missing[0]:.3g} is not one of the sweep's budgets")
        if set(extra.seeds) & set(seeds):
            raise ConfigError(f"{key}.seeds", "already in seeds: each run would be planned twice")
        out.append(extra)
    return out


def _extra_sizes(raw: Any, size: SizeRule, budgets: list[float]) -> ExtraSizes | None:
    """``extra_sizes`` checked: isoflop grids only, positive multipliers not already in the grid, budgets of the
    sweep."""
    if raw is None:
        return None
    extra = from_dict(ExtraSizes, raw, prefix="extra_sizes.")
    extra.multipliers = [coerce(m, float, f"extra_sizes.multipliers[{i}]") for i, m in enumerate(extra.multipliers)]
    extra.budgets = [coerce(b, float, f"extra_sizes.budgets[{i}]") for i, b in enumerate(extra.budgets)]
    if size.rule != "isoflop":
        raise ConfigError("extra_sizes", "only used by size rule isoflop")
    if not extra.multipliers or any(m <= 0 for m in extra.multipliers):
        raise ConfigError("extra_sizes.multipliers", "give one or more positive multipliers")
    _refuse_repeats(extra.multipliers, "extra_sizes.multipliers")
    if any(abs(m / g - 1) < 1e-6 for m in extra.multipliers for g in size.multipliers):
        raise ConfigError("extra_sizes.multipliers", "already in size.multipliers: each run would be planned twice")
    missing = [b for b in extra.budgets if not any(abs(b / c - 1) < 1e-6 for c in budgets)]
    if not extra.budgets or missing:
        raise ConfigError("extra_sizes.budgets", f"{missing[0]:.3g} is not one of the sweep's budgets" if missing
                          else "give one or more of the sweep's budgets")
    return extra
