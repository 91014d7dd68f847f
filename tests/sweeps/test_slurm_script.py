"""The script of `aunet sweep slurm` fits the cluster: CPUs and GPUs checked against what sinfo says a node of the
partition has, logs appended across requeues, the pre-emption signal stated, --retry-failed. A stand-in `sinfo` on
PATH plays the cluster (the real one is exercised by tests/slurm/)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from aunet.cli import main
from aunet.errors import UserError
from aunet.io import atomic_write_json
from aunet.sweeps.slurm import PartitionOffer, fit_resources, partition_offer
from aunet.training.records import RunPaths
from tests.sweeps.helpers import write_sweep


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    """Install a `sinfo` that prints the given node lines (as `sinfo -h -N -o %P|%c|%G` would) first on PATH."""

    def install(*nodes: str, fail: bool = False) -> None:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        sinfo = bin_dir / "sinfo"
        body = "echo 'sinfo: error: no controller' >&2; exit 1" if fail else f"printf '%s\\n' {' '.join(nodes)}"
        sinfo.write_text(f"#!/bin/sh\n{body}\n")
        sinfo.chmod(0o755)
        monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")

    return install


def test_partition_offer_reads_the_largest_node_of_the_default_or_named_partition(cluster):
    cluster("'cpu*|2|(null)'", "'cpu*|16|(null)'", "'gpu|64|gpu:a100:4(S:0-1),gpu:v100:2'", "'gpu|32|gpu:8'")
    assert partition_offer(None) == PartitionOffer("cpu", 16, 0)
    assert partition_offer("gpu") == PartitionOffer("gpu", 64, 8)
    with pytest.raises(UserError, match="no such partition here .sinfo lists cpu, gpu."):
        partition_offer("debug")


def test_no_cluster_means_nothing_to_check(cluster, monkeypatch):
    cluster("'odd*|N/A|(null)'")
    assert partition_offer(None) is None  # an answer without CPU counts checks nothing
    cluster(fail=True)
    assert partition_offer(None) is None
    monkeypatch.setenv("PATH", "/nonexistent")  # no sinfo at all
    assert partition_offer("gpu") is None
    assert fit_resources(None, None, None) == (8, 1, [])  # the defaults, for a cluster we cannot see
    assert fit_resources(64, 4, None) == (64, 4, [])


def test_requests_beyond_a_node_are_refused_defaults_lowered():
    small = PartitionOffer("debug", 2, 0)
    cpus, gpus, notes = fit_resources(None, None, small)
    assert (cpus, gpus) == (2, 0) and len(notes) == 2 and notes[0].startswith("--cpus 2: partition debug has")
    assert fit_resources(2, 0, small) == (2, 0, [])
    with pytest.raises(UserError, match="--cpus 8: the nodes of partition debug have at most 2, so the job could"):
        fit_resources(8, 0, small)
    with pytest.raises(UserError, match="--gpus 1: the nodes of partition debug have at most 0"):
        fit_resources(1, 1, small)
    with pytest.raises(UserError, match="--cpus 0: expected a positive number"):
        fit_resources(0, None, None)


def test_a_script_that_could_never_start_is_one_line_and_not_written(tmp_path, data_dir, cluster, capsys):
    cluster("'debug*|2|(null)'")
    path = write_sweep(tmp_path)
    out = tmp_path / "job.sbatch"
    assert main(["sweep", "slurm", str(path), "--cpus", "8", "--gpus", "0", "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--cpus 8: the nodes of partition debug have at most 2" in err
    assert not out.exists() and not (tmp_path / "results" / "micro").exists()  # nothing enqueued either

    assert main(["sweep", "slurm", str(path), "--output", str(out)]) == 0  # defaults: lowered to the node, said so
    assert "--cpus 2: partition debug has at most 2 per node (default 8)" in capsys.readouterr().err
    script = out.read_text()
    assert "#SBATCH --cpus-per-task=2" in script and "--gres" not in script


def test_the_script_appends_its_logs_per_job_and_task_and_states_the_requeue_signal(tmp_path, data_dir, cluster):
    cluster(fail=True)
    path = write_sweep(tmp_path)
    out = tmp_path / "job.sbatch"
    assert main(["sweep", "slurm", str(path), "--cpus", "4", "--hours", "1.5", "--output", str(out)]) == 0
    lines = out.read_text().splitlines()
    log_dir = (tmp_path / "results" / "micro" / "slurm").resolve()
    for line in (f"#SBATCH --output={log_dir}/%A_%a.out", "#SBATCH --open-mode=append", "#SBATCH --requeue",
                 "#SBATCH --signal=B:TERM@300", "#SBATCH --cpus-per-task=4", "#SBATCH --gres=gpu:1",
                 "#SBATCH --time=01:30:00"):
        assert line in lines
    assert any("${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}" in line and "SLURM_RESTART_COUNT" in line
               for line in lines if line.startswith("echo "))
    # The signal goes to the batch shell only (B:): the worker must be that shell, not a child of it.
    assert lines[-1].startswith("exec ") and " sweep worker " in lines[-1]


def test_retry_failed_enqueues_failed_runs_again(tmp_path, data_dir, cluster, capsys):
    cluster(fail=True)
    path = write_sweep(tmp_path)
    assert main(["sweep", "slurm", str(path)]) == 0
    assert "4 run(s) enqueued" in capsys.readouterr().out
    with open(tmp_path / "results" / "micro" / "runs.csv", newline="") as handle:
        failed = Path(next(csv.DictReader(handle))["run_dir"])
    atomic_write_json(RunPaths(failed).failure, {"error": "OutOfMemoryError: test double", "traceback": ""})
    journal = tmp_path / "results" / "micro" / "optuna.journal"
    journal.unlink()  # an empty queue: what is enqueued now follows from the run folders alone
    assert main(["sweep", "slurm", str(path)]) == 0
    assert "3 run(s) enqueued" in capsys.readouterr().out  # a failed run stays failed...
    journal.unlink()
    assert main(["sweep", "slurm", str(path), "--retry-failed"]) == 0
    assert "4 run(s) enqueued" in capsys.readouterr().out  # ...unless asked, as with `aunet sweep run`


def test_the_script_names_its_queue_by_an_absolute_path(tmp_path, data_dir, cluster, monkeypatch):
    """A sweep planned from a relative results folder: the worker of the script starts wherever SLURM puts it, and a
    relative journal there was a new, empty queue (the worker found nothing to train)."""
    from aunet.sweeps.slurm import absolute_storage_url

    cluster(fail=True)
    path = write_sweep(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "slurm", str(path), "--results", "rel-results"]) == 0
    script = (tmp_path / "rel-results" / "micro" / "sweep.sbatch").read_text()
    journal = tmp_path / "rel-results" / "micro" / "optuna.journal"
    assert f"--storage journal:{journal.resolve()} " in script and journal.is_file()
    assert absolute_storage_url("sqlite:///q.db") == f"sqlite:///{tmp_path.resolve() / 'q.db'}"
    assert absolute_storage_url("sqlite:////abs/q.db") == "sqlite:////abs/q.db"
    assert absolute_storage_url("postgresql://host/db") == "postgresql://host/db"
