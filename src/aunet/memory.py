"""Memory a model takes before its first training step, from its config alone (nothing is allocated).

Counted: fp32 weights, their gradients and AdamW's two moments (16 bytes per parameter), and the rotary tables
each stack of layers precomputes up to its stage's cap (cos and sin, ``[cap, head_dim]`` float32 each).
Activations come on top and depend on the batch; this is a floor, used to refuse a config that cannot fit at all
(a cap or a width with a few zeros too many) before anything is allocated. :func:`logits_bytes` is the floor of a
batch: the logits every forward pass materialises (a batch size with a few zeros too many, in training or in
evaluation). :func:`machine_memory` is what the machine has.
"""

from __future__ import annotations

import os

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


# Bytes per logit in the narrowest precision a forward pass uses (bf16): a floor whatever the precision.
LOGIT_BYTES = 2


def logits_bytes(config: ModelConfig, sequences: int, length: int | None = None) -> int:
    """Bytes of the logits of ``sequences`` sequences of ``length`` input positions (default: the training length,
    ``config.seq_len``) over the model's vocabulary: allocated by every forward pass, on top of
    :func:`static_bytes`. Activations of the layers come on top of this too."""
    return int(sequences) * int(length or config.seq_len) * config.vocab_size * LOGIT_BYTES


def machine_memory() -> int | None:
    """Bytes of physical memory of this machine, or None when the system does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
