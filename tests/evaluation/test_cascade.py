"""Cascaded generation and KV caches equal recomputing the uncapped forward on the whole sequence (P8, P9)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aunet.evaluation.checkpoint import LoadedModel
from aunet.evaluation.generation import _TextStream, generate
from aunet.models import AUNet, AUNetConfig, BPEConfig, BPETransformer, HNet, HNetConfig
from aunet.models.hnet_cascade import HNetCascade
from aunet.models.incremental import AUNetCascade, BPEIncremental
from aunet.models.layers import KVCache, TransformerStack
from aunet.splitting import compute_levels
from tests.models.helpers import RULES, SAMPLE

MODES = ["multilinear", "repeat", "simple"]
TOL = 1e-6


def cascade_config(stages: int, mode: str) -> AUNetConfig:
    """Sliding windows shorter than the sequences at the byte and the deepest stage, 3 offsets so that
    multilinear upsampling wraps around inside long segments, caps smaller than the sequences (ignored: the
    cascade, like evaluation, keeps every boundary)."""
    return AUNetConfig(dims=[16, 24, 32, 40][:stages], layers=[1, 2, 1, 1][:stages], head_dims=[8] * stages,
                       caps=[64, 24, 12, 8][:stages], splits=RULES[: stages - 1],
                       windows=[8, None, None, 3][:stages] if stages > 1 else [8], ffn_multiple_of=8,
                       upsampling=mode, n_offsets=3)


def full_logits(model: AUNet, data: bytes) -> torch.Tensor:
    """``[len(data) + 1, 258]`` logits of the uncapped forward over BOS + data."""
    n = model.config.n_stages
    lv = compute_levels(data, model.config.splits) if n > 1 else np.zeros(len(data), dtype=np.uint8)
    tokens = torch.tensor([256, *data])[None]
    levels = torch.tensor([n - 1, *lv.tolist()])[None]
    with torch.no_grad():
        return model(tokens, levels, use_caps=False)[0]


def teacher_forced(stages: int, mode: str, n_bytes: int) -> tuple[AUNet, torch.Tensor, list[int], list[int]]:
    """A random float64 AU-Net, the uncapped full-forward logits over BOS + ``n_bytes`` of real text, and that
    text's tokens and levels (BOS first, at the top level)."""
    torch.manual_seed(stages)
    model = AUNet(cascade_config(stages, mode)).double().eval()
    data = (SAMPLE * 2).encode()[:n_bytes]
    lv = compute_levels(data, model.config.splits) if stages > 1 else np.zeros(len(data), dtype=np.uint8)
    return model, full_logits(model, data), [256, *data], [stages - 1, *lv.tolist()]


@pytest.mark.parametrize("stages", [1, 2, 3, 4])
@pytest.mark.parametrize("mode", MODES)
def test_cascade_in_chunks_equals_full_forward(stages, mode):
    """Teacher-forced real text with many boundaries, fed in chunks of 1 to 7 bytes after a prefill."""
    model, reference, token_list, level_list = teacher_forced(stages, mode, 230)
    tokens, levels = torch.tensor(token_list), torch.tensor(level_list)
    state = AUNetCascade(model)
    rng = np.random.default_rng(stages)
    pos, outs = 0, []
    while pos < len(tokens):
        step = 40 if pos == 0 else int(rng.integers(1, 8))
        outs.append(state.extend(tokens[pos : pos + step], levels[pos : pos + step]))
        pos += step
    got = torch.cat(outs)
    assert got.shape == reference.shape
    assert (got - reference).abs().max().item() < TOL
    # Every stage ran exactly once per position of its own sequence (stage-local counters, P8).
    counts = [len(tokens)] + [int((levels > i).sum()) for i in range(stages - 1)]
    assert state.lengths == counts and all(c > 3 for c in counts)


