"""What ``aunet sweep run`` does: claim the results folder, save the plan, enqueue, run workers, refresh the table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from aunet.errors import ConfigError
from aunet.io import atomic_write_json, read_json
from aunet.sweeps.plan import Plan
from aunet.sweeps.runner import (
    GRACE_S,
    TrainFn,
    default_storage_url,
    enqueue_missing,
    open_storage,
    open_study,
    run_outcome,
    run_worker,
    waiting_count,
)
from aunet.sweeps.table import refresh_table, save_plan

OWNER_FILE = "sweep.json"


def claim_results_dir(plan: Plan) -> Path:
    """Make ``results/<name>/`` this sweep's, refusing a folder that another definition file already writes."""
    sweep_dir = plan.results_dir
    owner = sweep_dir / OWNER_FILE
    source = str(Path(plan.spec.source).resolve()) if plan.spec.source else ""
    if owner.is_file():
        data = read_json(owner, f"delete it if {sweep_dir} belongs to this sweep")
        claimed = data.get("source", "") if isinstance(data, dict) else ""
        if claimed and source and claimed != source:
            raise ConfigError("name",
                              f"{sweep_dir} already holds the results of {claimed}; give this sweep another name")
    atomic_write_json(owner, {"name": plan.spec.name, "source": source})
    save_plan(sweep_dir, plan.runs_dir, plan.spec.to_dict(), [r.row() for r in plan.runs])
    refresh_table(sweep_dir)
    return sweep_dir


def enqueue(plan: Plan, storage_url: str | None = None, retry_failed: bool = False) -> tuple[str, list[str]]:
    """Claim the folder and enqueue the missing runs; returns the storage URL and the enqueued run ids."""
    sweep_dir = claim_results_dir(plan)
    url = storage_url or default_storage_url(sweep_dir)
    study = open_study(open_storage(url), plan.spec.name, create=True)
    return url, enqueue_missing(study, [r.row() for r in plan.runs], plan.runs_dir, retry_failed=retry_failed)


def run_sweep(plan: Plan, storage_url: str | None = None, workers: int = 1, retry_failed: bool = False,
              train_fn: TrainFn | None = None, grace_s: float = GRACE_S) -> dict[str, Any]:
    """Run every missing run of ``plan`` with ``workers`` local worker processes (1: in this process)."""
    url, enqueued = enqueue(plan, storage_url, retry_failed)
    sweep_dir = plan.results_dir
    stopped: list[str] = []
    print(f"{plan.spec.name}: {len(plan.runs)} runs, {len(enqueued)} to train "
          f"(the others are finished, failed or taken by another worker)", flush=True)
    done = [0]

    def after_run(run_dir: Path) -> None:
        refresh_table(sweep_dir)
        done[0] += 1
        print(f"[{done[0]}/{len(enqueued)}] {run_outcome(run_dir)}", flush=True)

    study = open_study(open_storage(url), plan.spec.name, create=False)
    # No more worker processes than runs waiting: N processes started (importing torch each) to find nothing to do.
    workers = min(workers, waiting_count(study))
    if workers <= 1:  # one run or none: this process (which also takes over the runs of dead workers)
        run_worker(study, train_fn, grace_s=grace_s, after_run=after_run, stopped=stopped)
    else:
        spawn_workers(url, plan.spec.name, workers)
    table = refresh_table(sweep_dir)
    return {"storage": url, "enqueued": enqueued, "table": table, "stopped": stopped}


def spawn_workers(storage_url: str, study_name: str, workers: int) -> None:
    """``workers`` worker processes on this machine, sharing its cores, until the study has nothing waiting."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    procs = [subprocess.Popen([sys.executable, "-m", "aunet", "sweep", "worker", "--storage", storage_url,
                               "--study", study_name], env=env) for _ in range(workers)]
    codes = [p.wait() for p in procs]
    if any(codes):
        raise SystemExit(f"{sum(1 for c in codes if c)} of {workers} workers failed")
