"""The memory floor used to refuse a model that cannot fit counts exactly what the built model allocates before its
first step: its parameters (x4 for gradients and AdamW's two moments) and its rotary tables."""

from __future__ import annotations

import pytest

from aunet.memory import BYTES_PER_PARAMETER, static_bytes
from aunet.models import build_model, model_config_from_dict
from tests.training.helpers import TINY_AUNET, TINY_BPE

THREE_STAGES = dict(family="aunet", dims=[16, 32, 48], layers=[1, 2, 1], head_dims=[8, 16, 16], caps=[96, 40, 12],
                    splits=["word@1", "word@2"], ffn_multiple_of=16)


@pytest.mark.parametrize("section", [TINY_AUNET, dict(TINY_BPE, layers=3), THREE_STAGES],
                         ids=["aunet2", "bpe", "aunet3"])
def test_static_bytes_match_the_built_model(section):
    config = model_config_from_dict(section)
    model = build_model(config)
    parameters = sum(p.numel() * p.element_size() for p in model.parameters()) // 4 * BYTES_PER_PARAMETER
    rotary = sum(b.numel() * b.element_size() for name, b in model.named_buffers() if "rope" in name)
    assert rotary > 0
    assert static_bytes(config) == parameters + rotary


def test_a_sharded_strategy_divides_the_parameter_state_not_the_tables():
    config = model_config_from_dict(TINY_AUNET)
    whole, halves = static_bytes(config), static_bytes(config, shards=2)
    assert whole > halves > whole / 2
