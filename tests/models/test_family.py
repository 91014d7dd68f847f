"""The family interface: one definition of the training forward, and the per-family answers callers rely on."""

from __future__ import annotations

import torch

from aunet.models import build_model, family_of
from aunet.models.config import AUNetConfig, BPEConfig, HNetConfig
from aunet.models.loss import IGNORE
from aunet.splitting import compute_levels

AUNET2 = AUNetConfig(dims=[16, 32], layers=[1, 1], head_dims=[8, 8], caps=[24, 8], splits=["word@1"],
                     ffn_multiple_of=16)
AUNET1 = AUNetConfig(dims=[16], layers=[1], head_dims=[8], caps=[24], ffn_multiple_of=16)
BPE = BPEConfig(dim=16, layers=1, head_dim=8, vocab_size=40, seq_len=12, ffn_multiple_of=16)
HNET1 = HNetConfig(dims=[16, 32], layers=[1, 1], head_dims=[8, 8], caps=[24, 12], target_ratios=[3.0],
                   ffn_multiple_of=16)


def test_forward_batch_shifts_slices_and_masks_padding():
    torch.manual_seed(0)
    for config in (AUNET2, AUNET1, BPE, HNET1):
        family, model = family_of(config), build_model(config)
        data = family.synthetic_batch(3)
        data["tokens"][1, -4:] = -1  # PAD: read as 0, never a target
        logits, targets, _ = family.forward_batch(model, data)
        inputs = data["tokens"][:, :-1].clamp(min=0)
        direct = model(inputs, data["levels"][:, :-1]) if family.split_rules() else model(inputs)
        assert torch.equal(logits, direct)
        assert logits.shape == (3, config.seq_len, config.vocab_size)
        assert (targets[1, -4:] == IGNORE).all() and torch.equal(targets[0], data["tokens"][0, 1:])


def test_only_multi_stage_models_return_boundary_stats():
    torch.manual_seed(0)
    for config, has_stats in ((AUNET2, True), (AUNET1, False), (BPE, False), (HNET1, True)):
        family = family_of(config)
        _, _, stats = family.forward_batch(build_model(config), family.synthetic_batch(2), return_stats=True)
        assert (stats is not None) == has_stats
        if has_stats:
            assert stats.kept[0].shape == (2,) and (stats.kept[0] <= config.caps[1]).all()


def test_units_and_shapes_per_family():
    aunet, bpe, hnet = family_of(AUNET2), family_of(BPE), family_of(HNET1)
    assert (hnet.unit, hnet.needs_tokenizer, hnet.label, hnet.n_stages) == ("byte", False, "hnet1", 2)
    assert hnet.stacks() == [(2, 24, 8), (1, 12, 8)] and hnet.data_dependent_cost
    assert not (aunet.data_dependent_cost or bpe.data_dependent_cost)
    assert aunet.split_rules() == ["word@1"] and hnet.split_rules() == [] == bpe.split_rules()
    # Learned chunking reads AU-Net-2's data: bytes with word@1 levels, to observe where its chunks fall.
    tokens, levels = hnet.encoder().encode(b"the cat sat")
    assert levels[1:-1].tolist() == compute_levels(b"the cat sat", ["word@1"]).tolist() and levels[0] == 1
    assert (aunet.unit, aunet.needs_tokenizer, aunet.label, aunet.n_stages) == ("byte", False, "aunet2", 2)
    assert (bpe.unit, bpe.needs_tokenizer, bpe.label, bpe.n_stages) == ("token", True, "bpe", 1)
    assert aunet.stacks() == [(2, 24, 8), (1, 8, 8)] and bpe.stacks() == [(1, 12, 8)]
    assert aunet.bytes_per_unit(3.0) == 1.0 and bpe.bytes_per_unit(3.0) == 3.0


def test_byte_prompts_and_cuts_start_on_a_character():
    family = family_of(AUNET2)
    data = "aé€😀".encode()  # 1, 2, 3 and 4 bytes
    for limit in range(1, len(data) + 1):
        kept = bytes(family.prompt_units(data, limit, None))
        assert data.endswith(kept) and len(kept) <= limit
        kept.decode("utf-8")  # whole characters only
    assert family.sequence_start(list(data), 2) == 3  # byte 2 continues "é"


def test_padded_scoring_inputs_put_bos_first_and_levels_of_the_text():
    family = family_of(AUNET2)
    rows = [tuple(b"the cat sat"), tuple(b"a dog")]
    tokens, levels = family.padded_inputs(rows, 256, torch.device("cpu"))
    assert tokens.shape == levels.shape == (2, 11)
    assert tokens[:, 0].tolist() == [256, 256] and levels[:, 0].tolist() == [1, 1]
    assert levels[0, 1:].tolist() == compute_levels(b"the cat sa", ["word@1"]).tolist()
    assert tokens[1, 5:].tolist() == [0] * 6 and levels[1, 5:].tolist() == [0] * 6  # padding at level 0


def test_cached_decoding_equals_recomputation_for_both_families():
    torch.manual_seed(0)
    for config, prompt in ((AUNET2, list(b"one two ")), (BPE, [3, 5, 7]), (HNET1, list(b"one two "))):
        family = family_of(config)
        model = build_model(config).eval()
        tokenizer = type("Specials", (), {"bos_id": 1, "eos_id": 2})()
        cached, full = (family.decoder(model, list(prompt), tokenizer, cached=c) for c in (True, False))
        with torch.no_grad():
            for unit in (32, 116, 104, 101, 32):
                assert torch.allclose(cached.logits, full.logits, atol=1e-5)
                cached.append(unit % config.vocab_size)
                full.append(unit % config.vocab_size)


def test_chunk_starts_per_family():
    """Where each family's chunks start in a text: AU-Net's split rules, BPE's tokens, learned chunking's router."""
    torch.manual_seed(0)
    data = b"one two. three"
    aunet = family_of(AUNET2).chunk_starts(build_model(AUNET2), data, None)
    assert aunet == [[3, 7, 8]]  # the space after "one", the '.', the space after it
    tokenizer = type("Bytes", (), {"encode": lambda self, d: [b % 40 for b in d[::2]],
                                   "decode_bytes": lambda self, ids: b"xy"})()
    assert family_of(BPE).chunk_starts(build_model(BPE), data, tokenizer) == [list(range(0, 14, 2))]
    model = build_model(HNET1).eval()
    learned = family_of(HNET1).chunk_starts(model, data, None)
    with torch.no_grad():
        _, stats = model(torch.tensor([[256, *data]]), use_caps=False, return_stats=True)
    expected = stats.positions[0][0][stats.boundary[0][0]].tolist()
    assert len(learned) == 1 and learned[0] == [p - 1 for p in expected if p > 0] and learned[0]
