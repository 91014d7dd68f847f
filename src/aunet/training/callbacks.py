"""Lightning callbacks of a training run: timing, throughput with a user-set peak, records kept current."""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn


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
        train = self.train_seconds + (time.perf_counter() - self._train_t0 if self._train_t0 is not None else 0.0)
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


class LastCheckpoint(L.Callback):
    """Saves ``path`` (the resume point) after every validation of a fit, through Lightning's atomic save.

    Lightning's ModelCheckpoint only refreshes ``last.ckpt`` when it also keeps a top-k copy; one file is enough
    here, and it is written after validation so the checkpoint of step k includes that step's validation row.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        trainer.save_checkpoint(self.path, weights_only=False)
