"""An sbatch array script whose tasks are sweep workers sharing one Optuna storage, sized to what the cluster has."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from aunet.errors import UserError, excerpt

# SLURM's default MaxArraySize is 1001 (task ids 0..1000); a larger --array is refused by sbatch, or a typo.
MAX_ARRAY = 1000
MAX_HOURS = 365 * 24.0
# What a partition name (or a comma-separated list of them) may hold: the name is pasted into the script, and a
# newline in it would add lines of its own (any command) to the job.
_PARTITION = re.compile(r"[A-Za-z0-9_.\-]+(,[A-Za-z0-9_.\-]+)*")
DEFAULT_CPUS = 8
DEFAULT_GPUS = 1
# Seconds before the time limit at which the worker gets SIGTERM: enough for the current optimizer step and a
# checkpoint of a large model on a shared filesystem (SLURM may send it up to 60 s earlier than asked).
SIGNAL_GRACE_S = 300


@dataclass(frozen=True)
class PartitionOffer:
    """The most CPUs and GPUs a single node of a partition has: what one array task can ever be given."""

    name: str
    cpus: int
    gpus: int


def check_partition(partition: str | None) -> None:
    """A UserError unless ``partition`` is None or a SLURM partition name, or a comma-separated list of them."""
    if partition is not None and not _PARTITION.fullmatch(partition):
        raise UserError(f"--partition {excerpt(partition)}: not a partition name (letters, digits, '_', '.', '-'; "
                        "several separated by commas)")


def _gpu_count(gres: str) -> int:
    """GPUs in a node's GRES string of sinfo (``gpu:4``, ``gpu:a100:4(S:0-1)``, ``(null)``)."""
    return sum(int(n) for n in re.findall(r"gpu(?::[^:,(]+)?:(\d+)", gres))


def partition_offer(partition: str | None) -> PartitionOffer | None:
    """What ``partition`` (None: the cluster's default partition) offers per node, from ``sinfo``; None when there
    is no ``sinfo`` or it does not answer (the script is written for another machine: nothing to check here)."""
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%P|%c|%G"], capture_output=True, text=True, timeout=30,
                             check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    nodes = [line.split("|") for line in out.splitlines() if line.count("|") == 2]
    names = sorted({p.rstrip("*") for p, _, _ in nodes})
    chosen = [(p, c, g) for p, c, g in nodes if (p.endswith("*") if partition is None else p.rstrip("*") == partition)]
    if not chosen:
        if partition is None:
            return None  # no default partition: sbatch itself will ask for --partition
        raise UserError(f"--partition {partition}: no such partition here (sinfo lists {', '.join(names) or 'none'})")
    cpus = max(int(m.group()) if (m := re.match(r"\d+", c)) else 0 for _, c, _ in chosen)
    if cpus < 1:  # an answer we cannot read is no answer: write the script as asked
        return None
    return PartitionOffer(chosen[0][0].rstrip("*"), cpus, max(_gpu_count(g) for _, _, g in chosen))


def fit_resources(cpus: int | None, gpus: int | None, offer: PartitionOffer | None) -> tuple[int, int, list[str]]:
    """CPUs and GPUs per task, and notes on defaults lowered to fit. A task asking for more than any node of the
    partition has would stay pending forever (``Reason=PartitionConfig``): an explicit request beyond the offer is
    an error, a default is lowered to the offer."""
    for flag, value in (("--cpus", cpus), ("--gpus", gpus)):
        if value is not None and value < (1 if flag == "--cpus" else 0):
            raise UserError(f"{flag} {value}: expected {'a positive' if flag == '--cpus' else 'a non-negative'} "
                            "number")
    notes: list[str] = []
    resolved = []
    for flag, value, default, have in (("--cpus", cpus, DEFAULT_CPUS, offer and offer.cpus),
                                       ("--gpus", gpus, DEFAULT_GPUS, offer and offer.gpus)):
        if offer is None or (value if value is not None else default) <= have:
            resolved.append(value if value is not None else default)
        elif value is not None:
            raise UserError(f"{flag} {value}: the nodes of partition {offer.name} have at most {have}, so the job "
                            f"could never start; use {flag} {have} or another --partition")
        else:
            notes.append(f"{flag} {have}: partition {offer.name} has at most {have} per node (default {default})")
            resolved.append(have)
    return resolved[0], resolved[1], notes


def absolute_storage_url(url: str) -> str:
    """``url`` with a relative journal or SQLite path made absolute: a job's worker starts in whatever folder SLURM
    gives it, and a relative path there named a new, empty journal (the worker found nothing to train)."""
    if url.startswith("journal:"):
        return f"journal:{Path(url[len('journal:'):]).expanduser().resolve()}"
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url[len(prefix):].startswith("/"):
        return f"{prefix}{Path(url[len(prefix):]).resolve()}"
    return url


def sbatch_script(name: str, storage_url: str, *, array: int, gpus: int, cpus: int, hours: float,
                  partition: str | None, log_dir: Path, python: str | None = None) -> str:
    """The script text. Each array task runs one worker (one process; a run that uses several GPUs of the node
    starts its own processes through Lightning), so ``array`` runs train at once; runs that do not fit in a task's
    time are resumed by the next worker that picks them up after the grace period.

    Pre-emption: the task may be requeued (``--requeue``), and gets SIGTERM ``SIGNAL_GRACE_S`` before its time
    limit (``B:``: the batch shell, which ``exec`` makes the worker itself); either way the run saves its step and
    goes back to the queue. A requeued task appends to the log of its first start (``%A_%a``, ``--open-mode``)."""
    py = python or sys.executable
    check_partition(partition)
    storage_url = absolute_storage_url(storage_url)
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
        "#SBATCH --open-mode=append",
        "#SBATCH --requeue",
        f"#SBATCH --signal=B:TERM@{SIGNAL_GRACE_S}",
    ]
    if gpus:
        lines.append(f"#SBATCH --gres=gpu:{gpus}")
    if partition:
        lines.append(f"#SBATCH --partition={partition}")
    lines += [
        "",
        "# Each task trains waiting runs of the sweep until none is left (runs were enqueued by 'aunet sweep slurm').",
        "# One line per start, so the appended log shows every requeue of the task.",
        'echo "aunet: job ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID} (id ${SLURM_JOB_ID}, restart '
        '${SLURM_RESTART_COUNT:-0}) on $(hostname) at $(date -Is)"',
        "# Lightning must not mistake this single task for a multi-task SLURM job of the run itself.",
        "unset SLURM_NTASKS SLURM_NTASKS_PER_NODE",
        f"exec {shlex.quote(py)} -m aunet sweep worker --storage {shlex.quote(storage_url)} "
        f"--study {shlex.quote(name)}",
        "",
    ]
    return "\n".join(lines)
