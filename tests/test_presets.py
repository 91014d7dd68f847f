"""Every shipped preset loads and validates; the tiny ones build and run."""

from __future__ import annotations

import pytest
import torch

from aunet.flops import flops_report
from aunet.models import AUNetConfig, build_model, load_model_config
from aunet.presets import list_presets
from tests.models.helpers import byte_batch, sample_texts


def test_expected_presets_exist():
    names = set(list_presets())
    assert {"tiny-bpe", "tiny-aunet1", "tiny-aunet2", "tiny-aunet3", "tiny-aunet4"} <= names
    assert {"paper-bpe-1b", "paper-aunet2-1b", "paper-aunet3-1b", "paper-aunet4-1b", "ladder/bpe-1e19"} <= names
    assert sum(n.startswith("ladder/") for n in names) == 36  # 12 budgets x {bpe, aunet2, aunet3}


@pytest.mark.parametrize("name", list_presets())
def test_preset_loads(name):
    report = flops_report(load_model_config(name))
    assert report.params > 0 and report.flops_per_unit > 0


@pytest.mark.parametrize("name", [n for n in list_presets() if n.startswith("tiny-")])
def test_tiny_presets_run_on_cpu(name):
    cfg = load_model_config(name)
    model = build_model(cfg)
    if isinstance(cfg, AUNetConfig):
        tokens, levels = byte_batch(sample_texts(2, cfg.seq_len), cfg.splits, cfg.seq_len)
        logits = model(tokens, levels if cfg.n_stages > 1 else None)
    else:
        tokens = torch.randint(0, cfg.vocab_size, (2, cfg.seq_len))
        logits = model(tokens)
    assert logits.shape[:2] == tokens.shape and torch.isfinite(logits).all()
