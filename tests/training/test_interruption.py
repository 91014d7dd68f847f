"""Pre-emption and corrupt state of single runs: real SIGKILL and SIGTERM of `aunet train`, exact resume, atomic
checkpoints, and one-line errors for every truncated or garbled record. See docs/reliability.md."""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch

from aunet.cli import main
from aunet.errors import RunStopped
from aunet.training.records import RunPaths, add_segment, merge_metrics
from aunet.training.run import train
from tests.training.helpers import TINY_BPE, tiny_run
from tests.training.test_run import Crash, CrashAt, rows

# Long enough (150 steps of ~20 ms) that a kill some time after the first checkpoint lands mid-run.
LONG = dict(train={"max_steps": 150, "val_every_steps": 10}, data={"val_bytes": 1024})


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_dir) -> tuple[dict, list]:
    """The uninterrupted run of LONG: its summary and the deterministic columns of its metrics.csv."""
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("reference")
    summary = train(tiny_run(tmp, **LONG))
    return summary, rows(tmp / "runs" / summary.run_id / "metrics.csv")


def start_training(tmp_path: Path, data_dir: Path, **sections) -> tuple[subprocess.Popen, Path]:
    """`aunet train` of a tiny run in a subprocess of its own session; returns it and its run folder."""
    run = tiny_run(tmp_path, **sections)
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps(run.to_dict()))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "AUNET_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "aunet", "train", str(config), "--no-progress"], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    return proc, tmp_path / "runs" / run.run_id()


def wait_for_checkpoints(proc: subprocess.Popen, run_dir: Path, count: int = 2, timeout: float = 120) -> float:
    """Wait until ``count`` checkpoints were written (the fit runs); returns the seconds between the last two, the
    time of 10 steps on this machine now."""
    last, times, deadline = run_dir / "checkpoints" / "last.ckpt", [], time.time() + timeout
    seen = None
    while len(times) < count:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline, "no checkpoint within the timeout"
        try:
            stamp = last.stat().st_mtime_ns
        except FileNotFoundError:
            stamp = None
        if stamp is not None and stamp != seen:
            seen = stamp
            times.append(time.time())
        time.sleep(0.005)
    return times[-1] - times[-2]


def kill_at_a_random_step(proc: subprocess.Popen, run_dir: Path, sig: int) -> float:
    """Send ``sig`` at a random moment between steps 20 and about 100 of 150; returns the delay used."""
    interval = wait_for_checkpoints(proc, run_dir)  # 10 steps
    delay = random.uniform(0.0, 8 * interval)
    time.sleep(delay)
    assert proc.poll() is None, f"the run finished within {delay:.2f} s of its step 20: lengthen LONG"
    if sig == signal.SIGKILL:
        os.killpg(proc.pid, sig)  # the whole session: nothing of the run survives
    else:
        proc.send_signal(sig)
    return delay


def test_sigkill_at_a_random_step_then_resume_equals_an_uninterrupted_run(tmp_path, data_dir, reference):
    proc, run_dir = start_training(tmp_path, data_dir, **LONG)
    delay = kill_at_a_random_step(proc, run_dir, signal.SIGKILL)  # mid-step, mid-validation or mid-checkpoint
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    paths = RunPaths(run_dir)
    assert not paths.summary.exists()
    killed_at = torch.load(paths.last_checkpoint, weights_only=True)["global_step"]  # never a half-written file
    assert 20 <= killed_at < 150, killed_at

    resumed = train(tiny_run(tmp_path, **LONG), resume=True)
    straight, straight_rows = reference
    assert resumed.weights_sha256 == straight.weights_sha256, f"killed after {delay:.2f} s, step {killed_at}"
    assert resumed.val_bpb == straight.val_bpb and resumed.bytes_seen == straight.bytes_seen
    assert rows(paths.metrics) == straight_rows
    assert json.loads((paths.logs / "segments.json").read_text())[-1]["start_step"] == killed_at


