"""Perturbing bytes after position t must leave every logit at positions <= t unchanged (P2, P3, P5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import aunet.models.aunet as aunet_module
from aunet.models import AUNet
from aunet.splitting import compute_levels
from tests.models.helpers import RULES, byte_batch, sample_texts, tiny_aunet

SEQ = 96


def perturbed_after(texts: list[bytes], t: int, seed: int) -> list[bytes]:
    """Same bytes up to position t (token t is byte t-1 after BOS), fresh real text after it."""
    rng = np.random.default_rng(seed)
    other = sample_texts(len(texts), SEQ, seed=seed + 100)
    out = []
    for text, alt in zip(texts, other):
        keep = text[:t]
        tail = bytes(rng.permutation(np.frombuffer(alt, dtype=np.uint8)))  # same byte mix, new boundaries
        out.append((keep + tail)[:SEQ])
    return out


def assert_causal(model: AUNet, rules: list[str], seed: int = 0) -> dict:
    """Check causality at several cut points; return stats of the unperturbed batch for the caller's checks."""
    model = model.double().eval()
    texts = sample_texts(3, SEQ, seed)
    tokens, levels = byte_batch(texts, rules, SEQ)
    with torch.no_grad():
        logits, stats = model(tokens, levels, return_stats=True)
        for t in (0, 1, 7, 20, 41, 60, 94):
            other = perturbed_after(texts, t, seed + t)
            tok2, lv2 = byte_batch(other, rules, SEQ)
            assert torch.equal(tok2[:, : t + 1], tokens[:, : t + 1])
            assert torch.equal(lv2[:, : t + 1], levels[:, : t + 1])  # append-stable levels
            logits2 = model(tok2, lv2)
            diff = (logits2[:, : t + 1] - logits[:, : t + 1]).abs().max().item()
            assert diff < 1e-5, f"position <= {t} changed by {diff:.3g} when later bytes changed"
            # The perturbation is real: later logits do move.
            assert (logits2[:, t + 1 :] - logits[:, t + 1 :]).abs().max().item() > 1e-3
    return {"selected": [s.tolist() for s in stats.selected], "kept": [k.tolist() for k in stats.kept]}


@pytest.mark.parametrize("stages", [1, 2, 3, 4])
@pytest.mark.parametrize("upsampling", ["multilinear", "repeat", "simple"])
def test_causal_for_every_depth_and_upsampling(stages, upsampling):
    torch.manual_seed(stages)
    cfg = tiny_aunet(stages, upsampling=upsampling, windows=[8] + [None] * (stages - 1))
    assert_causal(AUNet(cfg), RULES[: stages - 1])


@pytest.mark.parametrize("stages", [2, 3, 4])
@pytest.mark.parametrize("upsampling", ["multilinear", "repeat", "simple"])
def test_causal_when_caps_truncate(stages, upsampling):
    torch.manual_seed(0)
    caps = [SEQ, 6, 4, 3][:stages]
    stats = assert_causal(AUNet(tiny_aunet(stages, caps=caps, upsampling=upsampling)), RULES[: stages - 1])
    assert any(s > k for s, k in zip(stats["selected"][0], stats["kept"][0])), "the cap never truncated"


@pytest.mark.parametrize("stages", [2, 3, 4])
@pytest.mark.parametrize("upsampling", ["multilinear", "repeat", "simple"])
def test_causal_with_padding_at_deeper_stages(stages, upsampling):
    torch.manual_seed(1)
    caps = [SEQ, SEQ, SEQ, SEQ][:stages]
    stats = assert_causal(AUNet(tiny_aunet(stages, caps=caps, upsampling=upsampling)), RULES[: stages - 1])
    assert all(k < SEQ for k in stats["kept"][-1]), "no padding at the deepest stage"


def test_position_zero_is_forced_to_the_top_level():
    """Even if the caller gives position 0 level 0, the model pools it at every stage (P3)."""
    torch.manual_seed(2)
    model = AUNet(tiny_aunet(3)).double().eval()
    tokens, levels = byte_batch(sample_texts(2, SEQ), RULES[:2], SEQ)
    zeroed = levels.clone()
    zeroed[:, 0] = 0
    with torch.no_grad():
        assert torch.equal(model(tokens, levels), model(tokens, zeroed))


def test_a_leaking_upsampler_is_caught(monkeypatch):
    """The check above would fail if upsampling read the *next* boundary's vector (the classic leak)."""
    real = aunet_module.segment_index

    def next_segment(mask):
        segment, offset = real(mask)
        return (segment + 1).clamp(max=int(mask.sum(dim=1).min()) - 1), offset

    monkeypatch.setattr(aunet_module, "segment_index", next_segment)
    torch.manual_seed(3)
    with pytest.raises(AssertionError, match="changed by"):
        assert_causal(AUNet(tiny_aunet(2)), RULES[:1])


def test_levels_from_whole_documents_equal_prefix_levels_used_in_generation():
    text = sample_texts(1, SEQ)[0]
    full = compute_levels(text, RULES)
    assert all(np.array_equal(compute_levels(text[:k], RULES), full[:k]) for k in range(len(text)))
