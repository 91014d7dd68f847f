"""The precision and optimizer of a training step, in training runs and in ``aunet bench`` alike."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def default_precision(accelerator: str) -> str:
    """Lightning precision when a run names none: ``bf16-mixed`` on a GPU (``gpu``, ``cuda``, or ``auto`` with one
    present), ``32-true`` otherwise."""
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    return "bf16-mixed" if on_gpu else "32-true"


def adamw(parameters: Iterable[torch.nn.Parameter], precision: str, lr: float, betas: tuple[float, float] = (0.9, 0.95),
          eps: float = 1e-8, weight_decay: float = 0.1) -> torch.optim.AdamW:
    """AdamW, fused into one kernel over all parameters unless ``precision`` is a Lightning mixed-precision setting.

    The fused step is one kernel instead of a loop of small ones per parameter, which matters for the many small
    tensors of the CPU presets. Lightning refuses gradient clipping with a fused optimizer under its mixed-precision
    plugins (``bf16-mixed``, ``16-mixed``), so those keep the loop; the update is the same AdamW either way.
    """
    return torch.optim.AdamW(parameters, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                             fused=not precision.endswith("-mixed"))
