"""Log-likelihoods of the adapter: exact continuation offsets, truncation, rolling windows, BPE seams (P14)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from aunet.evaluation.checkpoint import LoadedModel
from aunet.evaluation.generation import generate
from aunet.evaluation.scoring import Row, Scorer, is_continuation_byte
from aunet.models import AUNetConfig, HNet, HNetConfig
from aunet.splitting import compute_levels


class UnigramBytes(nn.Module):
    """A byte model with known likelihoods: the same distribution at every position, whatever the context.
    It records the shapes it was called with, to check batching."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("table", torch.randn(258, generator=gen, dtype=torch.float64) * 2.0)
        self.dummy = nn.Parameter(torch.zeros(1))  # gives the module a device
        self.calls: list[tuple[int, int]] = []

    def logprob(self, byte: int) -> float:
        return float(self.table.log_softmax(0)[byte])

    def forward(self, tokens: torch.Tensor, levels: torch.Tensor | None = None, use_caps: bool = True):
        assert not use_caps, "evaluation must keep every boundary"
        self.calls.append(tuple(tokens.shape))
        return self.table.expand(*tokens.shape, 258)


def unigram_loaded(max_len: int = 4096, stages: int = 1) -> LoadedModel:
    config = AUNetConfig(dims=[8] * stages, layers=[1] * stages, head_dims=[8] * stages,
                         caps=[max_len] + [max_len // 4] * (stages - 1), splits=["word@1", "word@2"][: stages - 1])
    return LoadedModel(UnigramBytes(), config)


def test_continuation_bytes_exactly(tmp_path):
    loaded = unigram_loaded()
    model = loaded.model
    pairs = [("The cat", " sat"), ("", "Hello"), ("naïve ", "café"), ("ctx ", " ")]
    got = Scorer(loaded, batch_size=3).loglikelihood(pairs)
    for (ctx, cont), (ll, _) in zip(pairs, got):
        assert ll == pytest.approx(sum(model.logprob(b) for b in cont.encode()), abs=1e-9)
    assert {shape[0] for shape in model.calls} <= {3, 1}  # batched: 4 requests in batches of 3 and 1


def test_truncation_keeps_bos_and_a_character_boundary():
    loaded = unigram_loaded(max_len=16, stages=3)
    scorer = Scorer(loaded)
    context = "ééééééé abc"  # 7 two-byte characters, then ASCII
    row = scorer.pair_row(context, " xyz")
    assert len(row.units) <= 16 and not is_continuation_byte(row.units[0])
    assert bytes(row.units[row.score_from :]) == b" xyz"
    tokens, levels = scorer.inputs([row])
    assert tokens[0, 0].item() == 256 and levels[0, 0].item() == 2  # BOS at position 0, top level (P3)
    body = bytes(row.units[:-1])
    assert levels[0, 1:].tolist() == compute_levels(body, ["word@1", "word@2"]).tolist()


def test_rolling_scores_every_byte_exactly_once():
    loaded = unigram_loaded(max_len=40)
    text = ("Tiny windows: ünïcödé — and emoji 😀 split across them. " * 6).strip()
    data = text.encode()
    scorer = Scorer(loaded, batch_size=5, rolling_stride=13)
    rows = scorer.rolling_rows(text)
    assert len(rows) > 5
    covered: list[int] = []
    start = 0
    for row in rows:
        assert len(row.units) <= 40
        offset = data.find(bytes(row.units), max(0, start - 40))
        assert offset >= 0 and not is_continuation_byte(data[offset])  # windows start on characters
        covered.extend(range(offset + row.score_from, offset + len(row.units)))
        start = offset + len(row.units)
    assert covered == list(range(len(data)))
    (total,) = scorer.loglikelihood_rolling([text])
    assert total == pytest.approx(sum(loaded.model.logprob(b) for b in data), abs=1e-8)


def direct_loglikelihood(loaded: LoadedModel, context: bytes, continuation: bytes, max_len: int) -> float:
    """One forward pass on exactly BOS + (context + continuation)[-(max_len-1)...] (no batching, no padding)."""
    model, config = loaded.model, loaded.config
    seq = context + continuation
    cut = max(0, len(seq) - max_len)
    while cut < len(seq) and is_continuation_byte(seq[cut]):
        cut += 1
    body = seq[cut:]
    start = max(0, len(context) - cut)
    tokens = torch.tensor([256, *body[:-1]])[None]
    levels = torch.tensor([config.n_stages - 1, *compute_levels(body[:-1], config.splits).tolist()])[None]
    with torch.no_grad():
        logp = model(tokens, levels, use_caps=False)[0].double().log_softmax(-1)
    targets = torch.tensor(list(body))
    return float(logp[torch.arange(start, len(body)), targets[start:]].sum())


def test_trained_aunet_equals_direct_forward(aunet_loaded):
    max_len = aunet_loaded.config.caps[0]
    pairs = [
        ("ROMEO: What light", " through yonder window breaks?"),
        ("", "First Citizen:\nBefore we proceed any further, hear me speak."),
        ("Long context " * 20, " is cut from the left."),  # longer than the model's 96 bytes
        ("Café: ", "naïve — ünïcode"),
    ]
    scorer = Scorer(aunet_loaded, batch_size=4)
    got = scorer.loglikelihood(pairs)
    for (ctx, cont), (ll, _) in zip(pairs, got):
        expected = direct_loglikelihood(aunet_loaded, ctx.encode(), cont.encode(), max_len)
        assert ll == pytest.approx(expected, abs=2e-4)
    # Rolling over a document that fits in one window equals the loglikelihood of it after an empty context.
    doc = "KING: Speak, and be brief."
    (rolled,) = scorer.loglikelihood_rolling([doc])
    ((whole, _),) = scorer.loglikelihood([("", doc)])
    assert rolled == pytest.approx(whole, abs=1e-5)


def test_is_greedy_on_the_models_own_greedy_continuation(aunet_loaded):
    """The model's greedy bytes are greedy; changing the last one makes them not greedy and less likely.
    Rows take bytes directly: a tiny model's greedy output need not be valid UTF-8."""
    context = b"KING HENRY:\nWhat"
    greedy = generate(aunet_loaded, context, max_new_units=12, stop_at_eos=False).data
    assert len(greedy) == 12
    other = greedy[:-1] + bytes([(greedy[-1] + 1) % 256])
    scorer = Scorer(aunet_loaded)
    (ll, is_greedy), (ll2, other_greedy) = scorer.score_rows(
        [Row(tuple(context + greedy), len(context)), Row(tuple(context + other), len(context))])
    assert is_greedy and not other_greedy and ll > ll2


def test_bpe_joint_encoding_and_trailing_space(bpe_loaded):
    tok = bpe_loaded.tokenizer
    scorer = Scorer(bpe_loaded, batch_size=2)
    a, b = scorer.loglikelihood([("The king said", " hello"), ("The king said ", "hello")])
    assert a[0] == pytest.approx(b[0], abs=1e-5)  # the trailing space moves into the continuation
    whole = [int(t) for t in tok.encode("The king said hello".encode())]
    ctx = [int(t) for t in tok.encode("The king said".encode())]
    tokens = torch.tensor([tok.bos_id, *whole[:-1]])[None]
    with torch.no_grad():
        logp = bpe_loaded.model(tokens)[0].double().log_softmax(-1)
    expected = sum(float(logp[k, whole[k]]) for k in range(len(ctx), len(whole)))
    assert a[0] == pytest.approx(expected, abs=2e-4)


def test_bits_per_byte_matches_hand_formula(tmp_path):
    from aunet.evaluation.evaluate import bits_per_byte_of

    loaded = unigram_loaded(max_len=64)
    text = "Bits per byte of this text, ünïcode included. " * 5
    path = tmp_path / "doc.txt"
    path.write_text(text, encoding="utf-8")
    (got,) = bits_per_byte_of(loaded, {"doc": path}).values()
    data = text.encode()
    expected = -sum(loaded.model.logprob(b) for b in data) / (len(data) * math.log(2))
    assert got == pytest.approx(expected, rel=1e-9)
    assert np.isfinite(got)


def test_learned_chunking_scores_equal_a_direct_forward_per_pair():
    """Rows of different lengths padded into one batch: the padding (and the chunks it adds) changes no score."""
    torch.manual_seed(0)
    config = HNetConfig(dims=[16, 24, 32], layers=[1, 1, 1], head_dims=[8, 8, 8], caps=[64, 32, 16],
                        target_ratios=[3.0, 2.0], windows=[8, None, None], ffn_multiple_of=8)
    loaded = LoadedModel(HNet(config).eval(), config)
    pairs = [("ROMEO: What light", " through yonder window breaks?"), ("", "Speak."),
             ("Long context " * 10, " is cut from the left."), ("Café: ", "naïve — ünïcode")]
    got = Scorer(loaded, batch_size=4).loglikelihood(pairs)
    for (ctx, cont), (ll, _) in zip(pairs, got):
        seq = (ctx + cont).encode()
        cut = max(0, len(seq) - 64)
        while cut < len(seq) and is_continuation_byte(seq[cut]):
            cut += 1
        body, start = seq[cut:], max(0, len(ctx.encode()) - cut)
        with torch.no_grad():
            logp = loaded.model(torch.tensor([[256, *body[:-1]]]), use_caps=False)[0].double().log_softmax(-1)
        expected = float(logp[torch.arange(start, len(body)), torch.tensor(list(body))[start:]].sum())
        assert ll == pytest.approx(expected, abs=2e-4)


def test_outputs_that_are_not_finite_stop_the_scoring_with_no_score(tmp_path):
    """An infinity among the logits (a bf16 overflow) makes every log-probability of its row NaN: the scoring stops
    with one line instead of returning NaN (printed as a score and written into scores.json before)."""
    from aunet.evaluation.errors import EvalError
    from aunet.evaluation.evaluate import bits_per_byte_of

    loaded = unigram_loaded(max_len=64)
    loaded.model.table[7] = float("inf")
    path = tmp_path / "doc.txt"
    path.write_text("Some text to score. " * 5, encoding="utf-8")
    with pytest.raises(EvalError, match="the model's outputs are not finite"):
        bits_per_byte_of(loaded, {"doc": path})
