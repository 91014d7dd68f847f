"""An sbatch array script whose tasks are sweep workers sharing one Optuna storage."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path


def sbatch_script(name: str, storage_url: str, *, array: int, gpus: int, cpus: int, hours: float,
                  partition: str | None, log_dir: Path, python: str | None = None) -> str:
    """The script text. Each array task runs one worker (one process; a run that uses several GPUs of the node
    starts its own processes through Lightning), so ``array`` runs train at once; runs that do not fit in a task's
    time are resumed by the next worker that picks them up after the grace period."""
    py = python or sys.executable
    minutes = int(round(hours * 60))
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name=aunet-{name}",
        f"#SBATCH --array=0-{array - 1}",
        "#SBATCH --nodes=1",
        "#SBATCH --ntasks=1",
        f"#SBATCH --cpus-per-task={cpus}",
        f"#SBATCH --time={minutes // 60:02d}:{minutes % 60:02d}:00",
        f"#SBATCH --output={log_dir}/%A_%a.out",
    ]
    if gpus:
        lines.append(f"#SBATCH --gres=gpu:{gpus}")
    if partition:
        lines.append(f"#SBATCH --partition={partition}")
    lines += [
        "",
        "# Each task trains waiting runs of the sweep until none is left (runs were enqueued by 'aunet sweep slurm').",
        "# Lightning must not mistake this single task for a multi-task SLURM job of the run itself.",
        "unset SLURM_NTASKS SLURM_NTASKS_PER_NODE",
        f"exec {shlex.quote(py)} -m aunet sweep worker --storage {shlex.quote(storage_url)} "
        f"--study {shlex.quote(name)}",
        "",
    ]
    return "\n".join(lines)
