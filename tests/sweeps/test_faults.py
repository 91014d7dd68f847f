"""Sweeps under faults: a worker killed while another goes on, runs.csv readable at every moment, failures recorded
and retried from the command line, pre-emption of a worker, and garbled sweep state. See docs/reliability.md."""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest
import torch

import aunet.io
from aunet.cli import main
from aunet.errors import RunStopped
from aunet.sweeps.driver import enqueue, run_sweep
from aunet.sweeps.plan import plan_sweep
from aunet.sweeps.runner import open_storage, open_study, run_worker, waiting_count
from aunet.sweeps.spec import load_sweep
from aunet.sweeps.table import COLUMNS, refresh_table
from aunet.training.run import train as REAL_TRAIN
from tests.sweeps.helpers import stand_in_summary, write_sweep


def table(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def logged_train(log_dir: Path, pause: float = 0.0):
    """A stand-in for training: logs "<pid> <run>" when a run starts and when it finishes."""

    def train(config, run_dir, resume):
        with open(log_dir / "started", "a") as handle:
            handle.write(f"{os.getpid()} {run_dir.name}\n")
        time.sleep(pause)
        summary = stand_in_summary(run_dir, config)
        with open(log_dir / "finished", "a") as handle:
            handle.write(f"{os.getpid()} {run_dir.name}\n")
        return summary

    return train


def logged_sweep(tmp_path: Path):
    """The micro sweep and a logging stand-in for training (its log folder, created): ``(path, log, train)``."""
    log = tmp_path / "log"
    log.mkdir()
    return write_sweep(tmp_path), log, logged_train(log)


def lines(path: Path) -> list[tuple[int, str]]:
    if not path.is_file():
        return []
    return [(int(pid), run) for pid, run in (line.split() for line in path.read_text().splitlines())]


def _worker(url: str, name: str, log_dir: str, pause: float) -> None:
    torch.set_num_threads(1)
    study = open_study(open_storage(url), name, create=False)
    run_worker(study, logged_train(Path(log_dir), pause), heartbeat_s=0.2)


def test_a_worker_killed_mid_run_is_taken_over_by_the_survivor_and_every_run_finishes_once(tmp_path, data_dir):
    plan = plan_sweep(load_sweep(write_sweep(tmp_path, seeds=[0, 1, 2])))  # 12 runs
    url, enqueued = enqueue(plan)  # the default storage: a journal file
    ctx = multiprocessing.get_context("fork")
    victim, survivor = (ctx.Process(target=_worker, args=(url, plan.spec.name, str(tmp_path), 0.25)) for _ in "ab")
    victim.start()
    survivor.start()
    deadline = time.time() + 60
    while True:  # kill the victim as soon as it is inside a run (started, not finished), holding the run's lock
        started = [run for pid, run in lines(tmp_path / "started") if pid == victim.pid]
        finished = [run for pid, run in lines(tmp_path / "finished") if pid == victim.pid]
        if len(started) > len(finished):
            break
        assert time.time() < deadline
        time.sleep(0.005)
    os.kill(victim.pid, signal.SIGKILL)
    # The victim is not reaped until the end: like a worker of `aunet sweep run --workers 2`, it stays a zombie.
    survivor.join(120)
    victim.join(5)
    assert survivor.exitcode == 0
    started, finished = lines(tmp_path / "started"), lines(tmp_path / "finished")
    orphan = [run for pid, run in started if pid == victim.pid][-1]
    assert orphan not in {run for pid, run in finished if pid == victim.pid}  # it was killed in that run
    assert sorted(run for _, run in finished) == sorted(enqueued)  # every run finished exactly once...
    assert [run for pid, run in started if pid == survivor.pid].count(orphan) == 1  # ...the orphan by the survivor
    rows = table(refresh_table(plan.results_dir))
    assert len(rows) == 12 and {r["status"] for r in rows} == {"finished"}


def _sweep_in_background(plan, log_dir: str, pause: float) -> None:
    torch.set_num_threads(1)
    run_sweep(plan, train_fn=logged_train(Path(log_dir), pause))


def test_runs_csv_is_complete_and_parseable_at_every_moment(tmp_path, data_dir):
    plan = plan_sweep(load_sweep(write_sweep(tmp_path, seeds=[0, 1, 2])))  # 12 runs
    proc = multiprocessing.get_context("fork").Process(target=_sweep_in_background, args=(plan, str(tmp_path), 0.05))
    proc.start()
    runs_csv = tmp_path / "results" / "micro" / "runs.csv"
    reads, finished_seen = 0, []
    while proc.exitcode is None:
        if runs_csv.exists():
            with open(runs_csv, newline="") as handle:  # read while the sweep rewrites it after every run
                reader = csv.DictReader(handle)
                rows = list(reader)
            assert reader.fieldnames[: len(COLUMNS)] == COLUMNS and len(rows) == 12, rows
            assert all(r["run_id"] and r["status"] in ("planned", "finished") for r in rows)
            finished_seen.append(sum(r["status"] == "finished" for r in rows))
            reads += 1
        time.sleep(0.001)
    proc.join()
    assert proc.exitcode == 0 and reads > 20
    assert finished_seen == sorted(finished_seen) and finished_seen[-1] == 12  # never a step back


def test_a_table_write_killed_half_way_leaves_the_previous_table(tmp_path, monkeypatch):
    before = tmp_path / "runs.csv"
    before.write_text("run_id,status\na,finished\n")

    def die(fd):
        raise KeyboardInterrupt  # the process stops between writing the new bytes and renaming them into place

    monkeypatch.setattr(aunet.io.os, "fsync", die)
    with pytest.raises(KeyboardInterrupt):
        aunet.io.atomic_write_text(before, "run_id,status\na,finished\nb,fini")
    assert before.read_text() == "run_id,status\na,finished\n" and [p.name for p in tmp_path.iterdir()] == ["runs.csv"]


def failing_train(fail: dict[str, BaseException]):
    """The real training, except that the runs whose family is in ``fail`` raise the given exception instead."""

    def train(config, run_dir, resume):
        family = run_dir.name.split("-")[0]
        if family in fail:
            raise fail[family]
        return REAL_TRAIN(config, run_dir=run_dir, resume=resume)

    return train


def test_oom_and_nan_runs_are_recorded_the_sweep_goes_on_and_retry_failed_retries(tmp_path, data_dir, monkeypatch,
                                                                                  capsys):
    import aunet.training.run

    # aunet2 at 1e9 FLOPs diverges for real (LR 1e30); bpe runs meet an out-of-memory error (a test double).
    path = write_sweep(tmp_path, hparams={"aunet": {"lr": 1.0e30, "batch_bytes": 256},
                                          "bpe": {"lr": 3.0e-3, "batch_bytes": 256}}, budgets=[1.0e9])
    oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (test double)")
    monkeypatch.setattr(aunet.training.run, "train", failing_train({"bpe": oom}))
    assert main(["sweep", "run", str(path)]) == 0
    out = capsys.readouterr().out
    rows = {r["family"]: r for r in table(tmp_path / "results" / "micro" / "runs.csv")}
    assert rows["bpe"]["status"] == "failed" and rows["bpe"]["error"].startswith("OutOfMemoryError: CUDA out of")
    # A NaN is recorded as a divergence (failure.json and the table), never as a finished run.
    assert rows["aunet2"]["status"] == "diverged"
    assert "DivergedError: training loss became nan" in rows["aunet2"]["error"]
    assert "failed bpe-" in out and "diverged aunet2-" in out
    failure = json.loads((Path(rows["bpe"]["run_dir"]) / "failure.json").read_text())
    assert "Traceback" in failure["traceback"] and failure["host"]

    monkeypatch.setattr(aunet.training.run, "train", failing_train({}))  # the memory is there now
    assert main(["sweep", "run", str(path)]) == 0  # without --retry-failed, failed runs stay failed
    failed = [r["status"] for r in table(tmp_path / "results" / "micro" / "runs.csv")]
    assert set(failed) == {"failed", "diverged"}
    capsys.readouterr()
    assert main(["sweep", "slurm", str(path)]) == 0  # nor does a SLURM sweep enqueue them...
    assert "0 run(s) enqueued" in capsys.readouterr().out
    assert main(["sweep", "slurm", str(path), "--retry-failed"]) == 0  # ...unless asked to
    assert f"{len(failed)} run(s) enqueued" in capsys.readouterr().out
    assert main(["sweep", "run", str(path), "--retry-failed"]) == 0  # trains them (waiting already)
    rows = {r["family"]: r for r in table(tmp_path / "results" / "micro" / "runs.csv")}
    assert rows["bpe"]["status"] == "finished" and float(rows["bpe"]["val_bpb"]) > 0
    assert not (Path(rows["bpe"]["run_dir"]) / "failure.json").exists()
    assert rows["aunet2"]["status"] == "diverged" and "nan" in rows["aunet2"]["error"]  # still diverges: recorded


def test_a_pre_empted_worker_requeues_its_run_and_exits_cleanly(tmp_path, data_dir, monkeypatch, capsys):
    import aunet.training.run

    path, log, fake = logged_sweep(tmp_path)
    calls = []

    def pre_empted_once(config, run_dir, resume):
        calls.append(run_dir.name)
        if len(calls) == 2:  # SIGTERM during the second run: checkpoint saved, RunStopped raised by train()
            raise RunStopped("stopped by SIGTERM at step 3/9; checkpoint of step 3 in ...", step=3)
        return fake(config, run_dir, resume)

    monkeypatch.setattr(aunet.training.run, "train", pre_empted_once)
    assert main(["sweep", "run", str(path)]) == 0
    err = capsys.readouterr().err
    assert f"stopped {calls[1]}: stopped by SIGTERM at step 3/9" in err and "back in the queue" in err
    assert len(calls) == 2  # the worker took nothing after the signal
    rows = {r["run_id"]: r for r in table(tmp_path / "results" / "micro" / "runs.csv")}
    assert rows[calls[1]]["status"] == "planned" and not (Path(rows[calls[1]]["run_dir"]) / "failure.json").exists()
    study = open_study(open_storage(f"journal:{tmp_path / 'results' / 'micro' / 'optuna.journal'}"), "micro", False)
    assert waiting_count(study) == 3  # the stopped run is waiting again, with the two never started

    assert main(["sweep", "run", str(path)]) == 0
    rows = table(tmp_path / "results" / "micro" / "runs.csv")
    assert {r["status"] for r in rows} == {"finished"}
    assert sorted(run for _, run in lines(log / "finished")) == sorted(r["run_id"] for r in rows)  # each once


def test_sigterm_as_a_run_finishes_ends_the_worker_with_that_run_finished(tmp_path, data_dir, monkeypatch, capsys):
    import aunet.training.run

    path, log, fake = logged_sweep(tmp_path)
    calls = []

    def signalled_at_the_end(config, run_dir, resume):
        calls.append(run_dir.name)
        summary = fake(config, run_dir, resume)
        if len(calls) == 1:  # SIGTERM once the first run's records are written (train() finishes such a run)
            os.kill(os.getpid(), signal.SIGTERM)
        return summary

    monkeypatch.setattr(aunet.training.run, "train", signalled_at_the_end)
    assert main(["sweep", "run", str(path)]) == 0  # the default action of SIGTERM would have killed this process
    assert len(calls) == 1  # the worker took nothing after the signal
    rows = {r["run_id"]: r for r in table(tmp_path / "results" / "micro" / "runs.csv")}
    assert rows[calls[0]]["status"] == "finished" and not any(r["status"] == "failed" for r in rows.values())
    study = open_study(open_storage(f"journal:{tmp_path / 'results' / 'micro' / 'optuna.journal'}"), "micro", False)
    assert waiting_count(study) == len(rows) - 1  # the others wait for the next worker


# --- garbled sweep state -------------------------------------------------------------------------------------------

@pytest.fixture
def fake_training(monkeypatch, tmp_path):
    import aunet.training.run

    (tmp_path / "log").mkdir()
    monkeypatch.setattr(aunet.training.run, "train", logged_train(tmp_path / "log"))


def test_a_garbled_journal_is_one_line_and_a_torn_last_entry_is_cut(tmp_path, data_dir, fake_training, capsys):
    path = write_sweep(tmp_path)
    journal = tmp_path / "results" / "micro" / "optuna.journal"
    assert main(["sweep", "slurm", str(path)]) == 0  # enqueues into the journal, trains nothing
    good = journal.read_bytes()
    journal.write_bytes(good + b'{"op_code": 5, "worker_id": "x", "trial_id"')  # a writer killed mid-append
    capsys.readouterr()
    assert main(["sweep", "run", str(path)]) == 0
    assert {r["status"] for r in table(tmp_path / "results" / "micro" / "runs.csv")} == {"finished"}

    journal.write_bytes(good[:40] + b"\x00garbage\n" + good[40:])  # damage in the middle
    assert main(["sweep", "run", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"error: {journal}: garbled sweep journal" in err and "delete it" in err


@pytest.mark.parametrize("name", ["sweep.json", "plan.json", "runs.csv"])
def test_garbled_sweep_files_are_named_or_rebuilt(tmp_path, data_dir, fake_training, capsys, name):
    path = write_sweep(tmp_path)
    assert main(["sweep", "run", str(path)]) == 0
    target = tmp_path / "results" / "micro" / name
    target.write_bytes(target.read_bytes()[:25])
    capsys.readouterr()
    if name == "sweep.json":  # who owns the folder cannot be guessed: one line
        assert main(["sweep", "run", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"error: {target}: unreadable" in err and "delete it" in err
    elif name == "plan.json":  # read by `sweep eval`: one line; `sweep run` writes it again from the definition
        assert main(["sweep", "eval", str(path), "--tasks", "arc_easy"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"error: {target}: unreadable" in err and "aunet sweep run" in err
        assert main(["sweep", "run", str(path)]) == 0 and json.loads(target.read_text())["runs"]
    else:  # never read back: rebuilt whole from the plan and the run folders
        assert main(["sweep", "run", str(path)]) == 0
        assert len(table(target)) == 4 and {r["status"] for r in table(target)} == {"finished"}
    assert len(lines(tmp_path / "log" / "finished")) == 4  # and nothing was trained again


def test_a_garbled_run_summary_is_a_failed_row_naming_it_never_a_silent_restart(tmp_path, data_dir, capsys):
    path = write_sweep(tmp_path, budgets=[1.0e9])
    assert main(["sweep", "run", str(path)]) == 0  # real training, two micro runs
    rows = table(tmp_path / "results" / "micro" / "runs.csv")
    summary = Path(rows[0]["run_dir"]) / "summary.json"
    summary.write_text(summary.read_text()[:30])
    assert main(["sweep", "run", str(path)]) == 0
    rows = {r["run_id"]: r for r in table(tmp_path / "results" / "micro" / "runs.csv")}
    broken = rows[summary.parent.name]
    assert broken["status"] == "failed" and f"{summary}: unreadable" in broken["error"], broken
    assert len(summary.read_text()) == 30  # left for the user to look at, never overwritten by a restarted run
    assert sum(r["status"] == "finished" for r in rows.values()) == 1


def test_a_run_folder_copied_over_another_runs_is_a_failed_row_never_that_runs_result(tmp_path, data_dir):
    """One finished run's folder copied over another run id's: the table put the other run's parameters, bits per
    byte and FLOPs into this run's row. A record is tabled only as the run its config fingerprint names."""
    import shutil

    path, log, fake = logged_sweep(tmp_path)
    plan = plan_sweep(load_sweep(path))
    table_path = run_sweep(plan, train_fn=fake)["table"]
    source, target = (Path(r["run_dir"]) for r in table(table_path)[:2])
    shutil.rmtree(target)
    shutil.copytree(source, target)
    rows = {r["run_id"]: r for r in table(refresh_table(plan.results_dir))}
    copied = rows[target.name]
    assert copied["status"] == "failed" and copied["val_bpb"] == "" and copied["flops_spent"] == ""
    assert f"{target / 'summary.json'}: the record of another run" in copied["error"], copied
    assert rows[source.name]["status"] == "finished"
    (target / "summary.json").write_text(json.dumps({}))  # a record of nothing is no result either
    copied = {r["run_id"]: r for r in table(refresh_table(plan.results_dir))}[target.name]
    assert copied["status"] == "failed" and "not a usable run record (no run_id" in copied["error"], copied