@pytest.mark.parametrize("stages", [1, 2, 3, 4])
@pytest.mark.parametrize("mode", MODES)
def test_cascade_steps_of_one_byte_equal_full_forward(stages, mode):
    """step() (host-integer levels, the generation path) after a prefill equals the full forward at every byte."""
    model, reference, tokens, levels = teacher_forced(stages, mode, 200)
    state = AUNetCascade(model)
    got = [state.extend(torch.tensor(tokens[:30]), torch.tensor(levels[:30]))]
    got += [state.step(t, lv)[None] for t, lv in zip(tokens[30:], levels[30:])]
    assert (torch.cat(got) - reference).abs().max().item() < TOL
    counts = [len(tokens)] + [sum(v > i for v in levels) for i in range(stages - 1)]
    assert state.lengths == counts


def test_step_needs_a_prefill_first():
    model = AUNet(cascade_config(2, "multilinear")).eval()
    with pytest.raises(ValueError, match="feed the prompt"):
        AUNetCascade(model).step(ord("a"), 0)


@pytest.mark.parametrize("window", [5, None])
def test_static_stack_step_equals_the_cached_step(window):
    """The static-shape step (what a CUDA graph replays): position on the device, attention over the whole reserved
    capacity under a mask, keys written in place; equal to forward_cached position by position."""
    torch.manual_seed(0)
    stack = TransformerStack(16, 2, 8, 32, window=window, max_len=8, rope_theta=10000.0, eps=1e-5).double().eval()
    x = torch.randn(1, 40, 16, dtype=torch.float64)
    eager, static = stack.new_cache(), stack.new_cache()
    with torch.no_grad():
        stack.forward_cached(x[:, :6], eager)
        stack.forward_cached(x[:, :6], static)
        static.reserve(64)
        key_pos = torch.arange(static.capacity)
        cos, sin = stack.rotary_for(static.capacity)  # grows the 8-row table past the capacity
        for t in range(6, 40):
            expected = stack.forward_cached(x[:, t : t + 1], eager)
            got = stack.step_static(x[:, t : t + 1], static, torch.tensor([t]), key_pos, cos, sin)
            static.length += 1
            assert (got - expected).abs().max().item() < TOL
    assert static.capacity == 64 and (static.keys[0][:, :, :40] - eager.keys[0][:, :, :40]).abs().max() < TOL


def test_reserve_keeps_what_the_cache_holds():
    cache = KVCache(1)
    k = torch.randn(1, 2, 5, 4)
    cache.store(0, k, -k, 0)
    cache.length = 5
    cache.reserve(100)
    assert cache.capacity == 100 and torch.equal(cache.keys[0][:, :, :5], k)
    assert cache.keys[0][:, :, 5:].abs().max() == 0  # zeroed: masked slots must not hold NaN garbage
    with pytest.raises(ValueError, match="stored keys"):
        KVCache(1).reserve(10)


@pytest.mark.gpu
@pytest.mark.parametrize("stages", [2, 3])
def test_graphed_cascade_equals_the_eager_cascade_on_a_gpu(stages):
    """CUDA-graph replays of each stack's step give the eager cascade's logits, through several recaptures as the
    caches outgrow their capacity (a short prompt, then 300 bytes)."""
    torch.manual_seed(stages)
    model = AUNet(cascade_config(stages, "multilinear")).cuda().eval()
    data = (SAMPLE * 4).encode()[:320]
    lv = compute_levels(data, model.config.splits)
    tokens, levels = [256, *data], [stages - 1, *lv.tolist()]
    graphed, eager = AUNetCascade(model), AUNetCascade(model, graphs=False)
    assert graphed.graphs and not eager.graphs
    for state in (graphed, eager):
        state.extend(torch.tensor(tokens[:20], device="cuda"), torch.tensor(levels[:20], device="cuda"))
    worst = 0.0
    for t, level in zip(tokens[20:], levels[20:]):
        worst = max(worst, (graphed.step(t, level) - eager.step(t, level)).abs().max().item())
    assert worst < 1e-4 and graphed.lengths == eager.lengths
    assert stages <= graphed.graph_captures <= 10 * (2 * stages - 1)


def biased_model(stages: int, mode: str, seed: int) -> AUNet:
    """A random AU-Net whose head gets a bias toward a few letters, space, '.' and the two bytes of "é", so that
    sampled text closes words, word pairs and sentences and the deeper stages run during generation."""
    torch.manual_seed(seed)
    model = AUNet(cascade_config(stages, mode)).double().eval()
    head = torch.nn.Linear(model.head.in_features, 258, bias=True).double()
    with torch.no_grad():
        head.weight.copy_(model.head.weight * 0.3)
        head.bias.fill_(-8.0)
        head.bias[list(b"aet .") + [0xC3, 0xA9]] = 0.0
    model.head = head
    return model


