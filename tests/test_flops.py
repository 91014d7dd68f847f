"""The FLOPs formula: the paper's figures, exact parameter counts, and agreement with torch's FLOP counter."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from aunet.flops import flops_report, hnet_flops, window_fraction
from aunet.models import AUNet, BPEConfig, BPETransformer, HNet, load_model_config
from aunet.models.transitions import Upsample
from tests.models.helpers import RULES, byte_batch, sample_texts, tiny_aunet, tiny_hnet


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def test_paper_aunet2_1b_flops_per_byte():
    # Paper Table 10: AU-Net-2 1B with caps 8192/1600 -> about 1.8e9 FLOPs per byte.
    report = flops_report(load_model_config("paper-aunet2-1b"))
    assert report.unit == "byte"
    assert rel(report.flops_per_unit, 1.8e9) < 0.05


def test_paper_bpe_1e19_flops_per_token_includes_the_head():
    # Paper Table 10: BPE at 1e19 (d 1024, 12 layers, FFN 2816, 2048 tokens, vocab 128,256) -> about 1.9e9 per token.
    report = flops_report(load_model_config("ladder/bpe-1e19"))
    assert report.unit == "token" and report.stages[0].ffn_dim == 2816
    assert rel(report.flops_per_unit, 1.9e9) < 0.05
    assert 0.40 < report.head_share < 0.45  # the 128K-vocabulary head is ~42% at this size


@pytest.mark.parametrize(
    "preset, expected",
    [("ladder/bpe-1e20", 5.1e9), ("ladder/bpe-1e22", 3.6e10), ("ladder/aunet2-1e19", 2.4e8),
     ("ladder/aunet2-1e20", 7.9e8), ("ladder/aunet2-1e22", 7.3e9)],
)
def test_scaling_ladder_rows_recomputed_from_table_10(preset, expected):
    # Values recomputed from the paper's Table 10 (bytes seen and realized FLOPs), so only to a few percent.
    assert rel(flops_report(load_model_config(preset)).flops_per_unit, expected) < 0.07


@pytest.mark.parametrize(
    "preset, params",
    [("paper-bpe-1b", 1.8e9), ("paper-aunet2-1b", 1.3e9), ("paper-aunet3-1b", 2.5e9), ("paper-aunet4-1b", 4.2e9),
     ("paper-bpe-7b", 7.5e9), ("paper-aunet2-7b", 7.9e9)],
)
def test_paper_parameter_counts(preset, params):
    assert rel(flops_report(load_model_config(preset)).params, params) < 0.04  # Table 2 prints two digits


def test_bpe_1b_embedding_parameters():
    report = flops_report(load_model_config("paper-bpe-1b"))
    assert rel(report.embedding_params + report.head_params, 525e6) < 0.01  # Table 2: 525M


def test_window_fraction():
    assert window_fraction(100, None) == 1.0
    assert window_fraction(100, 1000) == 1.0
    assert window_fraction(8192, 512) == pytest.approx(512 * (2 * 8192 - 512) / 8192**2)


def test_one_formula_for_both_families():
    """A one-stage AU-Net and a BPE model of the same shape over 258 symbols cost the same per unit."""
    aunet = tiny_aunet(1)
    bpe = BPEConfig(dim=aunet.dims[0], layers=aunet.layers[0], head_dim=aunet.head_dims[0], vocab_size=258,
                    seq_len=aunet.caps[0], ffn_multiple_of=aunet.ffn_multiple_of)
    assert flops_report(aunet).flops_per_unit == flops_report(bpe).flops_per_unit


def counted_flops(model, *inputs) -> dict[str, int]:
    """Matmul FLOPs of one forward + backward, by aten op, with attention forced onto the math kernel."""
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(*inputs).float().sum().backward()
    return {str(op).split(".")[1]: n for op, n in counter.get_flop_counts()["Global"].items()}


@pytest.mark.parametrize("stages", [1, 2, 3, 4])
def test_formula_matches_torch_flop_counter_aunet(stages, monkeypatch):
    # The transition term describes the static upsampling (GPUs, torch.compile); the CPU's grouped form is cheaper.
    monkeypatch.setattr(Upsample, "grouped_on_cpu", False)
    torch.manual_seed(0)
    cfg = tiny_aunet(stages, seq_len=96)
    tokens, levels = byte_batch(sample_texts(2, 96), RULES[: stages - 1], 96)
    counts = counted_flops(AUNet(cfg), tokens, levels if stages > 1 else None)
    report = flops_report(cfg)
    n_bytes = tokens.numel()
    # Linear layers + head (+ the pooling/upsampling projections, which the paper leaves out of its total).
    linear = (report.flops_per_unit - report.attention_flops_per_unit + report.transition_flops_per_unit) * n_bytes
    assert rel(counts["mm"], linear) < 0.15
    # The counter charges the full S x S score and value products; the paper's term charges the causal half.
    assert rel(counts["bmm"], 2 * report.attention_flops_per_unit * n_bytes) < 0.15


def test_grouped_upsampling_projects_each_byte_once(monkeypatch):
    """On CPU the grouped form spends one projection per fine position; the static form one per offset map per
    coarse position. Counted: the difference is exactly the upsampling matmuls' difference (forward + backward)."""
    torch.manual_seed(0)
    cfg = tiny_aunet(3, seq_len=96)
    model = AUNet(cfg)
    tokens, levels = byte_batch(sample_texts(2, 96), RULES[:2], 96)
    grouped = counted_flops(model, tokens, levels)["mm"]
    monkeypatch.setattr(Upsample, "grouped_on_cpu", False)
    static = counted_flops(model, tokens, levels)["mm"]
    batch = tokens.shape[0]
    expected = 0
    for i in range(2):  # transitions: fine stage i <- coarse stage i + 1
        fine, coarse = cfg.dims[i], cfg.dims[i + 1]
        fine_rows, coarse_rows = batch * cfg.caps[i], batch * cfg.caps[i + 1]
        # forward, grad of input, grad of weight: 3 matmuls of 2 * rows * in * out each
        expected += 3 * 2 * coarse * fine * (coarse_rows * cfg.n_offsets - fine_rows)
    assert static - grouped == expected


