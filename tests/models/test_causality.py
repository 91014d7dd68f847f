"""Perturbing bytes after position t must leave every logit at positions <= t unchanged (P2, P3, P5), for AU-Nets and
for learned chunking (its router, its EMA, padding at its caps)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import aunet.models.aunet as aunet_module
import aunet.models.chunking as chunking_module
from aunet.models import AUNet, HNet
from aunet.models.chunking import Router, start_probability
from aunet.models.hnet import HNetStats
from aunet.splitting import compute_levels
from tests.models.helpers import RULES, byte_batch, sample_texts, tiny_aunet, tiny_hnet

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


# --- learned chunking: the router, the EMA and padding at the caps are causal too ---------------------------------

DOC_START = 50  # a second document starts here in row 1 (BOS): forced to start a chunk, at every chunking step


def hnet_tokens(texts: list[bytes]) -> torch.Tensor:
    tokens, _ = byte_batch(texts, [], SEQ)
    tokens[1, DOC_START] = 256
    return tokens


def assert_causal_hnet(model: HNet, seed: int = 0) -> HNetStats:
    """Perturbing bytes after position t leaves every logit at positions <= t unchanged; return the stats of the
    unperturbed batch. The router decides from the state before and at each position, the next stage runs at the
    batch's largest chunk count (padding after the real chunks), and the EMA runs over chunks in order."""
    model = model.double().eval()
    texts = sample_texts(3, SEQ, seed)
    tokens = hnet_tokens(texts)
    with torch.no_grad():
        logits, stats = model(tokens, return_stats=True)
        for t in (0, 1, 7, 20, 41, 60, 94):
            tok2 = hnet_tokens(perturbed_after(texts, t, seed + t))
            assert torch.equal(tok2[:, : t + 1], tokens[:, : t + 1])
            logits2 = model(tok2)
            diff = (logits2[:, : t + 1] - logits[:, : t + 1]).abs().max().item()
            assert diff < 1e-5, f"position <= {t} changed by {diff:.3g} when later bytes changed"
            assert (logits2[:, t + 1 :] - logits[:, t + 1 :]).abs().max().item() > 1e-3
    return stats


@pytest.mark.parametrize("steps", [1, 2])
def test_learned_chunking_is_causal(steps):
    torch.manual_seed(steps)
    stats = assert_causal_hnet(HNet(tiny_hnet(steps, windows=[8] + [None] * steps)))
    for i in range(steps):  # every chunking step chose chunks, the document start among them
        assert (stats.selected[i] > 1).all()
        at_doc = stats.positions[i][1] == DOC_START
        assert stats.forced[i][1][at_doc].all() and stats.boundary[i][1][at_doc].all()
    assert DOC_START in stats.positions[steps - 1][1].tolist()


@pytest.mark.parametrize("steps", [1, 2])
def test_learned_chunking_is_causal_when_caps_truncate(steps):
    torch.manual_seed(10 + steps)
    stats = assert_causal_hnet(HNet(tiny_hnet(steps, caps=[SEQ, 8, 4][: steps + 1])))
    assert (stats.selected[0] > stats.kept[0]).any(), "the cap never truncated"
    assert stats.lengths[0] == 8


@pytest.mark.parametrize("steps", [1, 2])
def test_learned_chunking_is_causal_with_padding_at_deeper_stages(steps):
    torch.manual_seed(20 + steps)
    stats = assert_causal_hnet(HNet(tiny_hnet(steps)))
    for kept, length in zip(stats.kept, stats.lengths):
        assert (kept < length).any(), "no row was padded"
        assert length == int(kept.max())


def test_a_router_that_peeks_at_the_next_byte_is_caught(monkeypatch):
    """Deciding whether t starts a chunk from the states at t and t+1 (one step late) leaks the next byte."""

    def peeking(self, h, forced):
        q, k = self.q(h), self.k(h)
        ahead = start_probability(q[:, :-1], k[:, 1:])  # compares t with t+1 ...
        prob = torch.cat([ahead, ahead.new_ones(ahead.shape[0], 1)], dim=1)  # ... and files it under t
        return prob.masked_fill(forced, 1.0)

    monkeypatch.setattr(Router, "forward", peeking)
    torch.manual_seed(4)
    with pytest.raises(AssertionError, match="changed by"):
        assert_causal_hnet(HNet(tiny_hnet(1)))


@pytest.mark.parametrize("steps", [1, 2])
def test_an_ema_that_runs_backwards_is_caught(monkeypatch, steps):
    """Smoothing each chunk with the chunks after it (the scan in the wrong direction) leaks later chunks."""
    real = chunking_module.smooth

    def backwards(z, rate):
        return real(z.flip(1), rate.flip(1)).flip(1)

    monkeypatch.setattr(chunking_module, "smooth", backwards)
    torch.manual_seed(5)
    with pytest.raises(AssertionError, match="changed by"):
        assert_causal_hnet(HNet(tiny_hnet(steps)))
