"""Running a sweep: runs handed out through an Optuna study on shared storage, each trained at most once at a time.

The driver (``aunet sweep run``) enqueues every run that is not finished as a waiting trial carrying its run config;
workers (``aunet sweep run --workers N`` on one machine, ``aunet sweep worker`` on any machine that sees the
storage) pop waiting trials (Optuna moves a trial from waiting to running atomically in the storage) and train them
with :func:`aunet.training.run.train`, which resumes a run from its checkpoint. A worker refreshes a heartbeat on its
trial and a lock file in the run folder; a trial whose heartbeat is older than the grace period belongs to a dead
worker, and the next driver re-enqueues its run, which then resumes. A failed run is recorded in ``failure.json`` and
the sweep goes on (``failed``, or ``diverged`` for a NaN); ``--retry-failed`` enqueues it again.

Storage URLs: ``journal:PATH`` (a journal file, also on a shared filesystem; the default), ``sqlite:///PATH`` (a few
processes on one machine), or any SQLAlchemy URL such as ``postgresql://...`` (many machines).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from aunet.errors import RunStopped, UserError
from aunet.training import run as training_run  # train looked up at call time: a test or plugin may replace it
from aunet.training.callbacks import SIGTERM
from aunet.training.config import run_config_from_record
from aunet.training.records import RunPaths, write_failure
from aunet.training.summary import load_summary, read_summary


def _seconds_from_env(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        raise UserError(f"{name}={value!r}: expected a number of seconds") from None
    if not seconds > 0:
        raise UserError(f"{name}={value!r}: expected a positive number of seconds")
    return seconds


HEARTBEAT_S = _seconds_from_env("AUNET_SWEEP_HEARTBEAT_S", 30.0)
GRACE_S = _seconds_from_env("AUNET_SWEEP_GRACE_S", 600.0)

TrainFn = Callable[..., dict[str, Any]]


class StorageError(UserError):
    """A storage URL that cannot be opened."""


def default_storage_url(sweep_dir: Path) -> str:
    """The sweep's journal in its results folder, by absolute path: SLURM workers start in other folders."""
    return f"journal:{Path(sweep_dir).resolve() / 'optuna.journal'}"


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna storage from ``journal:PATH``, ``sqlite:///PATH`` or another SQLAlchemy URL; one-line errors."""
    try:
        if url.startswith("journal:"):
            from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

            path = Path(url[len("journal:"):]).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = JournalFileOpenLock(str(path), grace_period=10)
            _cut_torn_entry(path, lock)
            return optuna.storages.JournalStorage(JournalFileBackend(str(path), lock_obj=lock))
        if "://" in url:
            return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}}
                                              if url.startswith("sqlite") else None)
    except Exception as exc:  # noqa: BLE001 - any failure to open is the user's URL or filesystem
        detail = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
        if url.startswith("journal:") and isinstance(exc, (ValueError, KeyError, TypeError)):
            raise StorageError(
                f"{url[len('journal:'):]}: garbled sweep journal ({detail}); delete it: it is only the queue, "
                "finished runs are kept in their folders and the others are enqueued again") from None
        raise StorageError(f"cannot open storage {url!r}: {detail}") from None
    raise StorageError(f"storage {url!r} is not journal:PATH, sqlite:///PATH or a database URL")


def _cut_torn_entry(path: Path, lock: Any) -> None:
    """Remove the unfinished last entry of a journal whose writer died in the middle of an append (a crashed node).

    Optuna skips such an entry while it is last, but the next append is glued onto it, and from then on every
    process fails to read the journal. The entry never took effect for any reader, so cutting it changes nothing
    they saw; it is done under the journal's own lock, so no append is in progress."""
    try:
        with open(path, "rb") as handle:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) == b"\n":
                return
    except OSError:  # missing or empty: nothing to cut
        return
    lock.acquire()
    try:
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            os.truncate(path, data.rfind(b"\n") + 1)
    finally:
        lock.release()


