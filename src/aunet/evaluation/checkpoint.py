"""Load a trained model from a run folder or a Lightning checkpoint, for evaluation and generation.

A run folder (``results/runs/<run-id>/``) holds ``checkpoints/final.ckpt`` (or ``last.ckpt`` for an unfinished run)
and, for BPE runs, ``tokenizer/``. A ``.ckpt`` path is accepted too; its run folder is its grandparent. Checkpoints
are read with ``torch.load(weights_only=True)``: no pickled code is ever executed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import torch
from torch import nn

from aunet.data.bpe import BPETokenizer
from aunet.errors import ConfigError, DataError
from aunet.evaluation.errors import EvalError
from aunet.models import Family, ModelConfig, build_model, family_of, model_config_from_dict
from aunet.training.records import RunPaths, weights_sha256
from aunet.training.summary import read_summary

log = logging.getLogger(__name__)



@dataclass
class LoadedModel:
    """A model ready for evaluation.

    Attributes:
        model: :class:`~aunet.models.AUNet` or :class:`~aunet.models.BPETransformer`, in eval mode, on ``device``.
        config: its model config.
        tokenizer: the run's :class:`~aunet.data.bpe.BPETokenizer` for BPE models, None for AU-Net.
        run_dir: the run folder (None when a bare checkpoint lies outside one).
        checkpoint: the ``.ckpt`` file read (None for a model built in memory).
    """

    model: nn.Module
    config: ModelConfig
    tokenizer: object | None = None
    run_dir: Path | None = None
    checkpoint: Path | None = None

    @property
    def family(self) -> Family:
        return family_of(self.config)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def resolve_checkpoint(spec: Union[str, Path]) -> tuple[Path, Path | None]:
    """``(checkpoint file, run folder or None)`` for a run folder or a ``.ckpt`` path."""
    path = Path(spec).expanduser()
    if path.is_dir():
        paths = RunPaths(path)
        for candidate in paths.model_checkpoints:
            if candidate.is_file():
                return candidate, path
        names = " or ".join(c.relative_to(path).as_posix() for c in paths.model_checkpoints)
        raise EvalError(f"{path}: no {names}; is this a run folder?")
    if path.is_file():
        paths = RunPaths(path.parent.parent)
        run_dir = paths.root if path.parent == paths.checkpoints and paths.config.is_file() else None
        return path, run_dir
    raise EvalError(f"{path}: no such run folder or checkpoint file")


def _model_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The network's weights from a LightningModule state dict (keys ``model.*``; a compiled module adds
    ``_orig_mod.``)."""
    out = {}
    for key, value in state.items():
        if not key.startswith("model."):
            continue
        out[key[len("model."):].replace("_orig_mod.", "")] = value
    return out


