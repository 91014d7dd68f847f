"""Sweeps and runs under a real SLURM: the array script of `aunet sweep slurm` submitted with sbatch, tasks
pre-empted the two ways a cluster does it, and a 2-process DDP run under srun. `make test-slurm` starts a one-node
cluster (scripts/local-slurm.sh) and runs these; without a cluster answering sinfo they are skipped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from aunet.training.records import RunPaths, read_segments
from aunet.training.summary import RunSummary, load_summary
from tests.training.helpers import tiny_run

pytestmark = pytest.mark.slurm

HERE = Path(__file__).parent
MICRO = HERE / "micro-sweep.yaml"
PREEMPT = HERE / "preempt-sweep.yaml"
DONE_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
               "BOOT_FAIL", "DEADLINE"}


def env() -> dict[str, str]:
    """The environment of everything these tests start; sbatch passes it on to the jobs (--export=ALL)."""
    src = str(Path(__file__).resolve().parents[2] / "src")
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}


def cmd(*args: str, cwd: Path | None = None, timeout: float = 120) -> str:
    """Run a command; its stdout, or a failed assertion with its stderr."""
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, env=env(), cwd=cwd)
    assert done.returncode == 0, f"{' '.join(args)}: exit {done.returncode}\n{done.stderr[-3000:]}"
    return done.stdout


def job_states(job: str) -> list[str]:
    """The states of a job's tasks (an array's pending tasks may be one line); [] once SLURM forgot it."""
    return cmd("squeue", "-h", "-t", "all", "-j", job, "-o", "%T").split()


def wait_until(condition, what: str, timeout: float) -> Any:
    deadline = time.time() + timeout
    while not (value := condition()):
        assert time.time() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.2)
    return value


def wait_done(job: str, timeout: float = 600) -> list[str]:
    """Wait until every task of ``job`` ended; their final states."""
    return wait_until(lambda: (s := job_states(job)) and all(x in DONE_STATES for x in s) and s, f"job {job}",
                      timeout)


def submit(script: Path) -> str:
    return cmd("sbatch", "--parsable", str(script), cwd=script.parent).strip().split(";")[0]


def write_variant(tmp_path: Path, source: Path, **data: Any) -> Path:
    """A copy of a sweep fixture with some ``data`` settings changed."""
    spec = yaml.safe_load(source.read_text())
    spec["data"] = {**spec["data"], **data}
    path = tmp_path / source.name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def sweep_slurm(sweep: Path, results: Path, array: int) -> Path:
    """The README's recipe: `aunet sweep slurm` enqueues the runs and writes the script (one CPU per worker, no
    GPU: what the local node has)."""
    out = cmd(sys.executable, "-m", "aunet", "sweep", "slurm", str(sweep), "--results", str(results), "--array",
              str(array), "--cpus", "1", "--gpus", "0", "--hours", "0.5")
    assert "run(s) enqueued" in out, out
    return results / yaml.safe_load(sweep.read_text())["name"] / "sweep.sbatch"


def run_dirs(results: Path) -> list[Path]:
    return sorted(p for p in (results / "runs").iterdir() if p.is_dir())


def task_logs(results: Path, name: str) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((results / name / "slurm").glob("*.out"))}


def outcome_lines(logs: dict[str, str], word: str) -> list[str]:
    """The run ids of the workers' "finished RUN: ..." (or "failed", "stopped") lines across all task logs."""
    return [line.split()[1].rstrip(":") for text in logs.values() for line in text.splitlines()
            if line.startswith(f"{word} ")]


def summary_of(run_dir: Path) -> RunSummary:
    """The run's summary, or a failed assertion that says why there is none (its failure record)."""
    paths = RunPaths(run_dir)
    summary = load_summary(paths.summary)
    if summary is None:
        failure = json.loads(paths.failure.read_text())["error"] if paths.failure.is_file() else "no failure.json"
        pytest.fail(f"{run_dir.name} did not finish: {failure}")
    return summary


