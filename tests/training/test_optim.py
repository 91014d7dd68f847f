import torch

from aunet.training.optim import adamw


def test_fused_unless_lightning_mixed_precision():
    params = [torch.nn.Parameter(torch.zeros(3))]
    assert adamw(params, "32-true", lr=1e-3).defaults["fused"] is True
    for precision in ("bf16-mixed", "16-mixed"):  # Lightning's AMP plugins refuse clipping with fused optimizers
        assert not adamw(params, precision, lr=1e-3).defaults["fused"]


def test_fused_step_is_the_same_adamw():
    torch.manual_seed(0)
    start = torch.randn(5, 4)
    grads = [torch.randn(5, 4) for _ in range(3)]
    finals = []
    for precision in ("32-true", "bf16-mixed"):
        p = torch.nn.Parameter(start.clone())
        opt = adamw([p], precision, lr=1e-2, weight_decay=0.1)
        for g in grads:
            p.grad = g.clone()
            opt.step()
        finals.append(p.detach())
    assert torch.allclose(finals[0], finals[1], atol=1e-6)
