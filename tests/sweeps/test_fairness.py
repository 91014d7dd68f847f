"""Fairness of a plan: caps measured against the training text, stage shapes and data per parameter."""

from __future__ import annotations

import numpy as np
import pytest

from aunet.cli import main
from aunet.errors import ConfigError
from aunet.flops import flops_report
from aunet.models.config import AUNetConfig, BPEConfig
from aunet.sweeps.fairness import boundary_counts, cap_stats, stage_shapes, suggest_caps
from aunet.sweeps.plan import plan_sweep
from aunet.sweeps.spec import load_sweep
from tests.sweeps.helpers import MICRO, write_sweep


def test_truncation_and_padding_shares_by_hand():
    counts = np.array([[10, 5], [20, 8], [30, 12]])
    stats = cap_stats(counts, [64, 24, 10])
    assert stats.truncated == pytest.approx((1 / 3, 1 / 3))  # 30 > 24; 12 > 10
    # stage 2: (14 + 4 + 0) / 24 / 3 padded; stage 3: (5 + 2 + 0) / 10 / 3
    assert stats.padding == pytest.approx(((14 + 4) / 24 / 3, (5 + 2) / 10 / 3))


def test_suggested_caps_cover_the_percentile_and_never_grow_with_depth():
    rng = np.random.default_rng(0)
    counts = np.stack([rng.integers(90, 130, 1000), rng.integers(40, 200, 1000)], axis=1)
    caps = suggest_caps(counts, 256)
    assert caps[0] == 256 and caps[1] % 8 == 0 and caps[1] >= np.percentile(counts[:, 0], 99)
    assert caps[2] <= caps[1]  # the second transition's counts exceed the first's cap: clipped to it
    assert (counts[:, 0] > caps[1]).mean() <= 0.01


def test_boundary_counts_follow_the_words_of_each_window():
    text = b"ab cd ef gh " * 40  # a word boundary every 3 bytes
    counts = boundary_counts([text], ["word@1"], seq_len=30, max_windows=3)
    # 30 input bytes per window: BOS (forced top level) + the last bytes of the words in it
    assert counts.shape == (3, 1) and set(counts[:, 0].tolist()) <= {10, 11}
    assert counts[0, 0] == 1 + sum(1 for i, b in enumerate(text[:29]) if b == ord(" "))


def test_stage_shares_and_units_per_parameter():
    config = AUNetConfig(dims=[32, 64], layers=[1, 2], head_dims=[16, 16], caps=[512, 128], splits=["word@1"],
                         windows=[128, None], ffn_multiple_of=16)
    report = flops_report(config)
    shapes = stage_shapes(config, n_bytes=1e6)
    assert sum(s.flops_share for s in shapes) + report.head_flops_per_unit / report.flops_per_unit \
        == pytest.approx(1.0)
    assert [s.layers for s in shapes] == [1, 2] and [s.width for s in shapes] == [32, 64]
    deep = report.stages[1]
    params = deep.layers_counted * (4 * 64 * 64 + 3 * 64 * deep.ffn_dim + 2 * 64)  # + two norm gains
    assert shapes[1].units_per_param == pytest.approx(1e6 * 128 / 512 / params)
    bpe = stage_shapes(BPEConfig(dim=32, layers=2, head_dim=16, vocab_size=300, seq_len=64), 2.6e6, 2.6)
    assert bpe[0].units_per_param == pytest.approx(1e6 / (2 * (4 * 32 * 32 + 3 * 32 * bpe_ffn() + 2 * 32)))


def bpe_ffn() -> int:
    return BPEConfig(dim=32, layers=2, head_dim=16, vocab_size=300, seq_len=64).resolved_ffn_dim


def test_a_cap_that_truncates_too_much_is_refused_in_one_line_with_better_caps(tmp_path, data_dir, capsys):
    families = {"aunet2": {"template": {"family": "aunet", "widths": [0.5, 1.0], "head_dims": [8, 8], "caps": [64, 8],
                                        "splits": ["word@1"], "windows": [16, None], "layers": [1, None],
                                        "ffn_multiple_of": 8, "width_step": 8, "aspect": 16, "min_heads": 1}}}
    path = write_sweep(tmp_path, families=families)
    with pytest.raises(ConfigError, match=r"cap 8 of stage 2 truncates .* use caps \[64, \d+\]"):
        plan_sweep(load_sweep(path))
    assert main(["sweep", "plan", str(path), "--no-probe"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "truncates" in err[0] and "max_truncation" in err[0]


def test_the_refusal_names_the_ablation_entry_whose_caps_truncate(tmp_path, data_dir):
    """Two entries of one family (variants): the error names the entry to fix, not the family they share."""
    template = {"family": "aunet", "widths": [0.5, 1.0], "head_dims": [8, 8], "caps": [64, 24],
                "splits": ["word@1"], "windows": [16, None], "layers": [1, None], "ffn_multiple_of": 8,
                "width_step": 8, "aspect": 16, "min_heads": 1}
    families = {"aunet2-word": {"family": "aunet2", "variant": "word", "template": template},
                "aunet2-stride2": {"family": "aunet2", "variant": "stride2", "template": template,
                                   "overrides": {"splits": ["stride@2"]}}}
    with pytest.raises(ConfigError, match=r"^families\.aunet2-stride2: cap 24 of stage 2 truncates"):
        plan_sweep(load_sweep(write_sweep(tmp_path, families=families, hparams={"aunet": MICRO["hparams"]["aunet"]})))


def test_plan_reports_fairness_and_suggests_caps(tmp_path, data_dir, capsys):
    path = write_sweep(tmp_path)
    assert main(["sweep", "plan", str(path), "--no-probe", "--suggest-caps"]) == 0
    out = capsys.readouterr().out
    assert "fairness:" in out and "units seen per parameter" in out and "suggested caps [64, " in out
    assert main(["sweep", "plan", str(path), "--no-probe", "--json"]) == 0
    import json

    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    aunet = [r for r in rows if r["family"] == "aunet2"]
    assert aunet and all(len(r["stages"]) == 2 and len(r["truncated"]) == 1 for r in aunet)