def test_an_array_of_two_workers_finishes_a_sweep_with_every_run_trained_once(tmp_path, data_dir):
    results = tmp_path / "results"
    script = sweep_slurm(MICRO, results, array=2)
    text = script.read_text()
    assert "#SBATCH --cpus-per-task=1" in text and "--gres" not in text  # the options given, nothing else
    job = submit(script)
    assert wait_done(job) == ["COMPLETED", "COMPLETED"]

    runs = run_dirs(results)
    assert len(runs) == 4
    logs = task_logs(results, "slurm-micro")
    assert sorted(logs) == [f"{job}_0.out", f"{job}_1.out"]  # one log per task, named by job and task
    assert sorted(outcome_lines(logs, "finished")) == [p.name for p in runs]  # every run finished, each once
    for name, text in logs.items():
        task = name.removesuffix(".out")
        assert f"aunet: job {task} " in text and "worker done" in text, text[-2000:]
    for run_dir in runs:
        summary_of(run_dir)
        segments = read_segments(RunPaths(run_dir))
        assert [s["start_step"] for s in segments] == [0], segments  # trained in one go, never started twice
    with open(results / "slurm-micro" / "runs.csv") as handle:
        assert handle.read().count(",finished,") == 4


@pytest.fixture(scope="module")
def uninterrupted() -> dict[int, RunSummary]:
    """The pre-emption sweep's run trained in one go by `aunet sweep run`, per DataLoader worker count (filled on
    first use)."""
    return {}


def reference(uninterrupted: dict[int, RunSummary], tmp_path_factory, num_workers: int) -> RunSummary:
    if num_workers not in uninterrupted:
        tmp = tmp_path_factory.mktemp("uninterrupted")
        sweep = write_variant(tmp, PREEMPT, num_workers=num_workers)
        cmd(sys.executable, "-m", "aunet", "sweep", "run", str(sweep), "--results", str(tmp / "results"),
            timeout=600)
        (run_dir,) = run_dirs(tmp / "results")
        uninterrupted[num_workers] = summary_of(run_dir)
    return uninterrupted[num_workers]


@pytest.mark.parametrize("num_workers", [2, 0], ids=["dataloader-workers", "no-dataloader-workers"])
# SLURM 22.05: `scontrol requeue` and `scancel --full` signal every process of the job, DataLoader workers
# included; `scancel --batch` only the batch shell, which the script's `exec` makes the worker itself.
@pytest.mark.parametrize("how", ["scontrol-requeue", "scancel-term-batch", "scancel-term-full"])
def test_a_pre_empted_task_resumes_its_run_once_to_the_uninterrupted_result(tmp_path_factory, tmp_path, data_dir,
                                                                            uninterrupted, how, num_workers):
    straight = reference(uninterrupted, tmp_path_factory, num_workers)
    results = tmp_path / "results"
    script = sweep_slurm(write_variant(tmp_path, PREEMPT, num_workers=num_workers), results, array=1)
    job = submit(script)
    task = f"{job}_0"
    (run_dir,) = wait_until(lambda: run_dirs(results) if (results / "runs").is_dir() else [], "run folder", 300)
    # Signalled once the run has checkpointed: it is training (not loading), and still far from its end.
    wait_until(lambda: RunPaths(run_dir).last_checkpoint.is_file(), "first checkpoint", 300)
    assert job_states(job) == ["RUNNING"] and load_summary(RunPaths(run_dir).summary) is None, "pre-empted too late"

    if how == "scontrol-requeue":
        cmd("scontrol", "requeue", task)  # SIGTERM to every process of the job, then the task waits again
        wait_until(lambda: job_states(job) == ["PENDING"], "requeued task pending", 120)
        # SLURM holds a requeued task for about 2 minutes (its BeginTime); what is tested is the resume, not that.
        cmd("scontrol", "update", f"JobId={task}", "StartTime=now")
        assert wait_done(job) == ["COMPLETED"]
    else:
        # Without --batch or --full, a batch job without steps gets no signal at all.
        cmd("scancel", "--signal=TERM", "--" + how.rsplit("-", 1)[1], task)
        assert wait_done(job) == ["COMPLETED"]  # the worker saved the step, requeued the run and exited 0
        assert load_summary(RunPaths(run_dir).summary) is None, "the run finished before the signal reached it"
        second = submit(script)  # the README's answer: resubmit; finished runs are never retrained
        assert wait_done(second) == ["COMPLETED"]

    logs = task_logs(results, "slurm-preempt")
    summary = summary_of(run_dir)
    assert outcome_lines(logs, "finished") == [run_dir.name], logs  # finished exactly once
    assert sum(text.count("stopped by SIGTERM") for text in logs.values()) == 1, logs
    starts = [s["start_step"] for s in read_segments(RunPaths(run_dir))]
    assert len(starts) == 2 and starts[0] == 0 < starts[1], starts  # resumed from its checkpoint, not restarted
    assert summary.val_bpb == straight.val_bpb and summary.weights_sha256 == straight.weights_sha256
    if how == "scontrol-requeue":  # both starts of the task in one log, appended, with job and task ids
        assert list(logs) == [f"{task}.out"]
        text = logs[f"{task}.out"]
        assert f"aunet: job {task} " in text and "restart 0)" in text and "restart 1)" in text, text[-2000:]


