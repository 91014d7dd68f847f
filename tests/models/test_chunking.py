"""The pieces of learned chunking: router, EMA (parallel form against its recurrence), confidence, ratio loss; and the
model built from them (shapes, stats, gradients, the family's records of a step)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aunet.flops import flops_report, hnet_flops
from aunet.models import HNet, build_model, family_of
from aunet.models.chunking import Router, confidence_scale, ratio_loss, smooth, smooth_step, start_probability
from aunet.splitting import compute_levels
from tests.models.helpers import byte_batch, sample_texts, tiny_hnet


def recurrence(z: torch.Tensor, rate: torch.Tensor) -> torch.Tensor:
    out, previous = [], None
    for k in range(z.shape[1]):
        previous = smooth_step(previous, z[:, k], rate[:, k : k + 1])
        out.append(previous)
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("seed", range(4))
def test_the_parallel_ema_equals_its_recurrence_with_resets_anywhere(seed):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(3, 17, 5, generator=g, dtype=torch.float64)
    rate = torch.rand(3, 17, generator=g, dtype=torch.float64)
    rate[:, 0] = 1.0
    rate[rate > 0.8] = 1.0  # forced chunks (document starts, padding): a reset
    rate[1, 5:9] = 1e-6  # near-zero rates: long products that underflow nowhere
    assert (smooth(z, rate) - recurrence(z, rate)).abs().max().item() < 1e-12


def test_a_reset_cuts_the_ema_exactly_and_gradients_stay_finite():
    z = torch.randn(1, 6, 4, dtype=torch.float64, requires_grad=True)
    p = torch.tensor([[1.0, 0.3, 0.6, 1.0, 0.2, 0.9]], dtype=torch.float64, requires_grad=True)
    rate = torch.where(torch.tensor([[True, False, False, True, False, False]]), torch.ones_like(p), p)
    out = smooth(z, rate)
    # After the reset at chunk 3, nothing of chunks 0..2 remains: not approximately, exactly.
    jac = torch.autograd.grad(out[0, 5].sum(), z, retain_graph=True)[0]
    assert torch.count_nonzero(jac[0, :3]) == 0 and torch.count_nonzero(jac[0, 3:]) > 0
    out.square().sum().backward()
    assert torch.isfinite(z.grad).all() and torch.isfinite(p.grad).all()
    assert p.grad[0, 0] == 0 and p.grad[0, 3] == 0 and torch.count_nonzero(p.grad[0, [1, 2, 4, 5]]) == 4


def test_the_router_starts_as_a_cosine_of_the_states_and_forces_its_first_positions():
    torch.manual_seed(0)
    router = Router(8)
    assert torch.equal(router.q.weight, torch.eye(8)) and torch.equal(router.k.weight, torch.eye(8))
    h = torch.randn(2, 5, 8)
    h[0, 2] = h[0, 1]  # the same state twice: no new chunk
    h[0, 3] = -h[0, 2]  # the opposite state: surely a new chunk
    forced = torch.zeros(2, 5, dtype=torch.bool)
    forced[:, 0] = True
    forced[1, 4] = True
    with torch.no_grad():
        prob = router(h, forced)
    cos = torch.nn.functional.cosine_similarity(h[:, :-1], h[:, 1:], dim=-1)
    assert torch.allclose(prob[0, 1:], (1 - cos[0]) / 2)
    assert prob[0, 2].item() == pytest.approx(0.0, abs=1e-6) and prob[0, 3].item() == pytest.approx(1.0)
    assert prob[:, 0].tolist() == [1.0, 1.0] and prob[1, 4] == 1.0
    assert start_probability(h[0, 1], h[0, 2]).item() == pytest.approx(0.0, abs=1e-6)


def test_the_confidence_is_one_forward_and_routes_the_gradient_to_the_probability():
    p = torch.tensor([0.9, 0.2, 0.6], requires_grad=True)
    boundary = p.detach() >= 0.5
    scale = confidence_scale(p, boundary)
    assert torch.equal(scale, torch.ones(3))  # exactly: generation leaves it out
    scale.sum().backward()
    assert p.grad.tolist() == [1.0, -1.0, 1.0]  # d/dp of p at a start, of 1 - p elsewhere


@pytest.mark.parametrize("target", [2.0, 4.6])
def test_the_ratio_loss_is_one_at_the_target_share_and_pulls_toward_it(target):
    real = torch.ones(1, 1000, dtype=torch.bool)

    def loss_at(share: float) -> tuple[float, float]:
        n = int(round(share * 1000))
        boundary = torch.zeros(1, 1000, dtype=torch.bool)
        boundary[0, :n] = True
        prob = torch.full((1, 1000), share, requires_grad=True)
        loss = ratio_loss(prob, boundary, real, target)
        loss.backward()
        return loss.item(), prob.grad.sum().item()

    at_target, grad = loss_at(1 / target)
    assert at_target == pytest.approx(1.0, abs=2e-3) and grad == pytest.approx(0.0, abs=2e-2)
    assert loss_at(0.6)[1] > 0 and loss_at(0.05)[1] < 0  # too many chunks: lower p; too few: raise it
    padded = torch.zeros(1, 1000, dtype=torch.bool)
    padded[0, :10] = True  # only real positions count
    assert ratio_loss(torch.ones(1, 1000), torch.ones(1, 1000, dtype=torch.bool), padded, target).item() == \
        pytest.approx(target)


@pytest.mark.parametrize("steps", [1, 2])
def test_forward_shapes_stats_gradients_and_the_family_records(steps):
    torch.manual_seed(steps)
    cfg = tiny_hnet(steps, caps=[96, 40, 20][: steps + 1])
    model = HNet(cfg)
    texts = sample_texts(3, 97)
    tokens, levels = byte_batch(texts, ["word@1"], 97)
    batch = {"tokens": tokens, "levels": levels}
    family = family_of(cfg)
    logits, targets, stats = family.forward_batch(model, batch, return_stats=True)
    assert logits.shape == (3, 96, 258) and targets.shape == (3, 96)
    assert len(stats.lengths) == steps and all(1 <= n <= c for n, c in zip(stats.lengths, cfg.caps[1:]))
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten()) + family.auxiliary_loss(stats)
    loss.backward()
    for router in model.routers:  # the router learns from the loss (confidence, EMA rates, ratio loss)
        assert router.q.weight.grad.abs().sum() > 0 and router.k.weight.grad.abs().sum() > 0
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert family.realized_flops(stats) == pytest.approx(
        hnet_flops(cfg, [96, *stats.lengths]).flops_per_unit * 96 * 3)
    metrics = family.step_metrics(batch, stats)
    for n in range(1, steps + 1):
        assert metrics[f"stage_length_{n}"] == stats.lengths[n - 1]
        assert float(metrics[f"bytes_per_chunk_{n}"]) == pytest.approx(3 * 96 / stats.selected[n - 1].sum().item())
        assert 0 <= float(metrics[f"word_start_share_{n}"]) <= 1 and 0 <= float(metrics[f"word_recall_{n}"]) <= 1
    # The word-start share, recomputed from the byte positions of the learned starts of the first step.
    words = [set(np.flatnonzero(compute_levels(t[:95], ["word@1"]) > 0) + 1) for t in texts]
    learned = [set(p[b & ~f].tolist()) for p, b, f in zip(stats.positions[0], stats.boundary[0], stats.forced[0])]
    hits = sum(len(w & s) for w, s in zip(words, learned))
    assert float(metrics["word_start_share_1"]) == pytest.approx(hits / sum(map(len, learned)))
    after = sum(len({p + 1 for p in w} & s) for w, s in zip(words, learned))
    assert float(metrics["word_next_share_1"]) == pytest.approx(after / sum(map(len, learned)))


def test_flops_count_every_parameter_and_charge_realized_lengths():
    for steps in (1, 2):
        cfg = tiny_hnet(steps, caps=[96, 40, 20][: steps + 1])
        report = flops_report(cfg)
        assert report.params == sum(p.numel() for p in build_model(cfg).parameters())
        planned = cfg.planned_lengths()
        assert planned == [96, 32, 16][: steps + 1] and hnet_flops(cfg, planned) == report
        longer = hnet_flops(cfg, [96, *cfg.caps[1:]])
        assert longer.flops_per_unit > report.flops_per_unit and longer.routing_flops_per_unit > 0
        assert report.routing_flops_per_unit < 0.2 * report.flops_per_unit
