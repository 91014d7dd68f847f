"""Learning-rate schedule: linear warmup, then cosine decay to a floor (the paper's recipe)."""

from __future__ import annotations

import math


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, min_ratio: float) -> float:
    """Multiplier of the peak LR at optimizer step ``step`` (0-based).

    Rises linearly from ``1 / (warmup_steps + 1)`` to 1 over the warmup, then follows a half cosine from 1 down to
    ``min_ratio`` at the last step; stays at ``min_ratio`` beyond it.
    """
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    decay_steps = max(1, total_steps - 1 - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