@pytest.mark.parametrize("stages", [1, 2, 3, 4])
@pytest.mark.parametrize("mode", MODES)
def test_generation_with_cache_equals_recomputation(stages, mode):
    model = biased_model(stages, mode, seed=10 + stages)
    loaded = LoadedModel(model, model.config)
    prompt = "The cat sat. It"
    for temperature in (0.0, 1.0):
        a = generate(loaded, prompt, max_new_units=40, temperature=temperature, seed=3, keep_logits=True)
        b = generate(loaded, prompt, max_new_units=40, temperature=temperature, seed=3, keep_logits=True,
                     cached=False)
        assert a.data == b.data and a.text == b.text and a.stop == b.stop
        assert len(a.logits) == len(b.logits) > 0
        assert max((x - y).abs().max().item() for x, y in zip(a.logits, b.logits)) < TOL
    # The sampled run produced boundaries at every level, so every deeper stage stepped during generation.
    levels = compute_levels(prompt.encode() + a.data, model.config.splits) if stages > 1 else None
    if levels is not None:
        assert int(levels[len(prompt):].max()) == stages - 1


def test_stack_cache_past_the_precomputed_rope_length():
    """A stack fed one position at a time beyond its RoPE table (which then grows) equals the full forward."""
    torch.manual_seed(0)
    stack = TransformerStack(16, 2, 8, 32, window=5, max_len=8, rope_theta=10000.0, eps=1e-5).double().eval()
    x = torch.randn(2, 30, 16, dtype=torch.float64)
    with torch.no_grad():
        reference = TransformerStack(16, 2, 8, 32, window=5, max_len=64, rope_theta=10000.0, eps=1e-5).double()
        reference.load_state_dict(stack.state_dict())
        expected = reference(x)
        cache = stack.new_cache()
        got = torch.cat([stack.forward_cached(x[:, :3], cache)] +
                        [stack.forward_cached(x[:, t : t + 1], cache) for t in range(3, 30)], dim=1)
    assert cache.length == 30 and (got - expected).abs().max().item() < TOL


def test_bpe_incremental_equals_full_forward():
    torch.manual_seed(0)
    cfg = BPEConfig(dim=32, layers=2, head_dim=8, vocab_size=100, seq_len=24, window=6, ffn_multiple_of=8)
    model = BPETransformer(cfg).double().eval()
    tokens = torch.randint(0, 100, (40,))
    state = BPEIncremental(model)
    with torch.no_grad():
        expected = model(tokens[None])[0]
    got = torch.cat([state.extend(tokens[:10])] + [state.extend(tokens[t : t + 1]) for t in range(10, 40)])
    assert (got - expected).abs().max().item() < TOL


def test_text_stream_emits_only_complete_characters():
    pieces: list[str] = []
    stream = _TextStream([], pieces.append)
    data = "a€😀é".encode()
    for b in data:  # byte by byte: a multi-byte character appears only when its last byte arrives
        stream.push(bytes([b]))
    assert pieces == ["a", "€", "😀", "é"]
    stream.push(b"\xe2\x82")  # an incomplete character is held back...
    assert "".join(pieces) == "a€😀é"
    stream.push(b"", final=True)  # ...and replaced at the end, never emitted as broken UTF-8
    assert "".join(pieces) == "a€😀é\ufffd" == stream.text


def test_stop_strings_are_cut_and_never_streamed():
    pieces: list[str] = []
    stream = _TextStream(["END"], pieces.append)
    for b in b"abc EN":
        assert not stream.push(bytes([b]))
    assert stream.push(b"D more")
    assert stream.text == "abc " and "".join(pieces) == "abc "


