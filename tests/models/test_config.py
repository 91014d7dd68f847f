"""Configs that cannot work fail at load time with one line naming the key and the fix."""

from __future__ import annotations

import pytest

from aunet.errors import ConfigError
from aunet.models import AUNetConfig, BPEConfig, model_config_from_dict, swiglu_hidden_dim

GOOD = dict(family="aunet", dims=[64, 128], layers=[1, 2], head_dims=[32, 32], caps=[512, 128], splits=["word@1"])


def build(**changes):
    return model_config_from_dict({**GOOD, **changes})


def test_good_config_and_defaults():
    cfg = build()
    assert isinstance(cfg, AUNetConfig) and cfg.n_stages == 2 and cfg.seq_len == 512
    assert cfg.resolved_windows == [None, None] and cfg.resolved_ffn_dims == [256, 512]
    assert cfg.upsampling == "multilinear" and cfg.n_offsets == 16


def test_swiglu_rule():
    assert swiglu_hidden_dim(2048) == 5632 and swiglu_hidden_dim(512) == 1536 and swiglu_hidden_dim(4096) == 11008
    assert swiglu_hidden_dim(64, multiple_of=32) == 192


@pytest.mark.parametrize(
    "changes, key, message",
    [
        (dict(dims=[8] * 5, layers=[1] * 5, head_dims=[8] * 5, caps=[8] * 5, splits=["word@1"] * 4),
         "model.dims", "1 to 4 stages"),
        (dict(dims=[], layers=[], head_dims=[], caps=[], splits=[]), "model.dims", "1 to 4 stages"),
        (dict(layers=[1]), "model.layers", "expected 2 entries"),
        (dict(splits=[]), "model.splits", "expected 1 split rule"),
        (dict(splits=["word@1", "word@2"]), "model.splits", "expected 1 split rule"),
        (dict(head_dims=[24, 32]), "model.head_dims[0]", "not divisible"),
        (dict(head_dims=[64, 128], dims=[64, 200]), "model.head_dims[1]", "not divisible"),
        (dict(head_dims=[1, 32], dims=[63, 128]), "model.head_dims[0]", "even"),
        (dict(splits=["word@9x"]), "model.splits[0]", "positive integer"),
        (dict(splits=["sentence"]), "model.splits[0]", "unknown split rule"),
        (dict(caps=[512, 0]), "model.caps[1]", "positive"),
        (dict(caps=[128, 512]), "model.caps[1]", "caps shrink"),
        (dict(windows=[0, None]), "model.windows[0]", "positive"),
        (dict(upsampling="bilinear"), "model.upsampling", "multilinear, repeat, simple"),
        (dict(dims="64"), "model.dims", "expected a list of int"),
        (dict(layers=[1, 2.5]), "model.layers[1]", "expected an integer"),
        (dict(layers=[True, 2]), "model.layers[0]", "expected an integer"),
        (dict(family="transformer"), "model.family", "aunet, bpe"),
        (dict(dimz=[1]), "model.dimz", "did you mean 'dims'"),
    ],
)
def test_bad_aunet_configs(changes, key, message):
    with pytest.raises(ConfigError) as err:
        build(**changes)
    assert err.value.key == key
    assert message in err.value.message
    assert "\n" not in str(err.value)


def test_missing_required_key():
    with pytest.raises(ConfigError, match="required key is missing") as err:
        model_config_from_dict({k: v for k, v in GOOD.items() if k != "caps"})
    assert err.value.key == "model.caps"


@pytest.mark.parametrize(
    "changes, key",
    [(dict(dim=100), "model.head_dim"), (dict(vocab_size=0), "model.vocab_size"), (dict(window=-1), "model.window"),
     (dict(seq_len="long"), "model.seq_len"), (dict(n_layers=3), "model.n_layers")],
)
def test_bad_bpe_configs(changes, key):
    base = dict(family="bpe", dim=64, layers=2, head_dim=32, vocab_size=1000, seq_len=128)
    with pytest.raises(ConfigError) as err:
        model_config_from_dict({**base, **changes})
    assert err.value.key == key


def test_integral_floats_are_accepted_for_counts():
    cfg = model_config_from_dict(dict(family="bpe", dim=64.0, layers=2, head_dim=32, vocab_size=1.0e3, seq_len=128))
    assert isinstance(cfg, BPEConfig) and cfg.vocab_size == 1000 and isinstance(cfg.dim, int)
