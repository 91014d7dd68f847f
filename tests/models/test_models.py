import pytest
import torch

from aunet.flops import flops_report
from aunet.models import AUNet, BPEConfig, BPETransformer, build_model
from tests.models.helpers import RULES, byte_batch, sample_texts, tiny_aunet


@pytest.mark.parametrize("stages", [1, 2, 3, 4])
def test_forward_shapes_stats_and_gradients(stages):
    torch.manual_seed(0)
    cfg = tiny_aunet(stages)
    model = AUNet(cfg)
    tokens, levels = byte_batch(sample_texts(2, 96), RULES[: stages - 1], 96)
    logits, stats = model(tokens, levels if stages > 1 else None, return_stats=True)
    assert logits.shape == (2, 96, 258) and logits.dtype == torch.float32
    assert len(stats.kept) == stages - 1
    for i, kept in enumerate(stats.kept):
        assert (kept <= cfg.caps[i + 1]).all() and (kept >= 1).all()
    torch.nn.functional.cross_entropy(logits.reshape(-1, 258), tokens.roll(-1, 1).reshape(-1)).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"parameters without gradient: {missing}"


def test_one_stage_model_is_a_byte_transformer_and_needs_no_levels():
    model = AUNet(tiny_aunet(1))
    assert len(model.encoders) == len(model.decoders) == 0
    assert model(torch.randint(0, 258, (1, 10))).shape == (1, 10, 258)


def test_multi_stage_model_requires_levels():
    with pytest.raises(ValueError, match="needs levels"):
        AUNet(tiny_aunet(2))(torch.randint(0, 258, (1, 10)))


def test_uncapped_forward_equals_capped_when_caps_do_not_bind():
    torch.manual_seed(0)
    model = AUNet(tiny_aunet(3, caps=[96, 96, 96])).double().eval()
    tokens, levels = byte_batch(sample_texts(2, 96), RULES[:2], 96)
    with torch.no_grad():
        capped = model(tokens, levels)
        uncapped, stats = model(tokens, levels, use_caps=False, return_stats=True)
    assert torch.allclose(capped, uncapped, atol=1e-10)
    assert [k.tolist() for k in stats.kept] == [s.tolist() for s in stats.selected]


def test_shorter_inputs_than_the_training_length_work():
    model = AUNet(tiny_aunet(3))
    tokens, levels = byte_batch(sample_texts(1, 30), RULES[:2], 30)
    assert model(tokens, levels).shape == (1, 30, 258)


def test_bpe_transformer_shapes_and_causality():
    torch.manual_seed(0)
    cfg = BPEConfig(dim=32, layers=2, head_dim=8, vocab_size=100, seq_len=24, window=6, ffn_multiple_of=8)
    model = BPETransformer(cfg).double().eval()
    tokens = torch.randint(0, 100, (2, 24))
    other = tokens.clone()
    other[:, 10:] = torch.randint(0, 100, (2, 14))
    with torch.no_grad():
        a, b = model(tokens), model(other)
    assert a.shape == (2, 24, 100)
    assert (a[:, :10] - b[:, :10]).abs().max() < 1e-10
    assert (a[:, 10:] - b[:, 10:]).abs().max() > 1e-3


@pytest.mark.parametrize(
    "cfg",
    [
        tiny_aunet(1),
        tiny_aunet(2, upsampling="repeat"),
        tiny_aunet(3, upsampling="simple"),
        tiny_aunet(4),
        BPEConfig(dim=32, layers=3, head_dim=16, vocab_size=500, seq_len=64, ffn_dim=40),
    ],
    ids=["aunet1", "aunet2-repeat", "aunet3-simple", "aunet4", "bpe"],
)
def test_analytic_parameter_count_matches_the_module(cfg):
    model = build_model(cfg)
    report = flops_report(cfg)
    assert report.params == sum(p.numel() for p in model.parameters())
    assert report.embedding_params == model.embed.weight.numel()
    assert report.head_params == model.head.weight.numel()


def test_initialisation_follows_fan_in():
    torch.manual_seed(0)
    model = AUNet(tiny_aunet(2))
    w = model.trunk.layers[0].ffn.w2.weight  # fan_in = hidden size
    std = w.shape[1] ** -0.5
    assert w.abs().max() <= 3 * std + 1e-6
    assert 0.7 * std < w.std().item() < 1.2 * std


@pytest.mark.gpu
def test_training_forward_and_backward_never_synchronise_with_the_host():
    torch.manual_seed(0)
    model = AUNet(tiny_aunet(4)).cuda()
    tokens, levels = byte_batch(sample_texts(2, 96), RULES, 96)
    tokens, levels = tokens.cuda(), levels.cuda()
    model(tokens, levels).sum().backward()  # warm-up: lazy initialisation may synchronise once
    torch.cuda.set_sync_debug_mode("error")
    try:
        model(tokens, levels).sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_compiled_aunet_is_one_static_graph_equal_to_eager():
    # fullgraph=True fails on any graph break, so this proves the training forward has no host synchronisation or
    # data-dependent shape under torch.compile (the CPU-only grouped upsampling must not be taken there).
    torch.manual_seed(0)
    cfg = tiny_aunet(3, windows=[16, None, None])
    model = AUNet(cfg)
    tokens, levels = byte_batch(sample_texts(2, 96), RULES[:2], 96)

    def loss_and_grads(m):
        logits = m(tokens, levels)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 258), tokens.roll(-1, 1).reshape(-1))
        return loss, torch.autograd.grad(loss, list(model.parameters()))

    eager_loss, eager_grads = loss_and_grads(model)
    compiled_loss, compiled_grads = loss_and_grads(torch.compile(model, fullgraph=True, dynamic=False))
    assert torch.allclose(eager_loss, compiled_loss, atol=1e-5)
    for a, b in zip(eager_grads, compiled_grads):
        assert torch.allclose(a, b, atol=1e-5)
