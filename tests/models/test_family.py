"""The family interface: one definition of the training forward, and the per-family answers callers rely on."""

from __future__ import annotations

import torch

from aunet.models import build_model, family_of
from aunet.models.config import AUNetConfig, BPEConfig
from aunet.models.loss import IGNORE
from aunet.splitting import compute_levels

AUNET2 = AUNetConfig(dims=[16, 32], layers=[1, 1], head_dims=[8, 8], caps=[24, 8], splits=["word@1"],
                     ffn_multiple_of=16)
AUNET1 = AUNetConfig(dims=[16], layers=[1], head_dims=[8], caps=[24], ffn_multiple_of=16)
BPE = BPEConfig(dim=16, layers=1, head_dim=8, vocab_size=40, seq_len=12, ffn_multiple_of=16)


def test_forward_batch_shifts_slices_and_masks_padding():
    torch.manual_seed(0)
    for config in (AUNET2, AUNET1, BPE):
        family, model = family_of(config), build_model(config)
        data = family.synthetic_batch(3)
        data["tokens"][1, -4:] = -1  # PAD: read as 0, never a target
        logits, targets, _ = family.forward_batch(model, data)
        inputs = data["tokens"][:, :-1].clamp(min=0)
        direct = model(inputs, data["levels"][:, :-1]) if "levels" in data else model(inputs)
        assert torch.equal(logits, direct)
        assert logits.shape == (3, config.seq_len, config.vocab_size)
        assert (targets[1, -4:] == IGNORE).all() and torch.equal(targets[0], data["tokens"][0, 1:])


def test_only_a_multi_stage_aunet_returns_boundary_stats():
    torch.manual_seed(0)
    for config, has_stats in ((AUNET2, True), (AUNET1, False), (BPE, False)):
        family = family_of(config)
        _, _, stats = family.forward_batch(build_model(config), family.synthetic_batch(2), return_stats=True)
        assert (stats is not None) == has_stats
        if has_stats:
            assert stats.kept[0].shape == (2,) and (stats.kept[0] <= config.caps[1]).all()


def test_units_and_shapes_per_family():
    aunet, bpe = family_of(AUNET2), family_of(BPE)
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
    for config, prompt in ((AUNET2, list(b"one two ")), (BPE, [3, 5, 7])):
        family = family_of(config)
        model = build_model(config).eval()
        tokenizer = type("Specials", (), {"bos_id": 1, "eos_id": 2})()
        cached, full = (family.decoder(model, list(prompt), tokenizer, cached=c) for c in (True, False))
        with torch.no_grad():
            for unit in (32, 116, 104, 101, 32):
                assert torch.allclose(cached.logits, full.logits, atol=1e-5)
                cached.append(unit % config.vocab_size)
                full.append(unit % config.vocab_size)
