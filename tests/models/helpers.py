"""Microscopic model configs and inputs built from real split rules."""

from __future__ import annotations

import numpy as np
import torch

from aunet.models import AUNetConfig, HNetConfig
from aunet.splitting import compute_levels

SAMPLE = (
    "The cat sat on the mat. It was 12345 days, ok?\nThen a dog, two birds and the rest of the zoo came along — "
    "naïve as ever — to see what the fuss was about. 中文 and emoji 😀 too; all   spaced\tout.\n\n"
)
RULES = ["word@1", "word@2", "word@4"]


def tiny_aunet(stages: int, *, caps: list[int] | None = None, upsampling: str = "multilinear",
               windows: list[int | None] | None = None, seq_len: int = 96) -> AUNetConfig:
    """A few-thousand-parameter AU-Net of ``stages`` stages over ``seq_len`` bytes."""
    dims = [16, 24, 32, 40][:stages]
    default_caps = [seq_len, seq_len // 3, seq_len // 5, seq_len // 8][:stages]
    return AUNetConfig(
        dims=dims,
        layers=[1] * stages,
        head_dims=[8] * stages,
        caps=caps or default_caps,
        splits=RULES[: stages - 1],
        windows=windows,
        ffn_multiple_of=8,
        upsampling=upsampling,
    )


def tiny_hnet(chunking_steps: int, *, caps: list[int] | None = None, windows: list[int | None] | None = None,
              seq_len: int = 96) -> HNetConfig:
    """A few-thousand-parameter learned-chunking model of 1 or 2 chunking steps over ``seq_len`` bytes (caps that
    never bind unless given)."""
    stages = chunking_steps + 1
    return HNetConfig(
        dims=[16, 24, 32][:stages],
        layers=[1] * stages,
        head_dims=[8] * stages,
        caps=caps or [seq_len] * stages,
        target_ratios=[3.0, 2.0][:chunking_steps],
        windows=windows,
        ffn_multiple_of=8,
    )


def byte_batch(texts: list[bytes], rules: list[str], seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, seq_len]`` tokens (BOS + bytes) and levels, from real split rules (BOS gets the top level)."""
    tokens, levels = [], []
    for text in texts:
        body = text[: seq_len - 1]
        lv = compute_levels(body, rules) if rules else np.zeros(len(body), dtype=np.uint8)
        tokens.append(torch.tensor([256, *body]))
        levels.append(torch.tensor([len(rules), *lv.tolist()]))
    return torch.stack(tokens), torch.stack(levels)


def sample_texts(batch: int, seq_len: int, seed: int = 0) -> list[bytes]:
    """Windows of the sample text at different offsets, each at least ``seq_len`` bytes."""
    data = (SAMPLE * 4).encode()
    rng = np.random.default_rng(seed)
    return [data[o : o + seq_len] for o in rng.integers(0, len(data) - seq_len, size=batch)]