def open_study(storage: optuna.storages.BaseStorage, name: str, create: bool) -> optuna.Study:
    """The sweep's study (created once by the driver; workers only load it)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if create:
        return optuna.create_study(study_name=name, storage=storage, direction="minimize", load_if_exists=True)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise StorageError(f"no sweep {name!r} in this storage; start it with 'aunet sweep run'") from None


def _heartbeat(trial: optuna.trial.FrozenTrial | optuna.Trial) -> float:
    return float(trial.user_attrs.get("heartbeat", trial.datetime_start.timestamp() if trial.datetime_start else 0.0))


def _worker_gone(trial: optuna.trial.FrozenTrial, grace_s: float) -> bool:
    """A running trial's worker is gone when its heartbeat is older than the grace period, or at once when its run
    lock names a process of this host that no longer exists (a killed worker on this machine)."""
    if time.time() - _heartbeat(trial) > grace_s:
        return True
    run_dir = trial.user_attrs.get("run_dir")
    if run_dir is None:
        return False
    lock = RunLock(Path(run_dir), grace_s)
    if not lock.path.exists():  # the worker had not locked yet, or it released the lock and died right after
        return time.time() - _heartbeat(trial) > 2 * HEARTBEAT_S
    return lock.stale()


def _fail_stale(study: optuna.Study, grace_s: float) -> list[optuna.trial.FrozenTrial]:
    """Mark running trials whose worker is gone as failed; returns the trials this process marked.

    Two processes may find the same stale trial: the storage lets only the first mark it (the second gets
    UpdateFinishedTrialError), so only one of them re-enqueues its run."""
    stale = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if _worker_gone(trial, grace_s):
            try:
                study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            except UpdateFinishedTrialError:
                continue  # another process marked it first
            stale.append(trial)
    return stale


def fail_stale_trials(study: optuna.Study, grace_s: float = GRACE_S) -> list[str]:
    """Mark running trials whose worker is gone as failed (their runs get enqueued again); returns their run ids."""
    return [t.user_attrs.get("run_id", "?") for t in _fail_stale(study, grace_s)]


def _enqueue_run(study: optuna.Study, run_id: str, run_dir: str, config: dict[str, Any]) -> None:
    study.enqueue_trial({}, user_attrs={"run_id": run_id, "run_dir": run_dir, "config": config})


def requeue_stale_trials(study: optuna.Study, grace_s: float = GRACE_S) -> list[str]:
    """Put the runs of dead workers back in the queue (a surviving worker calls this when nothing is waiting)."""
    requeued = []
    for trial in _fail_stale(study, grace_s):
        attrs = trial.user_attrs
        if {"run_id", "run_dir", "config"} <= attrs.keys() and not _finished(Path(attrs["run_dir"])):
            _enqueue_run(study, attrs["run_id"], attrs["run_dir"], attrs["config"])
            requeued.append(attrs["run_id"])
    return requeued


def _finished(run_dir: Path) -> bool:
    """A run is finished when its summary is readable (a garbled one is trained again, and its error recorded)."""
    return load_summary(RunPaths(run_dir).summary) is not None


def enqueue_missing(study: optuna.Study, runs: list[dict[str, Any]], runs_dir: Path, *, retry_failed: bool = False,
                    grace_s: float = GRACE_S) -> list[str]:
    """Enqueue every run that is neither finished, nor waiting or running, nor failed (unless ``retry_failed``)."""
    fail_stale_trials(study, grace_s)
    planned = {run["run_id"] for run in runs}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        # A run the sweep no longer plans (its definition changed) must not be picked up by a worker.
        if trial.user_attrs.get("run_id") not in planned:
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    busy = {t.user_attrs.get("run_id") for t in study.get_trials(deepcopy=False,
                                                                  states=(TrialState.WAITING, TrialState.RUNNING))}
    enqueued = []
    for run in runs:
        run_id = run["run_id"]
        run_dir = runs_dir / run_id
        if run_id in busy or _finished(run_dir):
            continue
        if RunPaths(run_dir).failure.is_file() and not retry_failed:
            continue
        _enqueue_run(study, run_id, str(run_dir), run["run_config"])
        enqueued.append(run_id)
    return enqueued


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine. A killed worker stays a zombie until its parent reaps it, and
    ``aunet sweep run --workers N`` reaps its workers in order, so a zombie counts as dead (Linux /proc)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    except OSError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): trust kill(0)
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


class RunLock:
    """An exclusive lock file in the run folder, so no run trains twice at once even if two trials name it.

    A lock whose heartbeat (file time) is older than the grace period, or whose process is gone from this host,
    is taken over."""

    def __init__(self, run_dir: Path, grace_s: float = GRACE_S) -> None:
        self.path = RunPaths(Path(run_dir)).sweep_lock
        self.grace_s = grace_s

    def stale(self) -> bool:
        try:
            info = json.loads(self.path.read_text())
            age = time.time() - self.path.stat().st_mtime
        except (OSError, ValueError):
            return True
        if info.get("host") == socket.gethostname():
            try:
                if not _pid_alive(int(info["pid"])):
                    return True
            except (ValueError, KeyError, TypeError):
                return True
        return age > self.grace_s

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                if not self.stale():
                    return False
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as handle:
                json.dump({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}, handle)
            return True
        return False

    def touch(self) -> None:
        try:
            os.utime(self.path)
        except OSError:
            pass

    def release(self) -> None:
        self.path.unlink(missing_ok=True)


class _Beat:
    """Refreshes the trial's heartbeat and the run lock every ``interval`` seconds in a daemon thread."""

    def __init__(self, trial: optuna.Trial, lock: RunLock, interval: float) -> None:
        self.trial, self.lock, self.interval = trial, lock, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.trial.set_user_attr("heartbeat", time.time())
            except Exception:  # noqa: BLE001 - a missed beat is retried at the next interval
                pass
            self.lock.touch()

    def __enter__(self) -> "_Beat":
        self.trial.set_user_attr("heartbeat", time.time())
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _val_bpb(run_dir: Path) -> float:
    return read_summary(RunPaths(run_dir).summary).bpb