def test_formula_matches_torch_flop_counter_bpe():
    torch.manual_seed(0)
    cfg = BPEConfig(dim=32, layers=2, head_dim=8, vocab_size=300, seq_len=64, ffn_multiple_of=8)
    tokens = torch.randint(0, 300, (2, 64))
    counts = counted_flops(BPETransformer(cfg), tokens)
    report = flops_report(cfg)
    assert rel(counts["mm"], (report.flops_per_unit - report.attention_flops_per_unit) * tokens.numel()) < 0.15
    assert rel(counts["bmm"], 2 * report.attention_flops_per_unit * tokens.numel()) < 0.15


@pytest.mark.parametrize("steps", [1, 2])
def test_formula_at_realized_lengths_matches_torch_flop_counter_hnet(steps):
    """Learned chunking, charged at the lengths its deeper stages ran at: the counter's matmuls are the stages, the
    head, the transitions and the router's maps; its batched matmuls are attention (full S x S, twice the causal
    term) and the EMA's ``[S', S']`` product."""
    torch.manual_seed(0)
    cfg = tiny_hnet(steps, caps=[96, 40, 20][: steps + 1])
    model = HNet(cfg)
    tokens, _ = byte_batch(sample_texts(2, 96), [], 96)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        logits, stats = model(tokens, return_stats=True)
        logits.float().sum().backward()
    counts = {str(op).split(".")[1]: n for op, n in counter.get_flop_counts()["Global"].items()}
    lengths = [96, *stats.lengths]
    report = hnet_flops(cfg, lengths)
    sequences, per_byte = tokens.shape[0], tokens.numel()
    router_maps = sum(6 * 2 * cfg.dims[i] ** 2 * lengths[i] for i in range(steps)) * sequences
    ema = sum(6 * lengths[i + 1] ** 2 * cfg.dims[i + 1] for i in range(steps)) * sequences
    stages = report.flops_per_unit - report.attention_flops_per_unit - report.routing_flops_per_unit
    assert rel(counts["mm"], (stages + report.transition_flops_per_unit) * per_byte + router_maps) < 0.01
    assert rel(counts["bmm"], 2 * report.attention_flops_per_unit * per_byte + ema) < 0.01
    # What the routing term adds beyond those matmuls (cosine, confidence, ratio loss, building the EMA weights)
    # is elementwise work, a small part of it.
    assert report.routing_flops_per_unit * per_byte > router_maps + ema
    assert report.routing_flops_per_unit * per_byte < 1.25 * (router_maps + ema)