def test_sigterm_saves_the_current_step_exits_0_and_resumes_exactly(tmp_path, data_dir, reference):
    proc, run_dir = start_training(tmp_path, data_dir, **LONG)
    kill_at_a_random_step(proc, run_dir, signal.SIGTERM)  # what SLURM sends before pre-empting the job
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    message = [line for line in err.splitlines() if "stopped by SIGTERM" in line]
    assert len(message) == 1 and "--resume" in message[0], err[-3000:]
    step = int(message[0].split("checkpoint of step ")[1].split()[0])
    paths = RunPaths(run_dir)
    # The checkpoint is the step the signal interrupted, not the last validation (every 10 steps)...
    assert torch.load(paths.last_checkpoint, weights_only=True)["global_step"] == step
    assert f"stopped by SIGTERM at step {step}/150" in message[0]
    # ...and the records reach it: metrics.csv holds every step up to it (step k is logged as row k-1).
    assert [int(r["step"]) for r in rows(paths.metrics) if r["train/loss"]] == list(range(step))
    assert not paths.summary.exists()

    resumed = train(tiny_run(tmp_path, **LONG), resume=True)
    straight, straight_rows = reference
    assert resumed.weights_sha256 == straight.weights_sha256 and resumed.val_bpb == straight.val_bpb
    assert rows(paths.metrics) == straight_rows


