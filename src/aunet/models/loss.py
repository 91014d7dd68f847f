"""The training loss of both families: mean next-unit cross-entropy in float32 over every scored target.

:func:`compiled_next_unit_loss` is the same function through ``torch.compile``: the compiler fuses the float32 upcast
into the log-sum-exp reductions and the gradient, so the ``[B, S, V]`` logits are never copied to float32. Eagerly,
the upcast, the log-softmax and its backward each make a full pass over float32 logits: with BPE's 128k-token
vocabulary that was about a third of a training step's GPU time on an H200 (BENCHMARKS.md, GPU check).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

IGNORE = -100  # targets with this value are not scored (padding, masked positions)


def next_unit_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """``logits`` ``[B, S, V]`` (any float dtype), ``targets`` ``[B, S]`` long (``IGNORE`` where unscored) -> the
    mean cross-entropy over scored targets, computed in float32, as a 0-d tensor."""
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE)


@lru_cache(maxsize=1)
def compiled_next_unit_loss() -> Callable[[Tensor, Tensor], Tensor]:
    """:func:`next_unit_loss` through ``torch.compile`` (static shapes; one compiled function per process)."""
    return torch.compile(next_unit_loss, dynamic=False, fullgraph=True)
