"""Training learned chunking through the family interface: realized FLOPs charged step by step, the budget stop on
them, the chunk records of the run, an exact resume, and its checkpoint scored and sampled like any other."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from aunet.evaluation.checkpoint import load_checkpoint
from aunet.evaluation.generation import generate, mark_chunks
from aunet.flops import hnet_flops
from aunet.training.run import plan_steps, train
from tests.training.helpers import tiny_run
from tests.training.test_run import Crash, CrashAt

TINY_HNET = dict(family="hnet", dims=[32, 48], layers=[1, 1], head_dims=[16, 16], caps=[64, 24],
                 target_ratios=[4.0], windows=[32, None], ffn_multiple_of=16)


def logged(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as handle:
        return [r for r in csv.DictReader(handle) if r.get("train/stage_length_1")]


def test_a_run_charges_realized_chunks_and_records_them(tmp_path, data_dir):
    run = tiny_run(tmp_path, model=TINY_HNET)
    summary = train(run)
    run_dir = tmp_path / "runs" / summary.run_id
    rows = logged(run_dir)
    assert len(rows) == summary.steps == 6
    # Every step is charged the FLOPs of the lengths it ran at; the record compares them with the plan.
    per_step = [hnet_flops(run.model, [64, float(r["train/stage_length_1"])]).flops_per_sequence() * 4 for r in rows]
    assert summary.flops_spent == pytest.approx(sum(per_step))
    assert float(rows[-1]["train/flops_spent"]) == pytest.approx(summary.flops_spent)
    plan = plan_steps(run)
    assert summary.cost["flops_planned"] == pytest.approx(6 * plan.flops_per_step)
    assert summary.cost["flops_drift"] == pytest.approx(summary.flops_spent / (6 * plan.flops_per_step) - 1)
    assert summary.cost["stopped_by"] == "steps" and summary.cost["planned_steps"] == 6
    byte_stage, chunk_stage = summary.stages
    assert byte_stage["units_per_param"] > chunk_stage["units_per_param"] > 0
    chunks = sum(float(r["train/chunks_1"]) for r in rows) / len(rows)
    assert chunk_stage["chunks"] == pytest.approx(chunks)
    assert chunk_stage["bytes_per_chunk"] == pytest.approx(64 / chunks)
    assert 1 <= chunk_stage["boundaries"] <= chunk_stage["length"] <= 24 and chunk_stage["planned_length"] == 16
    assert 0 <= chunk_stage["word_start_share"] <= 1 and 0 <= chunk_stage["word_start_share_end"] <= 1
    assert all(float(r["train/aux_loss"]) > 0 for r in rows)  # the ratio loss is in the training loss

    # The checkpoint is scored and sampled through the family interface, cached generation equal to recomputation.
    loaded = load_checkpoint(run_dir)
    a = generate(loaded, "ROMEO:", max_new_bytes=30, keep_logits=True)
    b = generate(loaded, "ROMEO:", max_new_bytes=30, keep_logits=True, cached=False)
    assert a.data == b.data and max((x - y).abs().max().item() for x, y in zip(a.logits, b.logits)) < 1e-4
    marked = mark_chunks(loaded, b"ROMEO: what light")
    assert marked.replace("|", "") == "ROMEO: what light"


def test_the_budget_stop_charges_realized_cost_above_the_plan(tmp_path, data_dir):
    """Planned at 16 bytes per chunk, the untrained router starts about one chunk in three bytes: every step costs
    more than planned, so the budget runs out before the planned steps, within one step of the budget."""
    model = {**TINY_HNET, "target_ratios": [16.0]}
    probe = tiny_run(tmp_path, model=model)
    per_step = plan_steps(probe).flops_per_step
    budget = 8.5 * per_step
    summary = train(tiny_run(tmp_path, model=model, train={"budget_flops": budget, "val_every_steps": 20}))
    assert summary.cost["planned_steps"] == 8 and summary.cost["stopped_by"] == "budget"
    assert summary.steps < 8 and summary.cost["flops_drift"] > 0
    spent = [float(r["train/flops_spent"]) for r in logged(tmp_path / "runs" / summary.run_id)]
    assert spent[-1] == pytest.approx(summary.flops_spent)
    last, before = spent[-1] - spent[-2], spent[-2] - spent[-3]
    # Stopped where one more step like the last would pass the budget; over it by at most the last step's growth.
    assert budget - last < summary.flops_spent <= budget + max(0.0, last - before)
    assert summary.val_bpb == summary.val_bpb  # validated after the early stop (not NaN)


def test_a_resumed_chunking_run_equals_an_uninterrupted_one(tmp_path, data_dir):
    straight = train(tiny_run(tmp_path / "a", model=TINY_HNET))
    run = tiny_run(tmp_path / "b", model=TINY_HNET)
    with pytest.raises(Crash):
        train(run, callbacks=[CrashAt(step=4)])
    resumed = train(run, resume=True)
    assert resumed.weights_sha256 == straight.weights_sha256 and resumed.val_bpb == straight.val_bpb
    assert resumed.flops_spent == pytest.approx(straight.flops_spent, rel=1e-12)  # realized FLOPs survive the resume
    assert resumed.stages == straight.stages
    torch.testing.assert_close(torch.tensor(resumed.cost["flops_drift"]), torch.tensor(straight.cost["flops_drift"]))