def _objective(train_fn: TrainFn, grace_s: float, heartbeat_s: float,
               after_run: Callable[[Path], None] | None, stopped: list[str]) -> Callable[[optuna.Trial], float]:
    def objective(trial: optuna.Trial) -> float:
        run_id = trial.user_attrs.get("run_id")
        if run_id is None:  # a fresh trial: nothing was waiting when this worker asked
            trial.study.stop()
            raise optuna.TrialPruned("no waiting run")
        run_dir = Path(trial.user_attrs["run_dir"])
        if _finished(run_dir):
            return _val_bpb(run_dir)
        lock = RunLock(run_dir, grace_s)
        if not lock.acquire():
            raise optuna.TrialPruned(f"run {run_id} is being trained by another worker")
        try:
            if _finished(run_dir):  # another worker finished it between the check above and taking the lock
                return _val_bpb(run_dir)
            with _Beat(trial, lock, heartbeat_s):
                config = run_config_from_record(trial.user_attrs["config"])
                try:
                    summary = train_fn(config, run_dir=run_dir, resume=True)
                except RunStopped as stop:
                    # Pre-empted (SIGTERM) with its checkpoint saved: not a failure. The run goes back to the queue
                    # for any other worker, and this one takes nothing more (its machine is going away).
                    _enqueue_run(trial.study, run_id, str(run_dir), trial.user_attrs["config"])
                    stopped.append(f"{run_id}: {stop}")
                    trial.study.stop()
                    raise optuna.TrialPruned(f"stopped by SIGTERM at step {stop.step}") from None
                except Exception as exc:
                    write_failure(RunPaths(run_dir), exc)
                    raise
            RunPaths(run_dir).failure.unlink(missing_ok=True)
            # The record on disk is the run's result (train_fn's return value is the same record, or a stand-in's).
            return _val_bpb(run_dir) if summary is not None else float("nan")
        finally:
            lock.release()
            if after_run is not None:
                after_run(run_dir)

    return objective


def run_outcome(run_dir: Path) -> str:
    """One line on how a run ended, for progress output: finished with its bpb and time, failed with its reason,
    or unfinished (stopped, or taken by another worker)."""
    run_dir = Path(run_dir)
    try:
        summary = load_summary(RunPaths(run_dir).summary)
        if summary is not None:
            wall = summary.wall_time_s if summary.wall_time_s is not None else float("nan")
            return f"finished {run_dir.name}: val_bpb {summary.bpb:.4f} in {wall:.0f} s"
        failure = RunPaths(run_dir).failure
        if failure.is_file():
            record = json.loads(failure.read_bytes())
            record = record if isinstance(record, dict) else {}
            return f"{record.get('status', 'failed')} {run_dir.name}: {record.get('error', '?')}"
    except (OSError, ValueError):  # a damaged record is reported by the table refresh, not here
        pass
    return f"not finished {run_dir.name}"


def waiting_count(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def run_worker(study: optuna.Study, train_fn: TrainFn | None = None, *, grace_s: float = GRACE_S,
               heartbeat_s: float = HEARTBEAT_S, after_run: Callable[[Path], None] | None = None,
               stopped: list[str] | None = None) -> int:
    """Train waiting runs until none is left; returns how many trials this worker took.

    When nothing is waiting, the runs of dead workers (see :func:`requeue_stale_trials`) are put back in the queue
    and trained here, so a sweep finishes when one of its workers is killed. A run stopped by SIGTERM ends the
    worker (its message is appended to ``stopped``), as does SIGTERM between runs. ``after_run(run_dir)`` is called
    after each run, finished or failed (the CLI refreshes the sweep tables)."""
    train_fn = train_fn or training_run.train
    stopped = stopped if stopped is not None else []
    objective = _objective(train_fn, grace_s, heartbeat_s, after_run, stopped)
    taken = 0
    # SIGTERM between runs, or once a run's training is complete, ends the worker after what it is doing (the
    # default would kill it in the middle of a queue update, leaving its trial to the grace period).
    with SIGTERM.handled():
        while not stopped and not SIGTERM.received and (waiting_count(study) > 0
                                                        or requeue_stale_trials(study, grace_s)):
            try:
                study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=True)
            except UpdateFinishedTrialError:
                # SQLite has no row locks, so two workers can pop the same waiting trial; the run lock lets only one
                # of them train it, and the other's result cannot be told to the finished trial. Nothing is lost:
                # the run's record is its folder. Go on with the next run.
                pass
            taken += 1
    return taken
