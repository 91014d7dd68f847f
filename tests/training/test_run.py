"""Whole training runs: records, budget, exact resume, bad input, DDP. Each run takes a few seconds on CPU."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch

from aunet.cli import main
from aunet.errors import RunError
from aunet.training.run import plan_steps, train
from tests.training.helpers import TINY_AUNET, TINY_BPE, tiny_run

DETERMINISTIC = ["step", "train/loss", "train/lr", "train/flops_spent", "train/units_seen", "val/bpb", "val/loss",
                 "train/boundaries_1"]


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return [{k: r.get(k, "") for k in DETERMINISTIC} for r in csv.DictReader(handle)]


class Crash(Exception):
    pass


class CrashAt(L.Callback):
    """Simulates a crash at the first step after the checkpoint of step ``step`` was written."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step >= self.step:
            raise Crash(f"crash at step {trainer.global_step}")


def test_summary_records_and_falling_bpb(tmp_path, data_dir):
    summary = train(tiny_run(tmp_path, train={"max_steps": 8, "val_every_steps": 4}))
    assert not summary.missing()
    run_dir = tmp_path / "runs" / summary.run_id
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk["weights_sha256"] == summary.weights_sha256 and len(summary.weights_sha256) == 64
    assert summary.flops_spent == 8 * summary.flops_per_step and summary.tokens_seen == 8 * 4 * 64
    assert 0 < summary.bytes_seen <= summary.tokens_seen and summary.bytes_per_token == 1.0
    assert summary.versions["torch"] and summary.git_commit and summary.data_fingerprint
    vals = [float(r["val/bpb"]) for r in rows(run_dir / "metrics.csv") if r["val/bpb"]]
    assert len(vals) == 2 and vals[-1] < vals[0] < 8.5
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and (run_dir / "checkpoints" / "final.ckpt").is_file()
    torch.load(run_dir / "checkpoints" / "final.ckpt", weights_only=True)  # loadable without pickle
    # Per-stage records of the AU-Net: realized boundaries against the cap, from the training log.
    logged = [float(r["train/boundaries_1"]) for r in rows(run_dir / "metrics.csv") if r["train/boundaries_1"]]
    byte_stage, word_stage = summary.stages
    assert word_stage["boundaries"] == pytest.approx(sum(logged) / len(logged)) and 0 < logged[0] <= 24
    assert word_stage["padding"] == pytest.approx(1 - word_stage["boundaries"] / 24)
    assert 0 <= word_stage["truncated"] <= 1 and byte_stage["units_per_param"] > word_stage["units_per_param"] > 0
    assert (run_dir / "config.yaml").is_file()
    # A finished run is not trained again.
    assert train(tiny_run(tmp_path, train={"max_steps": 8, "val_every_steps": 4})).run_id == summary.run_id


def test_killed_and_resumed_run_equals_an_uninterrupted_one(tmp_path, data_dir):
    straight = train(tiny_run(tmp_path / "a"))
    run = tiny_run(tmp_path / "b")
    with pytest.raises(Crash):
        train(run, callbacks=[CrashAt(step=4)])
    run_dir = tmp_path / "b" / "runs" / run.run_id()
    assert not (run_dir / "summary.json").exists() and (run_dir / "checkpoints" / "last.ckpt").is_file()
    with pytest.raises(RunError, match="--resume"):
        train(run)
    resumed = train(run, resume=True)
    assert resumed.weights_sha256 == straight.weights_sha256
    assert resumed.val_bpb == straight.val_bpb and resumed.bytes_seen == straight.bytes_seen
    straight_dir = tmp_path / "a" / "runs" / straight.run_id
    assert rows(run_dir / "metrics.csv") == rows(straight_dir / "metrics.csv")


def test_budget_stop_lands_within_one_step(tmp_path, data_dir):
    per_step = plan_steps(tiny_run(tmp_path)).flops_per_step
    budget = 5.5 * per_step
    summary = train(tiny_run(tmp_path, train={"budget_flops": budget, "val_every_steps": 10}))
    assert summary.steps == 5
    assert budget - per_step < summary.flops_spent <= budget


def test_bpe_run(tmp_path, data_dir):
    summary = train(tiny_run(tmp_path, model=TINY_BPE, train={"max_steps": 4}))
    assert summary.family == "bpe" and summary.bytes_per_token > 1.2
    assert (tmp_path / "runs" / summary.run_id / "tokenizer" / "tokenizer.json").is_file()


def test_nan_loss_stops_cleanly_and_keeps_the_last_checkpoint(tmp_path, data_dir, capsys):
    run = tiny_run(tmp_path, train={"lr": 1e30, "val_every_steps": 1, "warmup_steps": 0})
    cfg = tmp_path / "nan.yaml"
    cfg.write_text(json.dumps(run.to_dict()))
    code = main(["train", str(cfg)])
    err = capsys.readouterr().err
    # The validation after the step that broke the weights sees it first (its NaN losses are counted, not dropped),
    # else the next step's training loss.
    assert code == 2 and err.count("\n") == 1 and ("loss became nan" in err or "non-finite" in err), err
    run_dir = tmp_path / "runs" / run.run_id()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and not (run_dir / "summary.json").exists()
    torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert json.loads((run_dir / "failure.json").read_text())["status"] == "diverged"