def test_generated_bytes_are_streamed_as_valid_text():
    """A random model emits arbitrary bytes (invalid UTF-8 included): the user sees the replacement decoding."""
    torch.manual_seed(0)
    model = AUNet(cascade_config(2, "multilinear")).eval()
    pieces: list[str] = []
    out = generate(LoadedModel(model, model.config), "x", max_new_bytes=80, temperature=1.0, seed=1,
                   on_text=pieces.append, stop_at_eos=False)
    assert len(out.data) == 80 and out.stop == "max"
    assert "".join(pieces) == out.text == out.data.decode("utf-8", errors="replace")
    assert any(b >= 0x80 for b in out.data)  # the case under test did occur


def test_a_failed_graph_capture_falls_back_to_the_eager_step(monkeypatch):
    """Graphs cannot run on CPU; a stepper that fails like a failed capture must leave the eager cascade exact."""
    model, reference, tokens, levels = teacher_forced(3, "multilinear", 120)
    state = AUNetCascade(model)
    state.extend(torch.tensor(tokens[:30]), torch.tensor(levels[:30]))
    state.graphs = True  # as on a GPU

    def failing(self, x):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr("aunet.models.incremental.GraphedStackStep.__call__", failing)
    with pytest.warns(RuntimeWarning, match="generating eagerly"):
        got = [state.step(t, lv)[None] for t, lv in zip(tokens[30:], levels[30:])]
    assert not state.graphs and (torch.cat(got) - reference[30:]).abs().max().item() < TOL


# --- learned chunking ------------------------------------------------------------------------------------------------

def chunking_model(steps: int, seed: int) -> HNet:
    """A random float64 learned-chunking model with windows shorter than the sequences, caps smaller than them
    (ignored: generation keeps every chunk, as evaluation does)."""
    torch.manual_seed(seed)
    return HNet(HNetConfig(dims=[16, 24, 32][: steps + 1], layers=[1, 2, 1][: steps + 1], head_dims=[8] * (steps + 1),
                           caps=[64, 24, 12][: steps + 1], target_ratios=[3.0, 2.0][:steps],
                           windows=[8, 5, None][: steps + 1], ffn_multiple_of=8)).double().eval()


@pytest.mark.parametrize("steps", [1, 2])
def test_chunking_cascade_equals_the_full_forward_and_its_chunks(steps):
    """Real text with a second document (BOS) inside, fed as a prefill and then in pieces of 1 to 7 bytes."""
    model = chunking_model(steps, seed=steps)
    data = (SAMPLE * 2).encode()[:230]
    tokens = torch.tensor([256, *data[:120], 256, *data[120:]])
    with torch.no_grad():
        reference = model(tokens[None], use_caps=False)[0]
        starts = model.chunk_starts(tokens[None])
    state = HNetCascade(model)
    rng = np.random.default_rng(steps)
    pos, outs = 0, []
    while pos < len(tokens):
        size = 40 if pos == 0 else int(rng.integers(1, 8))
        outs.append(state.extend(tokens[pos : pos + size]))
        pos += size
    assert (torch.cat(outs) - reference).abs().max().item() < TOL
    # The same chunks at every step: the cascade ran the deeper stages exactly where the forward starts chunks.
    byte_starts = state.starts[0]
    assert byte_starts == torch.nonzero(starts[0][0]).squeeze(1).tolist() and 121 in byte_starts
    if steps == 2:
        second = [byte_starts[j] for j in state.starts[1]]
        assert second == torch.nonzero(starts[1][0]).squeeze(1).tolist() and 121 in second
    assert state.lengths[1] == len(byte_starts) > 10


@pytest.mark.parametrize("steps", [1, 2])
def test_chunking_generation_with_cache_equals_recomputation(steps):
    model = chunking_model(steps, seed=20 + steps)
    loaded = LoadedModel(model, model.config)
    for temperature in (0.0, 1.0):
        a = generate(loaded, "The cat sat. It", max_new_units=40, temperature=temperature, seed=3, keep_logits=True)
        b = generate(loaded, "The cat sat. It", max_new_units=40, temperature=temperature, seed=3, keep_logits=True,
                     cached=False)
        assert a.data == b.data and a.text == b.text and a.stop == b.stop and len(a.logits) == len(b.logits) > 0
        assert max((x - y).abs().max().item() for x, y in zip(a.logits, b.logits)) < TOL
