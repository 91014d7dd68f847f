"""SIGTERM to a whole training job (DataLoader workers included), as SLURM sends it: a run is never recorded as
failed, and its resume gives the weights of an uninterrupted run. ``scripts/kill-test.py`` runs 20 moments; here a
few of them, and the moments a random kill rarely hits. See docs/reliability.md."""

from __future__ import annotations

import importlib.util
import math
import multiprocessing
import os
import random
import signal
import sys
import time
from pathlib import Path

import lightning as L
import pytest
from torch.utils.data._utils import signal_handling

from aunet.errors import RunStopped
from aunet.training.config import run_config_from_dict
from aunet.training.run import train
from tests.training.helpers import tiny_run

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "kill-test.py"


def _kill_test():
    spec = importlib.util.spec_from_file_location("kill_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_sigterm_to_the_process_group_during_the_fit_never_fails_and_resumes_exactly(tmp_path, data_dir):
    kill = _kill_test()
    env = kill.environment(str(data_dir))
    # The uninterrupted run in this process (Lightning is imported already: seconds less than the script's).
    start = time.monotonic()
    straight = train(run_config_from_dict({**kill.RUN, "train": {**kill.RUN["train"],
                                                                 "results_dir": str(tmp_path / "runs")}}))
    expected = kill.Reference(straight.weights_sha256, straight.val_bpb, math.nan, time.monotonic() - start)
    rng = random.Random()
    for _ in range(2):  # the DataLoader workers live in the fit: a SIGTERM there killed them and failed the run
        delay = rng.uniform(0.0, expected.fit_s)
        moment = kill.kill_once(delay, expected, env, from_checkpoint=True)
        assert moment.ok, f"SIGTERM {delay:.2f} s after the first checkpoint: {moment}"


class SigtermThenWorkerDies(L.Callback):
    """At the start of step ``step``: SIGTERM to this process, then its DataLoader workers die (SIGKILL), as a worker
    killed by the same SIGTERM before its first line could make it ignore the signal."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step != self.step - 1:
            return
        os.kill(os.getpid(), signal.SIGTERM)
        workers = multiprocessing.active_children()
        assert workers, "no DataLoader worker to kill: the run must use data.num_workers >= 1"
        for worker in workers:
            os.kill(worker.pid, signal.SIGKILL)
        time.sleep(5)  # PyTorch reports the dead worker from its SIGCHLD handler, raising here


def test_a_dataloader_worker_dead_with_a_pending_sigterm_is_a_stop_not_a_failure(tmp_path, data_dir, monkeypatch):
    sections = dict(train={"max_steps": 8, "val_every_steps": 4}, data={"val_bytes": 100, "num_workers": 1})
    straight = train(tiny_run(tmp_path / "a", **sections))
    run = tiny_run(tmp_path / "b", **sections)
    # PyTorch installs its SIGCHLD handler (which reports a dead worker at once) on a process's first DataLoader
    # iterator, and the run above left SIGCHLD at its default: here, as in a fresh process, it installs it again.
    monkeypatch.setattr(signal_handling, "_SIGCHLD_handler_set", False)
    with pytest.raises(RunStopped) as stopped:
        train(run, callbacks=[SigtermThenWorkerDies(6)])
    assert stopped.value.step == 4 and "checkpoint of step 4" in str(stopped.value)  # the last checkpoint saved
    resumed = train(run, resume=True)
    assert resumed.weights_sha256 == straight.weights_sha256 and resumed.val_bpb == straight.val_bpb


class SigtermInTheLastValidation(L.Callback):
    """SIGTERM to this process at the start of the validation after the last training step."""

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if batch_idx == 0 and trainer.global_step == trainer.max_steps:
            os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.parametrize("max_steps", [8, 7], ids=["last-step-validation", "final-validation"])
def test_sigterm_once_training_is_complete_finishes_the_run(tmp_path, data_dir, max_steps):
    # 8 steps: the signal comes during the validation of the last step (inside the fit); 7 steps: during the
    # validation train() runs after the fit. Either way the run is a moment from finished: it finishes.
    sections = dict(train={"max_steps": max_steps, "val_every_steps": 4}, data={"val_bytes": 100})
    straight = train(tiny_run(tmp_path / "a", **sections))
    finished = train(tiny_run(tmp_path / "b", **sections), callbacks=[SigtermInTheLastValidation()])
    assert finished.steps == max_steps and finished.weights_sha256 == straight.weights_sha256
    assert finished.val_bpb == straight.val_bpb


def test_sigterm_while_the_data_is_prepared_stops_before_anything_is_written(tmp_path, data_dir, monkeypatch):
    from aunet.training.datamodule import CorpusDataModule

    setup = CorpusDataModule.setup

    def setup_then_sigterm(self, stage=None):
        setup(self, stage)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(CorpusDataModule, "setup", setup_then_sigterm)
    run = tiny_run(tmp_path)
    with pytest.raises(RunStopped) as stopped:
        train(run)
    assert stopped.value.step == 0 and "no checkpoint yet" in str(stopped.value)
    assert not (tmp_path / "runs" / run.run_id() / "config.yaml").exists()
