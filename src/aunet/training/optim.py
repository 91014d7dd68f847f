"""The optimizer every training step uses, in training runs and in ``aunet bench`` alike."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def adamw(parameters: Iterable[torch.nn.Parameter], precision: str, lr: float, betas: tuple[float, float] = (0.9, 0.95),
          eps: float = 1e-8, weight_decay: float = 0.1) -> torch.optim.AdamW:
    """AdamW, fused into one kernel over all parameters unless ``precision`` is a Lightning mixed-precision setting.

    The fused step is one kernel instead of a loop of small ones per parameter, which matters for the many small
    tensors of the CPU presets. Lightning refuses gradient clipping with a fused optimizer under its mixed-precision plugins
    (``bf16-mixed``, ``16-mixed``), so those keep the loop; the update is the same AdamW either way.
    """
    return torch.optim.AdamW(parameters, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                             fused=not precision.endswith("-mixed"))
