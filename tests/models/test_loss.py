"""The training loss: float32 cross-entropy over scored targets; the compiled form equals the eager one."""

from __future__ import annotations

import torch

from aunet.models.loss import IGNORE, compiled_next_unit_loss, next_unit_loss


def test_loss_ignores_unscored_targets_and_computes_in_float32():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11).bfloat16()
    targets = torch.randint(0, 11, (2, 5))
    targets[0, :2] = IGNORE
    loss = next_unit_loss(logits, targets)
    kept = targets.flatten() != IGNORE
    expected = -torch.log_softmax(logits.float().flatten(0, 1)[kept], -1).gather(1, targets.flatten()[kept, None])
    assert loss.dtype == torch.float32 and torch.allclose(loss, expected.mean(), atol=1e-6)


def test_compiled_loss_equals_eager_in_value_and_gradient():
    torch.manual_seed(0)
    targets = torch.randint(0, 300, (2, 7))
    targets[1, -3:] = IGNORE
    results = []
    for fn in (next_unit_loss, compiled_next_unit_loss()):
        logits = torch.randn(2, 7, 300, generator=torch.Generator().manual_seed(1)).bfloat16().requires_grad_(True)
        loss = fn(logits, targets)
        loss.backward()
        results.append((loss.detach(), logits.grad))
    (eager, eager_grad), (compiled, compiled_grad) = results
    assert torch.allclose(eager, compiled, atol=1e-5)
    assert compiled_grad.dtype == torch.bfloat16
    assert torch.allclose(eager_grad.float(), compiled_grad.float(), atol=1e-3)
    assert compiled_grad[1, -3:].abs().max() == 0  # unscored targets get no gradient