def test_weights_that_go_nan_after_the_last_loss_are_caught_by_validation_and_never_a_result(tmp_path, data_dir,
                                                                                             capsys):
    """One step with an LR at the edge of float32: the step's loss is finite (computed before the update), the update
    makes the weights infinite. Validation's NaN losses were dropped (torchmetrics' default), so the run finished with
    val_bpb 0.0000: the best result of any sweep. Now: one line, exit 2, the run recorded as diverged, no summary."""
    run = tiny_run(tmp_path, train={"lr": 3e38, "max_steps": 1, "val_every_steps": 1, "warmup_steps": 0},
                   data={"val_bytes": 512})
    cfg = tmp_path / "edge.yaml"
    cfg.write_text(json.dumps(run.to_dict()))
    code = main(["train", str(cfg)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "error: validation at step 1:" in err and "non-finite next-unit loss(es), val/loss nan" in err, err
    run_dir = tmp_path / "runs" / run.run_id()
    assert not (run_dir / "summary.json").exists()
    failure = json.loads((run_dir / "failure.json").read_text())
    assert failure["status"] == "diverged" and failure["error"].startswith("DivergedError: validation at step 1")
    logged = rows(run_dir / "metrics.csv") if (run_dir / "metrics.csv").is_file() else []
    assert not any(r["val/bpb"] for r in logged)  # no validation value reached the records


def test_a_checkpoint_of_weights_that_are_not_finite_is_never_saved(tmp_path):
    """The last line of defence (a stop on SIGTERM saves without a validation first): save_checkpoint refuses
    non-finite weights, naming the parameter and the step, and writes nothing."""
    from types import SimpleNamespace

    from aunet.errors import DivergedError
    from aunet.training.callbacks import save_checkpoint

    module = torch.nn.Linear(2, 2)
    with torch.no_grad():
        module.bias[1] = float("inf")
    saved = []
    trainer = SimpleNamespace(lightning_module=module, global_step=7, is_global_zero=True,
                              save_checkpoint=lambda path, weights_only: saved.append(path))
    with pytest.raises(DivergedError, match=r"weights became non-finite at step 7 \(bias\)"):
        save_checkpoint(trainer, tmp_path / "last.ckpt")
    assert saved == [] and list(tmp_path.iterdir()) == []


# A training command whose checkpoint save of step 4 raises (an I/O error, as when the run folder is removed while the
# run trains), with one DataLoader worker. Before, the traceback was printed and the process never ended: its exit
# waited on the worker (alive, referenced by the traceback), which ignores SIGTERM, while the worker waited for it.
INJECT = """
import sys, time
from pathlib import Path
from aunet.training.callbacks import LastCheckpoint

save = LastCheckpoint._save

def failing_save(self, trainer):
    if trainer.global_step >= 4:
        Path(sys.argv[1]).write_text(repr(time.time()))
        raise OSError(5, "injected fault (an I/O error at a checkpoint)")
    return save(self, trainer)

LastCheckpoint._save = failing_save
from aunet.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_an_exception_escaping_training_with_a_worker_ends_the_process_at_once(tmp_path, data_dir):
    run = tiny_run(tmp_path, train={"max_steps": 50, "val_every_steps": 2}, data={"num_workers": 1,
                                                                                "val_bytes": 512})
    cfg = tmp_path / "run.yaml"
    cfg.write_text(json.dumps(run.to_dict()))
    raised = tmp_path / "raised"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", INJECT, str(raised), "train", str(cfg)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)  # the main process and its worker
        proc.communicate()
        pytest.fail("the process did not end after the exception (it waits on its DataLoader worker)")
    ended = time.time()
    assert raised.is_file(), err[-2000:]
    assert ended - float(raised.read_text()) < 30, "the process took too long to end after the exception"
    assert proc.returncode == 1 and err.count("\n") == 1, err[-2000:]
    run_dir = tmp_path / "runs" / run.run_id()
    assert err.startswith(f"error: run {run.run_id()} failed: OSError: [Errno 5] injected fault"), err
    assert f"the traceback is in {run_dir / 'failure.json'}" in err
    failure = json.loads((run_dir / "failure.json").read_text())
    assert failure["status"] == "failed" and "injected fault" in failure["traceback"]
    assert not (run_dir / "summary.json").exists()


def test_resume_refuses_a_checkpoint_of_another_config(tmp_path, data_dir):
    run = tiny_run(tmp_path)
    with pytest.raises(Crash):
        train(run, callbacks=[CrashAt(step=2)])
    other = tiny_run(tmp_path, model={**TINY_AUNET, "layers": [1, 2]})
    run_dir = tmp_path / "runs" / run.run_id()
    with pytest.raises(RunError, match="different config"):
        train(other, run_dir=run_dir, resume=True)


@pytest.mark.parametrize(
    "corpus, message",
    [("nowhere/*.txt", "no file matches"), ("empty-dir", "empty"), ("short.txt", "fewer than one sequence")],
)
def test_bad_corpora_exit_2_with_one_line(tmp_path, data_dir, capsys, corpus, message):
    (tmp_path / "empty-dir").mkdir()
    (tmp_path / "short.txt").write_text("tiny text. " * 3)
    run = tiny_run(tmp_path, data={"corpus": str(tmp_path / corpus), "split": "tail", "val_fraction": 0.5})
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(json.dumps(run.to_dict()))
    code = main(["train", str(cfg)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err


def fake_srun(folder: Path) -> str:
    """A PATH with an ``srun`` command first (exits 0), as on a cluster node, with no SLURM task variables."""
    folder.mkdir(exist_ok=True)
    srun = folder / "srun"
    srun.write_text("#!/bin/sh\nexit 0\n")
    srun.chmod(0o755)
    return f"{folder}{os.pathsep}{os.environ['PATH']}"


def test_a_single_process_run_on_a_cluster_node_has_no_srun_warning(tmp_path, data_dir, monkeypatch):
    from lightning.fabric.plugins.environments import SLURMEnvironment

    monkeypatch.setenv("PATH", fake_srun(tmp_path / "bin"))
    monkeypatch.delenv("SLURM_NTASKS", raising=False)  # what the sweep's sbatch script does
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        SLURMEnvironment.detect()  # the fake is seen: Lightning warns here
        assert any("`srun` command" in str(w.message) for w in caught)
        caught.clear()
        # 5 steps, a validation every 2: a fresh fit and a final validation, each of which asks Lightning again.
        train(tiny_run(tmp_path, train={"max_steps": 5}))
    assert not [str(w.message) for w in caught if "srun" in str(w.message)]


@pytest.mark.slow
def test_two_process_ddp_run_on_cpu_records_one_summary(tmp_path, data_dir):
    run = tiny_run(tmp_path, train={"max_steps": 4, "batch_size": 4})
    cfg = tmp_path / "ddp.yaml"
    cfg.write_text(json.dumps(run.to_dict()))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "AUNET_DATA_DIR": str(data_dir.resolve()),
           "PATH": fake_srun(tmp_path / "bin")}
    env.pop("SLURM_NTASKS", None)
    # --resume on a fresh run, as a SLURM script that always passes it: every rank must see that nothing is there yet.
    proc = subprocess.run([sys.executable, "-m", "aunet", "train", str(cfg), "--devices", "2", "--strategy", "ddp",
                           "--resume"], capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summaries = list((tmp_path / "runs").glob("*/summary.json"))
    assert len(summaries) == 1
    summary = json.loads(summaries[0].read_text())
    assert summary["throughput"]["devices"] == 2 and summary["steps"] == 4
    assert summary["tokens_seen"] == 4 * 4 * 64  # the global batch is split over the two processes
    # Quiet: no hint to launch with srun (Lightning starts the ranks), none to log validation with sync_dist.
    assert "srun" not in proc.stderr and "sync_dist" not in proc.stderr, proc.stderr[-3000:]


@pytest.mark.parametrize("model", [TINY_AUNET, TINY_BPE], ids=["aunet", "bpe"])
def test_undecodable_bytes_train_for_both_families(tmp_path, model):
    corpus = tmp_path / "odd"
    corpus.mkdir()
    rng = __import__("random").Random(0)
    for i in range(4):  # prose with invalid UTF-8, NUL bytes and mixed scripts
        chunks = [b"plain words here. ", b"\xff\xfe\x00", "中文 ελληνικά ".encode(), b"\xe2\x80"]
        (corpus / f"doc{i}.txt").write_bytes(b"".join(rng.choice(chunks) for _ in range(400)))
    run = tiny_run(tmp_path, model=model, data={"corpus": str(corpus), "val_documents": ["doc0"]},
                   train={"max_steps": 2, "val_every_steps": 2})
    summary = train(run)
    assert summary.steps == 2 and summary.val_bpb == summary.val_bpb  # finite, not NaN


def test_an_interleaved_run_resumes_exactly(tmp_path, data_dir):
    data = {"stream": "streamed", "interleave_bytes": 2048, "interleave_pool": 8}
    straight = train(tiny_run(tmp_path / "a", data=data))
    run = tiny_run(tmp_path / "b", data=data)
    with pytest.raises(Crash):
        train(run, callbacks=[CrashAt(step=4)])
    resumed = train(run, resume=True)
    assert resumed.weights_sha256 == straight.weights_sha256 and resumed.val_bpb == straight.val_bpb
