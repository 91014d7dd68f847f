"""Sweep plans: same bytes and the budget spent at every budget, stable run ids, the paper's ladder, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict

import pytest

from aunet.cli import main
from aunet.errors import ConfigError
from aunet.sweeps.plan import plan_sweep
from aunet.sweeps.spec import load_sweep, sweep_from_dict
from tests.sweeps.helpers import MICRO, write_sweep

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


def by_budget(plan):
    groups = defaultdict(list)
    for run in plan.runs:
        groups[run.budget_flops].append(run)
    return groups


@pytest.mark.parametrize("sweep", ["demo.yaml", "cpu-study.yaml"])
def test_every_family_sees_the_same_bytes_and_spends_the_budget(sweep, data_dir):
    plan = plan_sweep(load_sweep(REPO / "sweeps" / sweep))
    assert {r.family for r in plan.runs} == {"bpe", "aunet1", "aunet2", "aunet3", "aunet4"}
    for budget, runs in by_budget(plan).items():
        n_bytes = [r.bytes for r in runs]
        assert max(n_bytes) / min(n_bytes) - 1 < 0.01, (budget, n_bytes)
        for run in runs:
            assert abs(run.planned_flops / budget - 1) < 0.05, (run.family, budget, run.planned_flops)
            assert not [w for w in run.warnings if "repeats its corpus" in w], run.warnings


def test_run_ids_are_stable_across_processes(tmp_path, data_dir):
    path = write_sweep(tmp_path)
    here = [r.run_id for r in plan_sweep(load_sweep(path)).runs]
    code = ("import json, sys; from aunet.sweeps.plan import plan_sweep; from aunet.sweeps.spec import load_sweep; "
            "print(json.dumps([r.run_id for r in plan_sweep(load_sweep(sys.argv[1])).runs]))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == here
    assert len(set(here)) == len(here)


def test_paper_plan_reproduces_the_papers_flops_per_byte(capsys):
    """sweeps/paper.yaml plans the paper's 1e19-1e22 ladder here (nothing is read or run)."""
    assert main(["sweep", "plan", str(REPO / "sweeps" / "paper.yaml"), "--json", "--no-probe"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    budgets = sorted({r["budget_flops"] for r in rows})
    assert budgets[0] == 1e19 and budgets[-1] == 1e22
    # Paper Table 10 (recomputed in the reference notes): FLOPs per byte of AU-Net-2 and per token of BPE.
    expected = {("aunet2", 1e19): 2.4e8, ("aunet2", 1e20): 7.9e8, ("aunet2", 1e22): 7.3e9,
                ("bpe", 1e19): 1.9e9 / 4.56, ("bpe", 1e20): 5.1e9 / 4.56, ("bpe", 1e22): 3.6e10 / 4.56}
    found = {(r["family"], r["budget_flops"]): r["flops_per_byte"] for r in rows}
    for key, value in expected.items():
        assert abs(found[key] / value - 1) < 0.07, (key, found[key], value)
    fields = {"run_id", "family", "budget_flops", "params", "flops_per_byte", "bytes", "steps", "lr", "planned_flops"}
    assert fields <= rows[0].keys()


def test_plan_table_and_plot(tmp_path, data_dir, capsys):
    path = write_sweep(tmp_path)
    assert main(["sweep", "plan", str(path), "--plot", str(tmp_path / "plan.png")]) == 0
    out = capsys.readouterr().out
    assert "FLOPs/byte" in out and "est. time" in out and (tmp_path / "plan.png").stat().st_size > 10_000


def test_corpus_repeats_are_warned(tmp_path, data_dir):
    plan = plan_sweep(load_sweep(write_sweep(tmp_path, budgets=[4.0e14])))
    assert any("repeats its corpus" in w for r in plan.runs for w in r.warnings)


@pytest.mark.parametrize(
    "changes, key",
    [
        ({"families": {"bpe": {"template": {"family": "bpe", "vocab_sise": 3}}}}, "families.bpe.template.vocab_sise"),
        ({"families": {"x": {"model": "no-such-preset"}}}, ""),
        ({"budgets": []}, "budgets"),
        ({"budgets": ["lots"]}, "budgets[0]"),
        ({"size": {"rule": "chinchilla"}}, "size.rule"),
        ({"hparams": {"aunet": {"lr": 1e-3}}}, "hparams.aunet"),
        ({"familes": {}}, "familes"),
        ({"name": "a b"}, "name"),
    ],
)
def test_bad_sweeps_fail_with_the_key(changes, key, data_dir):
    raw = {**MICRO, **changes}
    with pytest.raises(ConfigError) as err:
        plan_sweep(sweep_from_dict(raw))
    assert err.value.key == key or (not key and "no such file or preset" in str(err.value))


def test_budget_too_small_for_the_smallest_model(tmp_path, data_dir, capsys):
    path = write_sweep(tmp_path, budgets=[1.0e3])
    assert main(["sweep", "plan", str(path), "--no-probe"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "FLOPs per byte" in err
