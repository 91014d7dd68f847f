"""Running sweeps: nothing twice, resumable after a kill, failures recorded, workers that never collide."""

from __future__ import annotations

import csv
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna

from aunet.cli import main
from aunet.sweeps.driver import enqueue, run_sweep
from aunet.sweeps.plan import plan_sweep
from aunet.sweeps.runner import open_storage, open_study, run_worker
from aunet.sweeps.spec import load_sweep
from tests.sweeps.helpers import stand_in_summary, write_sweep


def table(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def fake_train(log: Path, fail: set[str] = frozenset(), pause: float = 0.0):
    """A stand-in for training: logs the run id, optionally fails, writes a summary."""

    def train(config, run_dir, resume):
        with open(log, "a") as handle:
            handle.write(run_dir.name + "\n")
        time.sleep(pause)
        if run_dir.name.split("-")[0] in fail:
            raise RuntimeError("loss became nan (test double)")
        return stand_in_summary(run_dir, config)

    return train


def test_sweep_runs_everything_once_and_writes_the_table(tmp_path, data_dir, capsys):
    path = write_sweep(tmp_path)
    assert main(["sweep", "run", str(path)]) == 0
    rows = table(tmp_path / "results" / "micro" / "runs.csv")
    assert len(rows) == 4 and {r["status"] for r in rows} == {"finished"}
    assert all(float(r["val_bpb"]) > 0 and float(r["flops_spent"]) > 0 for r in rows)
    for r in rows:  # AU-Net rows carry their per-stage records; BPE rows leave those columns empty
        per_stage = [r["boundaries_1"], r["truncated_1"], r["padding_1"], r["units_per_param_0"]]
        assert all(per_stage) if r["family"] == "aunet2" else not any(per_stage), r
    finished = {r["run_id"]: (Path(r["run_dir"]) / "summary.json").stat().st_mtime for r in rows}
    assert main(["sweep", "run", str(path)]) == 0  # nothing left to do: nothing is trained again
    assert {r["run_id"]: (Path(r["run_dir"]) / "summary.json").stat().st_mtime for r in rows} == finished
    out = capsys.readouterr().out
    assert "4 finished" in out
    assert "micro: 4 runs, 4 to train" in out and "[4/4] finished " in out  # one progress line per run
    assert "micro: 4 runs, 0 to train" in out


def test_progress_lines_give_each_failure_its_reason(tmp_path, data_dir, capsys):
    plan = plan_sweep(load_sweep(write_sweep(tmp_path)))
    run_sweep(plan, train_fn=fake_train(tmp_path / "log.txt", fail={"bpe"}))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert len(lines) == 4
    assert sum("failed bpe-" in line and "loss became nan" in line for line in lines) == 2
    assert sum("finished aunet" in line and "val_bpb 1.0000" in line for line in lines) == 2


def test_failed_runs_are_recorded_and_retried_on_request(tmp_path, data_dir):
    plan = plan_sweep(load_sweep(write_sweep(tmp_path)))
    log = tmp_path / "log.txt"
    result = run_sweep(plan, train_fn=fake_train(log, fail={"bpe"}))
    rows = table(result["table"])
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 2 and all("loss became nan" in r["error"] for r in failed)
    assert sum(r["status"] == "finished" for r in rows) == 2  # the sweep went on
    run_sweep(plan, train_fn=fake_train(log))  # failed runs stay failed...
    assert len(log.read_text().split()) == 4
    rows = table(run_sweep(plan, train_fn=fake_train(log), retry_failed=True)["table"])  # ...until retried
    assert {r["status"] for r in rows} == {"finished"} and len(log.read_text().split()) == 6


def test_killed_runner_finishes_on_the_next_run_with_one_row_per_run(tmp_path, data_dir):
    path = write_sweep(tmp_path)
    env = {**os.environ, "AUNET_DATA_DIR": str(data_dir)}
    proc = subprocess.Popen([sys.executable, "-m", "aunet", "sweep", "run", str(path)], env=env, cwd=tmp_path,
                            stdout=open(tmp_path / "killed.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
    runs = tmp_path / "results" / "runs"
    deadline = time.time() + 240
    while time.time() < deadline and len(list(runs.glob("*/summary.json"))) < 1:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # mid-sweep: one run finished, the next one under way
    proc.wait()
    assert 1 <= len(list(runs.glob("*/summary.json"))) < 4
    assert main(["sweep", "run", str(path)]) == 0
    rows = table(tmp_path / "results" / "micro" / "runs.csv")
    assert len(rows) == 4 and len({r["run_id"] for r in rows}) == 4
    assert {r["status"] for r in rows} == {"finished"}


def _worker(url: str, name: str, log: str) -> None:
    study = open_study(open_storage(url), name, create=False)
    run_worker(study, fake_train(Path(log), pause=0.3), heartbeat_s=0.5)


def test_two_workers_on_one_sqlite_study_never_train_the_same_run(tmp_path, data_dir):
    path = write_sweep(tmp_path, seeds=[0, 1, 2])  # 12 runs
    plan = plan_sweep(load_sweep(path))
    url = f"sqlite:///{tmp_path / 'sweep.db'}"
    _, enqueued = enqueue(plan, url)
    assert len(enqueued) == 12
    log = tmp_path / "log.txt"
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_worker, args=(url, plan.spec.name, str(log))) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    trained = log.read_text().split()
    assert sorted(trained) == sorted(enqueued)  # every run once, none twice
    assert len(list((tmp_path / "results" / "runs").glob("*/summary.json"))) == 12


def test_two_definitions_cannot_share_a_results_folder(tmp_path, data_dir, capsys):
    first = write_sweep(tmp_path)
    other = tmp_path / "copy.yaml"
    other.write_text(first.read_text())
    assert main(["sweep", "slurm", str(first)]) == 0  # claims results/micro (enqueues, trains nothing)
    capsys.readouterr()
    assert main(["sweep", "run", str(other)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already holds the results of" in err


def test_unusable_storage_is_one_line(tmp_path, data_dir, capsys):
    path = write_sweep(tmp_path)
    assert main(["sweep", "run", str(path), "--storage", "nosuchdb://x"]) == 2
    assert "cannot open storage" in capsys.readouterr().err


def test_slurm_script(tmp_path, data_dir, capsys):
    path = write_sweep(tmp_path)
    out = tmp_path / "job.sbatch"
    assert main(["sweep", "slurm", str(path), "--array", "3", "--gpus", "2", "--output", str(out)]) == 0
    script = out.read_text()
    assert "#SBATCH --array=0-2" in script and "--gres=gpu:2" in script and "sweep worker --storage journal:" in script
    assert "4 run(s) enqueued" in capsys.readouterr().out


def test_runs_dropped_from_a_changed_sweep_are_not_trained(tmp_path, data_dir):
    log = tmp_path / "log.txt"
    first = plan_sweep(load_sweep(write_sweep(tmp_path)))
    url, enqueued = enqueue(first)
    assert len(enqueued) == 4
    changed = plan_sweep(load_sweep(write_sweep(tmp_path, budgets=[1.0e9])))  # the 3e9 runs are gone
    result = run_sweep(changed, url, train_fn=fake_train(log))
    assert sorted(log.read_text().split()) == sorted(r.run_id for r in changed.runs)
    assert {r["status"] for r in table(result["table"])} == {"finished"}


def test_a_run_finished_while_waiting_for_its_lock_is_not_trained_again(tmp_path, monkeypatch):
    """The race behind a run trained twice by two workers: finished by the other worker between a worker's check
    and its taking of the lock. The check is repeated under the lock."""
    from aunet.sweeps import runner

    run_dir = tmp_path / "runs" / "aunet2-race"
    run_dir.mkdir(parents=True)
    stand_in_summary(run_dir, val_bpb=1.5)
    real, checks = runner._finished, []

    def finished_after_first_check(d: Path) -> bool:  # unfinished when first looked at, finished under the lock
        checks.append(d)
        return len(checks) > 1 and real(d)

    monkeypatch.setattr(runner, "_finished", finished_after_first_check)
    study = optuna.create_study(direction="minimize")
    runner._enqueue_run(study, "aunet2-race", str(run_dir), {})
    log = tmp_path / "log.txt"
    run_worker(study, fake_train(log))
    assert not log.exists() and len(checks) == 2  # checked again under the lock, and not trained
    assert study.trials[0].value == 1.5 and not (run_dir / ".lock").exists()


def test_a_trial_popped_twice_does_not_stop_the_worker(tmp_path, monkeypatch):
    """Two workers popping one waiting trial (SQLite): the second one's result cannot be told; it goes on."""
    from optuna.exceptions import UpdateFinishedTrialError

    study = optuna.create_study(direction="minimize")
    calls = []

    def optimize(objective, n_trials, catch, gc_after_trial):
        calls.append(1)
        raise UpdateFinishedTrialError("Trial#0 has already finished and can not be updated.")

    waiting = iter([1, 1, 0])
    monkeypatch.setattr(study, "optimize", optimize)
    monkeypatch.setattr("aunet.sweeps.runner.waiting_count", lambda s: next(waiting))
    monkeypatch.setattr("aunet.sweeps.runner.requeue_stale_trials", lambda s, g: [])
    assert run_worker(study, fake_train(tmp_path / "log.txt")) == 2 and len(calls) == 2


def test_no_more_worker_processes_are_started_than_runs_wait(tmp_path, data_dir, monkeypatch):
    """`sweep run --workers N` started N processes (each importing torch) even with nothing to run."""
    from aunet.sweeps import driver

    spawned = []
    monkeypatch.setattr(driver, "spawn_workers", lambda url, name, workers: spawned.append(workers))
    plan = plan_sweep(load_sweep(write_sweep(tmp_path)))
    log = tmp_path / "log.txt"
    run_sweep(plan, workers=3, train_fn=fake_train(log))
    assert spawned == [3]  # four runs wait: three workers
    rows = table(run_sweep(plan, workers=1, train_fn=fake_train(log))["table"])  # the stand-in spawns nothing
    assert {r["status"] for r in rows} == {"finished"}
    spawned.clear()
    run_sweep(plan, workers=3, train_fn=fake_train(log))  # nothing waits: no process
    assert spawned == []
