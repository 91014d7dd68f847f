"""Lightning callbacks of a training run: timing, throughput with a user-set peak, the budget stop of a learned cost,
records kept current, atomic checkpoints and a clean stop on SIGTERM."""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import signal
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterator

import lightning as L
import torch
from lightning.fabric.utilities.seed import pl_worker_init_function
from lightning.pytorch.trainer.states import TrainerFn
from torch.utils.data.dataloader import _MultiProcessingDataLoaderIter

from aunet.errors import DivergedError, write_error


class SigtermFlag:
    """SIGTERM as a request to stop at the next point a resume reproduces, instead of its default (die at once).

    SLURM sends SIGTERM to every process of a job when it pre-empts, cancels or times it out. Inside
    :meth:`handled` (main thread only; nested uses share one flag) the signal only sets ``received``: ``train()``
    stops before training or at the end of the current step with its checkpoint (:class:`LastCheckpoint` takes the
    signal over during the fit), finishes a run whose training is complete, and a sweep worker takes no further run.
    """

    def __init__(self) -> None:
        self.received = False
        self._depth = 0

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = True

    @contextlib.contextmanager
    def handled(self) -> Iterator["SigtermFlag"]:
        if threading.current_thread() is not threading.main_thread():
            yield self  # signal handlers can only be set from the main thread; the default stays
            return
        if self._depth == 0:
            self.received = False  # a signal of an earlier run of this process (a test) is not this run's
        previous = signal.signal(signal.SIGTERM, self._handle)
        self._depth += 1
        try:
            yield self
        finally:
            self._depth -= 1
            signal.signal(signal.SIGTERM, previous)


SIGTERM = SigtermFlag()


def ignore_sigterm_in_worker(worker_id: int, rank: int) -> None:
    """``worker_init_fn`` of the training DataLoader: its worker processes ignore SIGTERM.

    SLURM signals the workers with the main process; a worker that died of it made the main process fail with
    "DataLoader worker ... is killed by signal: Terminated" before it could save its step. The main process ends its
    workers itself when it stops (and they exit when it dies). Then Lightning's own worker seeding, which it only
    adds to a DataLoader without a ``worker_init_fn`` (every run seeds with ``workers=True``)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    pl_worker_init_function(worker_id, rank)


def end_loader_workers(timeout_s: float = 5.0) -> int:
    """Kill (SIGKILL) the worker processes of this process's live DataLoader iterators, reap them and close the
    iterators; returns how many workers were alive.

    Called when an exception escapes training. The workers ignore SIGTERM (:func:`ignore_sigterm_in_worker`), and
    the DataLoader ends them only when its iterator is collected: an iterator still referenced by the exception's
    traceback outlives the command, and at the interpreter's exit ``multiprocessing`` sends them SIGTERM (ignored)
    and then waits for them forever, while they wait for the main process. Under SLURM such a job held its GPUs
    until its time limit. A worker holds nothing that must be saved (its batches are recomputed on resume).

    The iterators are found through the garbage collector (only on this failure path): the worker processes cannot
    be told from other children of the process once started (``multiprocessing`` drops their target), and killing
    every child would kill processes that are not ours to end (a sweep test's helpers, a caller's pool)."""
    ended = 0
    # type(), not isinstance(): isinstance reads __class__, which some lazy module proxies answer with a warning.
    for iterator in [o for o in gc.get_objects() if issubclass(type(o), _MultiProcessingDataLoaderIter)]:
        if getattr(iterator, "_shutdown", True):
            continue
        for worker in getattr(iterator, "_workers", []):
            if worker.is_alive():
                worker.kill()
                worker.join(timeout_s)
                ended += 1
        iterator._shutdown_workers()  # closes its queues and threads; the workers are gone, so it does not wait
    return ended


class TrainTimer(L.Callback):
    """Wall-clock time spent training, validation excluded, summed over every segment of a resumed run."""

    def __init__(self) -> None:
        self.train_seconds = 0.0
        self.wall_seconds = 0.0
        self._train_t0: float | None = None
        self._wall_t0: float | None = None

    def _pause(self) -> None:
        if self._train_t0 is not None:
            self.train_seconds += time.perf_counter() - self._train_t0
            self._train_t0 = None

    def _flush_wall(self) -> None:
        if self._wall_t0 is not None:
            now = time.perf_counter()
            self.wall_seconds += now - self._wall_t0
            self._wall_t0 = now

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._train_t0 = self._wall_t0 = time.perf_counter()

    def elapsed(self) -> float:
        """Training seconds so far, the running stretch included."""
        running = time.perf_counter() - self._train_t0 if self._train_t0 is not None else 0.0
        return self.train_seconds + running

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pause()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Validation inside fit: training resumes right after (the stage is still VALIDATING here).
        if trainer.state.fn == TrainerFn.FITTING and self._wall_t0 is not None:
            self._train_t0 = time.perf_counter()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pause()
        self._flush_wall()

    def state_dict(self) -> dict[str, Any]:
        # Called while saving a checkpoint: include the time of the segment so far.
        train = self.elapsed()
        wall = self.wall_seconds + (time.perf_counter() - self._wall_t0 if self._wall_t0 is not None else 0.0)
        return {"train_seconds": train, "wall_seconds": wall}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.wall_seconds = float(state.get("wall_seconds", 0.0))


class ThroughputLogger(L.Callback):
    """Logs training throughput at every optimizer step, over a window of recent steps, on the timer's clock
    (validation excluded): ``train/units_per_s`` (bytes or tokens), ``train/flops_per_s`` (our FLOPs formula, all
    devices) and, when the device's peak FLOP/s is given, ``train/mfu``. Lightning's ThroughputMonitor keys its
    rows by batch count and validation batch index, which would not line up with the optimizer steps of the
    other columns of ``metrics.csv``; and its peak table has no CPUs and lists the H200's sparse bf16 figure."""

    def __init__(self, timer: TrainTimer, peak_flops: float | None = None, window: int = 10) -> None:
        self.timer, self.peak_flops = timer, peak_flops
        self.history: deque[tuple[float, int]] = deque(maxlen=window + 1)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.history.clear()
        self.history.append((self.timer.elapsed(), trainer.global_step))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if (batch_idx + 1) % trainer.accumulate_grad_batches:
            return
        self.history.append((self.timer.elapsed(), trainer.global_step))
        (t0, s0), (t1, s1) = self.history[0], self.history[-1]
        if s1 <= s0 or t1 <= t0:
            return
        steps_per_s = (s1 - s0) / (t1 - t0)
        flops_per_s = steps_per_s * pl_module.flops_per_step
        pl_module.log("train/units_per_s", steps_per_s * pl_module.units_per_step, on_step=True, on_epoch=False)
        pl_module.log("train/flops_per_s", flops_per_s, on_step=True, on_epoch=False)
        if self.peak_flops:
            pl_module.log("train/mfu", flops_per_s / (self.peak_flops * trainer.world_size), on_step=True,
                          on_epoch=False)


