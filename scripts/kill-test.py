#!/usr/bin/env python
"""SIGTERM to a whole training job at random moments: the run must never end as failed, and once resumed it must
give the weights of an uninterrupted run.

SLURM's stop (``scontrol requeue``, ``scancel``, the time limit) sends SIGTERM to every process of the job,
DataLoader workers included. This script starts a tiny ``aunet train`` (``data.num_workers`` >= 1) in a process
group of its own, sends SIGTERM to the whole group (``os.killpg``) after a random delay drawn over the lifetime of
an uninterrupted run (imports, data preparation, training steps, validations, checkpoint writes, the summary),
resumes the run with ``--resume`` until it finishes, and compares ``weights_sha256`` and ``val_bpb`` of
``summary.json`` with the uninterrupted run's. Every other moment is drawn over the fit alone (counted from the first
checkpoint), where the DataLoader workers run. It prints one row per moment.

    python scripts/kill-test.py --moments 20 [--seed 0] [--record]

``--record`` writes the table to BENCHMARKS.md (section ``kill-test``) and ``benchmarks/bench-kill-test.json``.
Exit status 1 when any moment ends as failed or with other weights. ``tests/training/test_kill.py`` runs a few
moments of the same code.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

# Long enough (150 steps, a validation every 10) that a good share of the random moments land inside the fit.
RUN = {
    "name": "kill-test",
    "model": dict(family="aunet", dims=[32, 48], layers=[1, 1], head_dims=[16, 16], caps=[64, 24],
                  splits=["word@1"], windows=[32, None], ffn_multiple_of=16),
    "data": {"corpus": "tinyshakespeare", "val_bytes": 1024, "num_workers": 1, "shuffle_buffer": 16},
    "train": {"max_steps": 150, "batch_size": 4, "val_every_steps": 10, "lr": 3e-3},
    "trainer": {"accelerator": "cpu", "progress_bar": False},
}


@dataclass
class Moment:
    """What one SIGTERM did: when it came, how the stopped process ended, and how the resumed run finished."""

    delay_s: float
    after: str  # what the delay counts from: "start" or "1st checkpoint"
    exit_code: int | None  # of the process that got the signal
    outcome: str  # stopped at step k / before training / finished / FAILED ... / KILLED ...
    resumes: int
    weights_match: bool

    @property
    def ok(self) -> bool:
        return self.weights_match and not self.outcome.startswith(("FAILED", "KILLED"))


def _train(workdir: Path, resume: bool, env: dict[str, str]) -> subprocess.Popen:
    """``aunet train`` of :data:`RUN` in ``workdir``, in a new session (its own process group, as a SLURM job)."""
    config = workdir / "run.json"
    config.write_text(json.dumps({**RUN, "train": {**RUN["train"], "results_dir": str(workdir / "runs")}}))
    command = [sys.executable, "-m", "aunet", "train", str(config), "--no-progress"] + (["--resume"] if resume else [])
    return subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def _summary(workdir: Path) -> dict | None:
    found = list((workdir / "runs").glob("*/summary.json"))
    return json.loads(found[0].read_text()) if found else None


def _finish(workdir: Path, env: dict[str, str], attempts: int = 3) -> tuple[int, dict | None, str]:
    """Resume until the run has a summary; returns the resumes, the summary and the last stderr."""
    err = ""
    for count in range(1, attempts + 1):
        _, err = _train(workdir, True, env).communicate()
        summary = _summary(workdir)
        if summary is not None:
            return count, summary, err
    return attempts, None, err


def _outcome(code: int, err: str, workdir: Path) -> str:
    """How the signalled process ended, from its exit status, its last lines and the run folder."""
    stopped = [line for line in err.splitlines() if "stopped by SIGTERM" in line]
    checkpoint = any((workdir / "runs").glob("*/checkpoints/last.ckpt"))
    if code == 0 and stopped:
        line = stopped[-1]
        if "checkpoint of step " in line:
            return f"stopped, checkpoint of step {line.split('checkpoint of step ')[1].split()[0]}"
        return "stopped before training"
    if _summary(workdir) is not None:  # the signal came after the summary: the run was complete
        return "finished" if code == 0 else f"finished (exit {code}: killed while exiting)"
    if code == -signal.SIGTERM and not checkpoint and not any((workdir / "runs").glob("*/failure.json")):
        return "not started (killed while starting)"  # before the run's handler: nothing of the run written
    last = (err.strip().splitlines() or ["?"])[-1][:80]
    return f"{'KILLED' if code == -signal.SIGTERM else 'FAILED'} (exit {code}): {last}"


@dataclass(frozen=True)
class Reference:
    """The uninterrupted run: its result, the seconds from start to exit, and from its first checkpoint to exit."""

    weights_sha256: str
    val_bpb: float
    lifetime_s: float
    fit_s: float


def _wait_for_checkpoint(proc: subprocess.Popen, workdir: Path, timeout: float = 300.0) -> bool:
    """Wait until the run wrote its first checkpoint (the fit runs, its DataLoader workers with it); False when the
    process ended first."""
    deadline = time.monotonic() + timeout
    while not any((workdir / "runs").glob("*/checkpoints/last.ckpt")):
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def reference(env: dict[str, str]) -> Reference:
    """Train the uninterrupted run once."""
    with tempfile.TemporaryDirectory(prefix="kill-test-ref-") as tmp:
        start = time.monotonic()
        proc = _train(Path(tmp), False, env)
        checkpoint = time.monotonic() if _wait_for_checkpoint(proc, Path(tmp)) else None
        _, err = proc.communicate()
        summary = _summary(Path(tmp))
        if proc.returncode != 0 or summary is None or checkpoint is None:
            raise SystemExit(f"the uninterrupted run failed (exit {proc.returncode}):\n{err[-3000:]}")
        end = time.monotonic()
        return Reference(summary["weights_sha256"], summary["val_bpb"], end - start, end - checkpoint)


def kill_once(delay: float, expected: Reference, env: dict[str, str], from_checkpoint: bool = False) -> Moment:
    """Start a fresh run, SIGTERM its whole process group ``delay`` seconds after its start (or after its first
    checkpoint), resume it to the end and compare its result with ``expected``."""
    with tempfile.TemporaryDirectory(prefix="kill-test-") as tmp:
        workdir = Path(tmp)
        proc = _train(workdir, False, env)
        if from_checkpoint:
            _wait_for_checkpoint(proc, workdir)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)  # the main process and its DataLoader workers, as SLURM does
        _, err = proc.communicate()
        outcome = _outcome(proc.returncode, err, workdir)
        summary = _summary(workdir)
        resumes, summary, resume_err = (0, summary, "") if summary is not None else _finish(workdir, env)
        if summary is None:
            outcome += f"; resume failed: {(resume_err.strip().splitlines() or ['?'])[-1][:80]}"
        match = summary is not None and (summary["weights_sha256"], summary["val_bpb"]) == (expected.weights_sha256,
                                                                                             expected.val_bpb)
        return Moment(round(delay, 2), "1st checkpoint" if from_checkpoint else "start", proc.returncode, outcome,
                      resumes, match)


def environment(data_dir: str | None = None) -> dict[str, str]:
    """The subprocesses' environment: one thread each, unbuffered, this checkout's ``aunet`` first."""
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    if data_dir:
        env["AUNET_DATA_DIR"] = data_dir
    return env


def table(moments: list[Moment], expected: Reference) -> str:
    """The markdown table of the moments, with a one-line verdict."""
    lines = [f"Uninterrupted run: {expected.lifetime_s:.1f} s from start to exit ({expected.fit_s:.1f} s from its "
             f"first checkpoint), val_bpb {expected.val_bpb:.6f}, weights_sha256 {expected.weights_sha256[:16]}...",
             "", "| # | SIGTERM | exit | how it stopped | resumes | weights and val_bpb equal |",
             "|---|---|---|---|---|---|"]
    for i, m in enumerate(moments, 1):
        lines.append(f"| {i} | {m.delay_s:.2f} s after {m.after} | {m.exit_code} | {m.outcome} | {m.resumes} | "
                     f"{'yes' if m.weights_match else 'NO'} |")
    bad = sum(not m.ok for m in moments)
    lines += ["", f"{len(moments) - bad} of {len(moments)} moments never failed and resumed to the uninterrupted "
              "run's weights and val_bpb" + (f"; {bad} did not" if bad else "")]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--moments", type=int, default=20, help="random moments (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the moments (default 0)")
    parser.add_argument("--record", action="store_true", help="write the table to BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.moments < 1:
        parser.error("--moments must be at least 1")
    env = environment()
    expected = reference(env)
    rng = random.Random(args.seed)
    moments = []
    for i in range(args.moments):
        # Every other moment lands in the fit (counted from the first checkpoint), where the DataLoader workers live;
        # the others anywhere from the start (imports, data preparation, the fit, the final records).
        in_fit = i % 2 == 1
        delay = rng.uniform(0.0, expected.fit_s if in_fit else expected.lifetime_s)
        moments.append(kill_once(delay, expected, env, from_checkpoint=in_fit))
        print(f"[{i + 1}/{args.moments}] {asdict(moments[-1])}", flush=True)
    text = table(moments, expected)
    print(text)
    if args.record:
        from aunet.bench.record import write_section

        command = f"python scripts/kill-test.py --moments {args.moments} --seed {args.seed} --record"
        write_section("kill-test", {"moments": [asdict(m) for m in moments], "reference": asdict(expected)}, text,
                      command,
                      machine=f"{os.uname().nodename}, {os.cpu_count()} CPUs (shared with other jobs)",
                      root=Path(__file__).resolve().parents[1])
    return 0 if all(m.ok for m in moments) else 1


if __name__ == "__main__":
    sys.exit(main())