def _dtype(name: Union[str, torch.dtype, None]) -> torch.dtype | None:
    if name is None or isinstance(name, torch.dtype):
        return name
    table = {"float32": torch.float32, "fp32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16, "auto": None}
    if name not in table:
        raise EvalError(f"dtype {name!r}: expected one of {', '.join(table)}")
    return table[name]


def resolve_device(device: Union[str, torch.device, None], fallback: bool = False) -> torch.device:
    """``auto``/None -> cuda when available, else cpu; anything else as torch understands it.

    A CUDA device on a machine without one is an EvalError, or with ``fallback`` the CPU with a warning (lm-eval's
    CLI asks for ``cuda:0`` unless told otherwise, and its own models fall back the same way).
    """
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise EvalError(f"device {device!r}: not a torch device (cpu, cuda, cuda:1, auto)") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        if not fallback:
            raise EvalError(f"device {device!r}: CUDA is not available on this machine; use cpu")
        log.warning("device %s requested but CUDA is not available: running on the CPU", device)
        return torch.device("cpu")
    return resolved


def load_checkpoint(spec: Union[str, Path], device: Union[str, torch.device, None] = "cpu",
                    dtype: Union[str, torch.dtype, None] = None, device_fallback: bool = False) -> LoadedModel:
    """Load the model of a run folder or ``.ckpt`` file, in eval mode.

    Args:
        spec: a run folder (``final.ckpt`` preferred over ``last.ckpt``) or a checkpoint file.
        device: ``cpu``, ``cuda``, ``auto``...; ``device_fallback``: CPU instead of an error when CUDA is missing.
        dtype: parameter dtype (``float32``, ``bfloat16``, ``float64``); default: as stored (float32).

    Raises:
        EvalError: missing or unreadable files, or a BPE run without its tokenizer.
    """
    ckpt_path, run_dir = resolve_checkpoint(spec)
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means the file is unusable
        raise EvalError(f"{ckpt_path}: cannot read checkpoint ({type(exc).__name__}: {str(exc)[:120]})") from None
    section = (ckpt.get("hyper_parameters") or {}).get("model") if isinstance(ckpt, dict) else None
    if not isinstance(section, dict):
        raise EvalError(f"{ckpt_path}: no model config in hyper_parameters; not an aunet training checkpoint")
    try:
        config = model_config_from_dict(section)
    except ConfigError as exc:
        raise EvalError(f"{ckpt_path}: stored model config is invalid ({exc})") from None
    model = build_model(config)
    state = _model_state(ckpt.get("state_dict") or {})
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shapes that differ raise even with strict=False: weights of another model
        detail = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line), "")[:160]
        raise EvalError(f"{ckpt_path}: weights do not fit the model config ({detail})") from None
    if missing or unexpected:
        raise EvalError(f"{ckpt_path}: weights do not fit the model config (missing {list(missing)[:3]}, "
                        f"unexpected {list(unexpected)[:3]})")
    _check_recorded_weights(model, ckpt_path, run_dir)
    _check_finite_weights(model, ckpt_path)
    target = _dtype(dtype)
    where = resolve_device(device, fallback=device_fallback)
    model = model.to(device=where, dtype=target) if target else model.to(where)
    model.eval()
    tokenizer = _load_tokenizer(run_dir, ckpt_path, config) if family_of(config).needs_tokenizer else None
    return LoadedModel(model=model, config=config, tokenizer=tokenizer, run_dir=run_dir, checkpoint=ckpt_path)


def _check_recorded_weights(model: nn.Module, ckpt_path: Path, run_dir: Path | None) -> None:
    """A finished run's own checkpoint must hold the weights its summary recorded (``weights_sha256``): scores are
    written into the run folder under the run's name, so weights put there by mistake (another run's checkpoint
    copied over, a file restored from the wrong backup) would be reported as this run's. Checked on the model as
    loaded, before any dtype or device change."""
    if run_dir is None:
        return
    paths = RunPaths(run_dir)
    summary_path = paths.summary
    own = {c.resolve() for c in paths.model_checkpoints}
    if not summary_path.is_file() or ckpt_path.resolve() not in own:
        return
    recorded = read_summary(summary_path, "delete it and finish the run again with aunet train --resume")
    expected = recorded.weights_sha256
    if not isinstance(expected, str):
        raise EvalError(f"{summary_path}: no weights_sha256; finish the run again with aunet train --resume")
    actual = weights_sha256(model.state_dict())
    if actual != expected:
        raise EvalError(f"{ckpt_path}: weights differ from the run's record (sha256 {actual[:10]}, {summary_path.name}"
                        f" says {expected[:10]}): the file was replaced or belongs to another run; put the run's own "
                        "checkpoint back")


def _check_finite_weights(model: nn.Module, ckpt_path: Path) -> None:
    """Weights holding a NaN or infinity (a run that diverged, a checkpoint saved by another tool) cannot give a
    score: every score of them would be NaN, or an accuracy computed from NaN logits. Refused before any scoring."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if not bool(torch.isfinite(parameter).all()):
                raise EvalError(f"{ckpt_path}: weights are not finite (NaN or infinity in {name}: the run diverged); "
                                "no score is written; evaluate a checkpoint of a run that finished")


def _load_tokenizer(run_dir: Path | None, ckpt_path: Path, config: ModelConfig) -> object:
    folder = RunPaths(run_dir if run_dir is not None else ckpt_path.parent.parent).tokenizer
    if not folder.is_dir():
        raise EvalError(f"{ckpt_path}: {config.family} checkpoint without its run's tokenizer/ folder (looked in "
                        f"{folder})")
    try:
        tokenizer = BPETokenizer.load(folder)
    except DataError as exc:
        raise EvalError(str(exc)) from None
    if tokenizer.vocab_size > config.vocab_size:
        raise EvalError(f"{folder}: tokenizer has {tokenizer.vocab_size} ids but the model only {config.vocab_size}")
    return tokenizer