# About 20 ms a step alone; a checkpoint every 10 steps, so a stop after the first one lands mid-run.
DDP = dict(train={"max_steps": 120, "val_every_steps": 10, "batch_size": 4}, data={"val_bytes": 1024})


def srun_train(tmp: Path, name: str, background: bool = False) -> subprocess.Popen | Path:
    """`aunet train` of a tiny run as 2 ranks on one node under srun (Lightning reads the ranks from SLURM; gloo
    on CPU); returns the run folder, or the srun process when ``background``."""
    run = tiny_run(tmp, **DDP)
    tmp.mkdir(parents=True, exist_ok=True)
    config = tmp / "run.yaml"
    config.write_text(json.dumps(run.to_dict()))
    args = ["srun", "-N1", "--ntasks-per-node=2", "--cpus-per-task=1", f"--job-name={name}", sys.executable, "-m",
            "aunet", "train", str(config), "--devices", "2", "--strategy", "ddp", "--accelerator", "cpu",
            "--no-progress", "--resume"]
    proc = subprocess.Popen(args, cwd=tmp, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if background:
        return proc
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return tmp / "runs" / run.run_id()


def test_a_ddp_run_under_srun_stopped_and_resumed_equals_an_uninterrupted_one(tmp_path, data_dir):
    straight = summary_of(srun_train(tmp_path / "straight", "aunet-ddp-straight"))
    proc = srun_train(tmp_path / "stopped", "aunet-ddp-stopped", background=True)
    run_dir = tmp_path / "stopped" / "runs" / straight.run_id
    wait_until(lambda: RunPaths(run_dir).last_checkpoint.is_file() or proc.poll() is not None, "checkpoint", 300)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    (job,) = cmd("squeue", "-h", "-n", "aunet-ddp-stopped", "-o", "%i").split()
    cmd("scancel", "--signal=TERM", job)  # both ranks, as a pre-emption does
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "stopped by SIGTERM" in err, err[-3000:]
    assert load_summary(RunPaths(run_dir).summary) is None, "the run finished before the signal reached it"

    resumed = summary_of(srun_train(tmp_path / "stopped", "aunet-ddp-resumed"))
    starts = [s["start_step"] for s in read_segments(RunPaths(run_dir))]
    assert len(starts) == 2 and 0 < starts[1], starts
    assert resumed.throughput["devices"] == straight.throughput["devices"] == 2  # two ranks, not one process
    assert resumed.val_bpb == straight.val_bpb and resumed.weights_sha256 == straight.weights_sha256