class BudgetStop(L.Callback):
    """Stops a run whose FLOPs per step are learned (realized chunk counts) once its budget is spent.

    The run's steps (and its LR schedule) are planned at the formula's cost per step (the target ratios); what each
    step really costs is charged as it happens (``pl_module.flops_spent()``). After every optimizer step, the run stops
    when one more step at the cost of the last one would pass ``budget``: for a fixed cost per step this is the step
    count the plan gives (``floor(budget / cost)``), so the two stops agree. It passes the budget only when a step
    costs more than the one before it, and then by at most that difference. A run whose steps cost less than planned
    ends with its schedule, under budget; its record says by how much (``RunSummary.cost``).
    """

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self._spent = 0.0
        self.stopped_at: int | None = None  # the optimizer step at which the budget stopped the run

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._spent = pl_module.flops_spent()  # a resumed run starts from what its earlier segments spent

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if (batch_idx + 1) % trainer.accumulate_grad_batches:
            return
        spent = pl_module.flops_spent()  # the same on every rank (summed), so the ranks agree to stop
        last, self._spent = spent - self._spent, spent
        if spent + last > self.budget:
            trainer.should_stop = True
            self.stopped_at = trainer.global_step


class RecordsOnCheckpoint(L.Callback):
    """Flush the CSV logger and rebuild ``metrics.csv`` whenever a checkpoint is saved, so the records never lag
    more than one checkpoint behind the weights."""

    def __init__(self, on_save: Callable[[L.Trainer], None]) -> None:
        self.on_save = on_save

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if trainer.logger is not None:
            trainer.logger.save()
        if trainer.is_global_zero:
            self.on_save(trainer)


def check_finite_weights(module: torch.nn.Module, step: int) -> None:
    """Raise :class:`DivergedError` when a parameter of ``module`` holds a NaN or an infinity (named, with the
    step): weights gone non-finite must never become a checkpoint that a resume or an evaluation would take up.

    The training loss is checked at every step, but an update can make the weights NaN after the last loss was
    computed (AdamW with ``eps`` 0 divides 0 by 0 where a gradient is zero)."""
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if not bool(torch.isfinite(parameter).all()):
                raise DivergedError(f"weights became non-finite at step {step} ({name}); lower train.lr, check "
                                    "train.eps and the precision (the last good checkpoint and the records are kept)")


def save_checkpoint(trainer: L.Trainer, path: Path) -> None:
    """``trainer.save_checkpoint`` to a temporary file next to ``path``, then renamed over it on global rank 0.
    Weights that are not finite are refused first (:func:`check_finite_weights`).

    Lightning's own "atomic" save stages the bytes in the system temp folder and moves them into place: when that
    folder is on another filesystem than the results (node-local /tmp and a shared results folder, as on most
    clusters), the move is a copy, and a job killed during it leaves a truncated ``last.ckpt``. A rename inside the
    run's own folder is atomic: a reader (or a resumed run) sees the old checkpoint or the new one, never half.
    """
    check_finite_weights(trainer.lightning_module, trainer.global_step)
    path = Path(path)
    if path.is_symlink() and path.exists():
        # A checkpoint the user moved to another disk and linked back: write there, keeping the link (renaming over
        # the link would bring the checkpoint back onto the disk it was moved off).
        path = path.resolve()
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        trainer.save_checkpoint(tmp, weights_only=False)  # collective; only global rank 0 writes a full checkpoint
        if trainer.is_global_zero:
            if tmp.is_dir():  # a sharded (FSDP) checkpoint is a folder: a folder cannot replace a folder atomically
                shutil.rmtree(path, ignore_errors=True)
            os.replace(tmp, path)
    except BaseException as exc:
        # A partial checkpoint (a full disk, an error while writing) would keep the disk full: it goes, and the
        # previous checkpoint stays the resume point.
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise write_error(path, exc, "run the same command with --resume (the previous checkpoint is kept)") \
                from None
        raise


