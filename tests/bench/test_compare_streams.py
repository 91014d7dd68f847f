"""benchmarks/compare_streams.py: runs paired across the two streams and two seeds, and the verdict read from them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "compare_streams.py"


@pytest.fixture(scope="module")
def compare():
    spec = importlib.util.spec_from_file_location("compare_streams", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _table(folder: Path, rows: list[tuple[str, float, int, float]]) -> Path:
    folder.mkdir()
    pd.DataFrame([{"family": f, "variant": None, "budget_flops": c, "multiplier": 1.0, "seed": seed,
                   "status": "finished", "val_bpb": bpb} for f, c, seed, bpb in rows]).to_csv(folder / "runs.csv",
                                                                                              index=False)
    return folder


def test_runs_are_paired_and_a_stream_shift_beyond_the_noise_is_seen(compare, tmp_path):
    rng = np.random.default_rng(0)
    keys = [(f, c) for f in ("bpe", "aunet2") for c in (1e10, 3e10, 1e11, 3e11, 1e12)]
    base = {k: 3.0 + rng.normal(0, 0.1) for k in keys}
    streamed = [(f, c, s, base[(f, c)] + rng.normal(0, 0.01)) for f, c in keys for s in (0, 1)]
    same = [(f, c, 0, base[(f, c)] + rng.normal(0, 0.01)) for f, c in keys]
    shifted = [(f, c, 0, base[(f, c)] + 0.2 + rng.normal(0, 0.01)) for f, c in keys]
    s = compare.finished(_table(tmp_path / "s", streamed + [("bpe", 9e12, 0, float("nan"))]))
    both = compare.paired(compare.finished(_table(tmp_path / "p", same)), s)
    assert len(both) == len(keys) and set(both.columns) >= {"stream_effect", "seed_noise"}
    quiet = compare.verdict(both)
    assert quiet["f_test_p"] > 0.01 and quiet["mean_interval_low"] < 0 < quiet["mean_interval_high"]
    moved = compare.verdict(compare.paired(compare.finished(_table(tmp_path / "m", shifted)), s))
    assert moved["f_test_p"] < 0.01 and moved["mean_interval_low"] > 0.15
    assert "| bpe | 1e+10 | x1 |" in compare.report(both, quiet)


def test_a_missing_table_is_one_line_and_exit_2(compare, tmp_path, capsys):
    assert compare.main([str(tmp_path / "nope"), str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "no such results folder" in err