class SigtermAt(L.Callback):
    """Sends this process SIGTERM once, during step ``step`` (global_step == step - 1): at the start of its first
    micro-batch (``where="train"``) or of its validation (``where="val"``)."""

    def __init__(self, step: int, where: str) -> None:
        self.step, self.where, self.sent = step, where, False

    def _fire(self, trainer) -> None:
        if not self.sent and trainer.global_step == self.step - 1:
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.where == "train":
            self._fire(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        # After the run's own hooks of the batch, before Lightning's end-of-batch check of its flag: the window
        # in which a signal used to stop the fit without saving the step.
        if self.where == "train_end" and not self.sent and trainer.global_step == self.step:
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if self.where == "val" and trainer.state.fn == "fit":
            self.step += 1  # validation of step k runs after its optimizer step (global_step == k)
            self._fire(trainer)
            self.step -= 1


@pytest.mark.parametrize(
    "accumulate, where, step, stops_at",
    [
        (1, "train", 3, 3),  # between validations: saved at the end of the step itself
        (1, "val", 4, 4),  # during a validation (2 batches): it completes, its checkpoint is the stop
        (2, "train", 3, 3),  # in the first half of an accumulation: saved after the optimizer step
        (1, "train_end", 3, 4),  # after the step's hooks: held to the next safe point (step 4's validation)
    ],
    ids=["mid-interval", "mid-validation", "mid-accumulation", "after-the-hooks"],
)
def test_sigterm_stops_on_a_step_a_resume_reproduces(tmp_path, data_dir, accumulate, where, step, stops_at):
    sections = dict(train={"max_steps": 8, "val_every_steps": 4, "accumulate": accumulate},
                    data={"val_bytes": 100})
    straight = train(tiny_run(tmp_path / "a", **sections))
    run = tiny_run(tmp_path / "b", **sections)
    with pytest.raises(RunStopped) as stopped:
        train(run, callbacks=[SigtermAt(step, where)])
    assert stopped.value.step == stops_at and f"step {stops_at}/8" in str(stopped.value)
    run_dir = tmp_path / "b" / "runs" / run.run_id()
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == stops_at
    resumed = train(run, resume=True)
    assert resumed.weights_sha256 == straight.weights_sha256 and resumed.val_bpb == straight.val_bpb
    assert rows(run_dir / "metrics.csv") == rows(tmp_path / "a" / "runs" / run.run_id() / "metrics.csv")


class DieWhileSaving(L.Callback):
    """The process "dies" in the middle of writing the checkpoint of step ``step``: half the bytes reach the file
    Lightning was asked to write, then the save raises."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        if trainer.global_step == self.step:
            trainer.strategy.checkpoint_io.save_checkpoint = self._half_write

    @staticmethod
    def _half_write(checkpoint, path, storage_options=None):
        Path(path).write_bytes(b"PK\x03\x04 half of a zip archive")
        raise Crash("killed while writing the checkpoint")


def test_a_save_killed_half_way_leaves_the_previous_checkpoint(tmp_path, data_dir):
    sections = dict(train={"max_steps": 6, "val_every_steps": 2}, data={"val_bytes": 100})
    straight = train(tiny_run(tmp_path / "a", **sections))
    run = tiny_run(tmp_path / "b", **sections)
    with pytest.raises(Crash):
        train(run, callbacks=[DieWhileSaving(step=4)])
    last = tmp_path / "b" / "runs" / run.run_id() / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 2  # the checkpoint of step 2, whole
    assert train(run, resume=True).weights_sha256 == straight.weights_sha256


def test_a_truncated_last_log_row_is_not_merged(tmp_path):
    """A process killed while Lightning appends to its CSV log leaves a short last row; its step may be missing."""
    paths = RunPaths(tmp_path)
    for version, text in ((0, "loss,step,val\n0.5,0,\n0.4,1,\n0.3"), (1, "loss,step,val\n0.2,1,\n0.1,2,0.9\n")):
        log = paths.logs / f"version_{version}" / "metrics.csv"
        log.parent.mkdir(parents=True)
        log.write_text(text)
        add_segment(paths, version, start_step=version)
    merge_metrics(paths)
    with open(paths.metrics, newline="") as handle:
        assert [(r["step"], r["loss"]) for r in csv.DictReader(handle)] == [("0", "0.5"), ("1", "0.2"), ("2", "0.1")]


# --- corrupt state: one line naming the file, exit 2, nothing rewritten, never a silent restart ----------------------

@pytest.fixture(scope="module")
def unfinished(tmp_path_factory, data_dir) -> tuple[Path, dict]:
    """A run that crashed after its checkpoint of step 2 (of 4): its folder and its config."""
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("unfinished")
    run = tiny_run(tmp, train={"max_steps": 4, "val_every_steps": 2}, data={"val_bytes": 100})
    with pytest.raises(Crash):
        train(run, callbacks=[CrashAt(step=2)])
    return tmp / "runs" / run.run_id(), run.to_dict()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def garble_checkpoint_of_another_family(run_dir: Path) -> None:
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    ckpt["hyper_parameters"]["model"] = dict(TINY_BPE)
    torch.save(ckpt, run_dir / "checkpoints" / "last.ckpt")


CORRUPTIONS = {
    "truncated checkpoint": ("checkpoints/last.ckpt", lambda b: b[: len(b) // 2], "cannot read checkpoint"),
    "garbled checkpoint": ("checkpoints/last.ckpt", lambda b: bytes(x ^ 0x5A for x in b), "cannot read checkpoint"),
    "empty checkpoint": ("checkpoints/last.ckpt", lambda b: b"", "cannot read checkpoint"),
    "checkpoint of another family": ("checkpoints/last.ckpt", None, "checkpoint is from a bpe model"),
    "garbled summary": ("summary.json", lambda b: b'{"val_bpb": 1.2, "ste', "summary.json: unreadable"),
    "garbled segments": ("logs/segments.json", lambda b: b[:-7], "segments.json: unreadable"),
    "garbled config": ("config.yaml", lambda b: b"model: [unclosed\n", "stored config is unusable"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_corrupt_run_state_is_one_line_naming_the_file(tmp_path, unfinished, case, capsys):
    source, config = unfinished
    run_dir = tmp_path / "run"
    shutil.copytree(source, run_dir)
    name, garble, message = CORRUPTIONS[case]
    target = run_dir / name
    if garble is None:
        garble_checkpoint_of_another_family(run_dir)
    else:
        target.write_bytes(garble(target.read_bytes() if target.exists() else b""))
    before = snapshot(run_dir)
    cfg = tmp_path / "run.yaml"
    cfg.write_text(json.dumps(config))
    code = main(["train", str(cfg), "--run-dir", str(run_dir), "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: "), err
    assert message in err and str(target) in err, err
    assert snapshot(run_dir) == before  # nothing written: no restart, no new segment, no records touched


def test_unfinished_run_is_never_restarted_silently(tmp_path, unfinished, capsys):
    source, config = unfinished
    shutil.copytree(source, tmp_path / "run")
    cfg = tmp_path / "run.yaml"
    cfg.write_text(json.dumps(config))
    assert main(["train", str(cfg), "--run-dir", str(tmp_path / "run")]) == 2
    assert "pass --resume to continue it" in capsys.readouterr().err