class LastCheckpoint(L.Callback):
    """Saves ``path`` (the resume point) after every validation of a fit and, on SIGTERM, at the end of the
    current optimizer step; always through :func:`save_checkpoint` (atomic).

    Lightning's ModelCheckpoint only refreshes ``last.ckpt`` when it also keeps a top-k copy; one file is enough
    here, and it is written after validation so the checkpoint of step k includes that step's validation row.

    SIGTERM (what SLURM sends before pre-empting a job): Lightning's signal connector sets a flag and stops the fit
    at the end of the current batch by raising ``SIGTERMException``, saving nothing. This callback takes the flag
    over so that the stop always lands on a point a resume reproduces exactly: after the optimizer step (never in
    the middle of a gradient accumulation) and after a validation that has started (a validation stopped half-way
    would be skipped on resume, losing its row). There it saves ``path`` (its step in ``saved_step``) and hands the
    flag back to Lightning, which then stops. Under DDP the ranks agree (any rank's signal counts) before
    the collective save. ``val_every``: the validation interval in optimizer steps; ``after_save``: called after
    each save (the run records the checkpoint's step).
    """

    def __init__(self, path: Path, val_every: int | None = None,
                 after_save: Callable[[L.Trainer], None] | None = None) -> None:
        self.path = path
        self.val_every = val_every
        self.after_save = after_save  # records that the checkpoint exists (called on every rank, after the save)
        self.saved_step: int | None = None  # the step of the last checkpoint written in this segment
        self._pending = False  # a SIGTERM taken over from Lightning, not acted on yet

    def _save(self, trainer: L.Trainer) -> None:
        save_checkpoint(trainer, self.path)
        self.saved_step = trainer.global_step
        if self.after_save is not None:
            self.after_save(trainer)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning's handler sets a flag that its loop checks after this callback's hooks of a batch: a signal
        # landing between the two stopped the fit without the checkpoint of the step. From here on the signal only
        # reaches this callback, which hands it to Lightning at a safe point (Lightning's teardown restores the
        # handlers it found).
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_sigterm)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The final validation (trainer.validate after the fit) completes too: the run is a moment from finished.
        self.on_train_start(trainer, pl_module)

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self._pending = SIGTERM.received = True  # the process-wide flag: a sweep worker takes no further run

    def _hold_sigterm(self, trainer: L.Trainer) -> None:
        """Take Lightning's SIGTERM flag over (Lightning would stop at the end of this very batch)."""
        connector = getattr(trainer, "_signal_connector", None)  # Lightning 2.x internals; without them, no delay
        if connector is not None and getattr(connector, "received_sigterm", False):
            connector.received_sigterm = False
            self._pending = True

    def _stop_now(self, trainer: L.Trainer) -> bool:
        """Whether any rank holds a SIGTERM (a collective under DDP: call it on every rank at the same point)."""
        if trainer.world_size > 1:
            return bool(trainer.strategy.reduce_boolean_decision(self._pending, all=False))
        return self._pending

    def _hand_back(self, trainer: L.Trainer) -> None:
        """Set Lightning's flag again: it stops the fit at the end of this batch, with the checkpoint saved."""
        self._pending = False
        connector = getattr(trainer, "_signal_connector", None)
        if connector is not None:
            connector.received_sigterm = True

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._hold_sigterm(trainer)
        if (batch_idx + 1) % trainer.accumulate_grad_batches:
            return  # in the middle of an accumulation: stop after the optimizer step
        if self._last_step(trainer):
            return  # the run finishes normally in a moment
        if self.val_every and trainer.global_step % self.val_every == 0:
            return  # a validation follows: stop after it (on_validation_end)
        if self._stop_now(trainer):
            self._save(trainer)
            self._hand_back(trainer)

    @staticmethod
    def _last_step(trainer: L.Trainer) -> bool:
        return trainer.max_steps is not None and 0 <= trainer.max_steps <= trainer.global_step

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        self._hold_sigterm(trainer)  # finish the validation; in a fit, its checkpoint is the stopping point

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        self._save(trainer)
        self._hold_sigterm(trainer)
        # After the last step's validation the fit ends anyway; handing the signal back there made Lightning report
        # a stop of a run whose training was complete (and its resume had no validation to report).
        if not self._last_step(trainer) and self._stop_now(trainer):
            self._hand_back(trainer)
