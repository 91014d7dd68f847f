"""Memory a model takes before its first training step, from its config alone (nothing is allocated).

Counted: fp32 weights, their gradients and AdamW's two moments (16 bytes per parameter), and the rotary tables
each stack of layers precomputes up to its stage's cap (cos and sin, ``[cap, head_dim]`` float32 each).
Activations come on top and depend on the batch; this is a floor, used to refuse a config that cannot fit at all
(a cap or a width with a few zeros too many) before anything is allocated.
"""

from __future__ import annotations

from aunet.flops import flops_report
from aunet.models import ModelConfig, family_of

BYTES_PER_PARAMETER = 4 * 4  # weight, gradient, AdamW exp_avg and exp_avg_sq, fp32 each
ROTARY_BYTES = 2 * 4  # cos and sin tables, float32


def static_bytes(config: ModelConfig, shards: int = 1) -> int:
    """Bytes of weights, gradients, optimizer state (divided over ``shards`` processes for a sharded strategy)
    and rotary tables of ``config`` on one device."""
    report = flops_report(config)
    rotary = sum(n * cap * head_dim * ROTARY_BYTES for n, cap, head_dim in family_of(config).stacks())
    return report.params * BYTES_PER_PARAMETER // max(1, shards) + rotary
