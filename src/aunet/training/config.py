"""Run configuration: one YAML file with ``model``, ``data``, ``train`` and ``trainer`` sections.

``model`` is a model section (see :mod:`aunet.models.config`) or ``{preset: NAME, ...overrides}``. A preset name or a
YAML file works wherever a run config is expected; missing sections take the defaults below. ``--set key=value``
overrides any dotted key (values parsed as YAML scalars or lists, never evaluated).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from aunet.config import from_dict, read_yaml
from aunet.data.config import LEGACY_STREAM, DataConfig
from aunet.errors import ConfigError, excerpt
from aunet.flops import flops_report
from aunet.models.config import ModelConfig, model_config_from_dict
from aunet.models.loading import resolve_config_path
from aunet.yaml_loader import parse_yaml


@dataclass
class TrainConfig:
    """Optimisation, compute budget, and how often to validate, checkpoint and log.

    Attributes:
        budget_flops: training FLOPs to spend (our formula); sets the number of steps. Exclusive with max_steps.
        max_steps: a fixed number of optimizer steps instead of a budget.
        batch_size: sequences per optimizer step, over all devices and accumulation steps.
        accumulate: gradient accumulation steps per optimizer step.
        lr, min_lr_ratio, warmup_steps, warmup_fraction: peak learning rate; cosine decay to ``min_lr_ratio * lr``
            after a linear warmup of ``warmup_steps`` (default: ``warmup_fraction`` of the steps).
        weight_decay, betas, eps, grad_clip: AdamW and gradient clipping (the paper's 0.1, (0.9, 0.95), 1e-8, 0.2).
        seed: seeds initialisation and data order.
        val_every_steps: validate (and then checkpoint) every this many steps; default: about 10 times per run.
        peak_flops: the device's peak FLOP/s for model FLOP utilisation (Lightning's table is wrong for some GPUs;
            on CPU there is no table at all).
        results_dir: where run folders go (``<results_dir>/<run-id>/``).
    """

    budget_flops: Union[float, None] = None
    max_steps: Union[int, None] = None
    batch_size: int = 8
    accumulate: int = 1
    lr: float = 3e-3
    min_lr_ratio: float = 0.01
    warmup_steps: Union[int, None] = None
    warmup_fraction: float = 0.1
    weight_decay: float = 0.1
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    grad_clip: Union[float, None] = 0.2
    seed: int = 0
    val_every_steps: Union[int, None] = None
    log_every_steps: int = 1
    peak_flops: Union[float, None] = None
    results_dir: str = "results/runs"

    def validate(self) -> None:
        if (self.budget_flops is None) == (self.max_steps is None):
            raise ConfigError("train.budget_flops", "set exactly one of train.budget_flops and train.max_steps")
        if self.budget_flops is not None and self.budget_flops <= 0:
            raise ConfigError("train.budget_flops", "must be positive")
        for key in ("max_steps", "batch_size", "accumulate", "log_every_steps", "val_every_steps",
                    "warmup_steps"):
            value = getattr(self, key)
            if value is not None and value < (0 if key == "warmup_steps" else 1):
                raise ConfigError(f"train.{key}", f"must be a positive integer, got {value}")
        if self.lr <= 0:
            raise ConfigError("train.lr", f"must be positive, got {self.lr}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError("train.min_lr_ratio", "must lie in [0, 1]")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ConfigError("train.warmup_fraction", "must lie in [0, 1)")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError("train.betas", f"expected two numbers in [0, 1), got {excerpt(self.betas)}")
        if not self.eps > 0:
            # AdamW divides by sqrt(v) + eps: with eps 0 a parameter whose gradient is zero gets 0 / 0 = NaN.
            raise ConfigError("train.eps", f"must be positive (AdamW divides by sqrt(v) + eps), got {self.eps}; the "
                                           "default is 1e-8")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError("train.grad_clip", "must be positive or null")
        if self.batch_size % self.accumulate:
            raise ConfigError("train.batch_size",
                              f"{self.batch_size} is not divisible by train.accumulate={self.accumulate}")


# Experiment trackers a run can log to next to its CSV log (which the run records are built from, so it is always
# written). Names only here: the loggers themselves are built in aunet.training.trackers, which imports Lightning.
TRACKERS = ("tensorboard", "wandb")


@dataclass
class TrainerConfig:
    """Passed through to Lightning: the same run on a laptop, one GPU, or many nodes (under SLURM or torchrun).

    Attributes:
        loggers: trackers to log to besides the CSV log, any of :data:`TRACKERS`: TensorBoard event files and an
            offline Weights & Biases run, both under the run folder's ``logs/``.
        project: the W&B project (default ``aunet``; a sweep's runs default to the sweep's name).
    """

    accelerator: str = "auto"
    devices: Union[int, str] = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: Union[str, None] = None  # default: bf16-mixed on GPU, 32-true on CPU
    compile: bool = False
    progress_bar: bool = True
    loggers: list[str] = field(default_factory=list)
    project: Union[str, None] = None

    def validate(self) -> None:
        if self.num_nodes < 1:
            raise ConfigError("trainer.num_nodes (--num-nodes)", f"must be at least 1, got {self.num_nodes}")
        for name in self.loggers:
            if name not in TRACKERS:
                raise ConfigError("trainer.loggers", f"unknown logger {excerpt(name)}; choose from "
                                                     f"{', '.join(TRACKERS)} (the CSV log is always written)")


@dataclass
class RunConfig:
    """A whole training run. ``name`` defaults to the config file's or preset's name."""

    model: ModelConfig
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    name: str = "run"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model.to_dict(),
            "data": dataclasses.asdict(self.data),
            "train": dataclasses.asdict(self.train),
            "trainer": dataclasses.asdict(self.trainer),
        }

    def identity(self) -> dict[str, Any]:
        """What defines the run's result: model, data and training, not where or on what hardware it runs."""
        out = self.to_dict()
        out.pop("trainer")
        out.pop("name")
        out["train"].pop("results_dir")
        out["data"].pop("num_workers")
        out["data"].pop("pack_processes")  # how fast a pack is built, not what it holds
        if out["data"]["stream"] == LEGACY_STREAM:
            # Runs from before packed streams keep their ids (their configs have no data.stream).
            out["data"].pop("stream")
        else:  # the packed stream has no shuffle buffer: its order is a seeded permutation of all windows
            out["data"].pop("shuffle_buffer")
        if out["data"]["interleave_bytes"] is None:
            # Not interleaving: the pool size changes nothing, and runs from before these keys keep their ids.
            out["data"].pop("interleave_bytes")
            out["data"].pop("interleave_pool")
        return out

    def fingerprint(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def run_id(self) -> str:
        return f"{safe_name(self.name)}-{self.fingerprint()[:10]}"


def safe_name(text: str) -> str:
    """``text`` with every character but letters, digits and ``-_.`` replaced by ``-`` (a folder name)."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text)


def check_name(name: Any) -> str:
    """A run name given in a config: it names the run folder, so it must not be a path (``../x``, ``a/b``).

    Refused rather than rewritten: a name that silently became another one would hide the mistake."""
    if not isinstance(name, str) or not name:
        raise ConfigError("name", f"expected a non-empty string, got {excerpt(name)}")
    if safe_name(name) != name or name.startswith("."):
        raise ConfigError("name", f"{excerpt(name)} cannot name a run folder: use letters, digits, '-', '_' and '.' "
                                  "(not first); the run folder is <results_dir>/<name>-<hash>")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise ConfigError("name", f"{len(name.encode())} bytes, more than {MAX_NAME_BYTES}: the run folder "
                                  "<name>-<hash> would exceed a file name's 255 bytes; give a shorter name")
    return name


# A folder name holds at most 255 bytes; the run id adds "-" and 10 characters of its hash.
MAX_NAME_BYTES = 255 - 11


def _default_name(text: str) -> str:
    """A run name from a file or preset name: folder-safe (:func:`safe_name`) and short enough for a folder."""
    return safe_name(text).encode()[:MAX_NAME_BYTES].decode(errors="ignore") or "run"


SECTIONS = {"name", "model", "data", "train", "trainer"}


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``["train.lr=1e-3", "model.layers=[1, 4]"]`` applied to a raw config dict (values parsed as YAML)."""
    out = copy.deepcopy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError("--set", f"expected key=value, got {excerpt(item)}")
        try:
            value = parse_yaml(text, source=f"--set {key.strip()}")
        except ConfigError as exc:
            # Attributed to --set, not to the config file: the value is on the command line.
            raise ConfigError(key.strip(), f"cannot parse value: {exc.message}", source="--set") from None
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(key, f"{excerpt(part)} is not a section")
            node = child
        node[parts[-1]] = value
    return out


def _model_section(raw: Any) -> ModelConfig:
    if not isinstance(raw, dict):
        raise ConfigError("model", "expected a mapping (a model section or {preset: NAME})")
    section = dict(raw)
    preset = section.pop("preset", None)
    if preset is not None:
        base = read_yaml(resolve_config_path(str(preset))).get("model")
        if not isinstance(base, dict):
            raise ConfigError("model.preset", f"{excerpt(preset)} has no model section")
        section = {**base, **section}
    return model_config_from_dict(section)


def run_config_from_dict(raw: dict[str, Any], default_name: str = "run") -> RunConfig:
    """Validate a raw config dict (after overrides) into a RunConfig; errors name the dotted key."""
    unknown = set(raw) - SECTIONS
    if unknown:
        import difflib

        key = sorted(map(str, unknown))[0]
        hint = difflib.get_close_matches(key, SECTIONS, n=1)
        suggestion = f"did you mean {hint[0]!r}? " if hint else ""
        raise ConfigError(excerpt(key, 60, quote=False),
                          f"unknown section; {suggestion}sections: {', '.join(sorted(SECTIONS))}")
    if "model" not in raw:
        raise ConfigError("model", "missing section; give a model section or {preset: NAME}")
    model = _model_section(raw["model"])
    data = from_dict(DataConfig, raw.get("data") or {}, prefix="data.")
    train = from_dict(TrainConfig, raw.get("train") or {}, prefix="train.")
    trainer = from_dict(TrainerConfig, raw.get("trainer") or {}, prefix="trainer.")
    data.validate()
    train.validate()
    trainer.validate()
    check_steps(model, train)
    # A given name is checked; a default one (a file or preset name, e.g. "my run.yaml") is made folder-safe.
    name = check_name(raw["name"]) if raw.get("name") is not None else _default_name(default_name)
    return RunConfig(model=model, data=data, train=train, trainer=trainer, name=name)


# More optimizer steps than any run can take (a large model trains for about 1e5 to 1e6): a budget or step count
# beyond it is a typo, and a warmup of a tenth of it would keep the learning rate at zero for the whole run.
MAX_STEPS = 10**9


def check_steps(model: ModelConfig, train: TrainConfig) -> None:
    """Refuse a budget or step count that no run could train to (a ``1e308`` budget: its warmup alone would outlast
    the universe, and every step actually trained would have a learning rate of about zero)."""
    if train.max_steps is not None:
        steps, key = float(train.max_steps), "train.max_steps"
    else:
        report = flops_report(model)
        steps, key = train.budget_flops / (report.flops_per_unit * report.seq_len * train.batch_size), \
            "train.budget_flops"
    if steps > MAX_STEPS:
        raise ConfigError(key, f"{steps:.3g} optimizer steps (more than {MAX_STEPS:.0e}): surely a typo; give a budget "
                               "of at most a few million steps")


def run_config_from_record(raw: dict[str, Any]) -> RunConfig:
    """The config a run recorded (its ``config.yaml``, a sweep queue's copy). Records are written in full
    (:meth:`RunConfig.to_dict`), so one without ``data.stream`` was written before packed streams existed and was
    trained on the streamed data; it is read as such, so the run keeps its id and resumes on its own data."""
    data = raw.get("data")
    if isinstance(data, dict) and "stream" not in data:
        raw = {**raw, "data": {**data, "stream": LEGACY_STREAM}}
    return run_config_from_dict(raw)


def load_recorded_config(path: str | Path) -> RunConfig:
    """The config a run folder recorded (``config.yaml``; see :func:`run_config_from_record`); errors name it."""
    try:
        return run_config_from_record(read_yaml(path))
    except ConfigError as exc:
        raise (exc if exc.source else exc.with_source(str(path))) from None


def load_run_config(spec: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """A run config from a YAML file or preset name, with ``--set`` overrides; errors carry the file name."""
    path = resolve_config_path(spec)
    raw = read_yaml(path)
    default_name = Path(str(spec)).stem if Path(str(spec)).is_file() else str(spec).replace("/", "-")
    try:
        return run_config_from_dict(apply_overrides(raw, overrides or []), default_name=default_name)
    except ConfigError as exc:
        raise (exc if exc.source else exc.with_source(str(path))) from None
