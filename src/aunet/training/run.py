"""Train one run end to end: budget -> steps, Lightning trainer, exact resume, records.

:func:`train` is what ``aunet train`` and the sweep runner call. Only global rank 0 writes records.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import tempfile
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from aunet.config import read_yaml
from aunet.errors import ConfigError, RunError, RunStopped
from aunet.flops import flops_report
from aunet.io import atomic_write_yaml
from aunet.models import family_of
from aunet.training.callbacks import (
    SIGTERM,
    BudgetStop,
    LastCheckpoint,
    RecordsOnCheckpoint,
    ThroughputLogger,
    TrainTimer,
    end_loader_workers,
    save_checkpoint,
)
from aunet.training.config import RunConfig, run_config_from_record
from aunet.training.datamodule import CorpusDataModule
from aunet.training.hardware import check_memory, check_trainer
from aunet.training.lock import RunFolderLock, held_by_another
from aunet.training.module import LanguageModelModule
from aunet.training.optim import default_precision
from aunet.training.records import (
    RunPaths,
    add_segment,
    checkpoint_weights_sha256,
    git_commit,
    library_versions,
    merge_metrics,
    read_segments,
    record_checkpoint,
    recorded_checkpoint_step,
    stage_records,
    weights_sha256,
    write_failure,
)
from aunet.training.summary import RunSummary, read_summary, write_summary
from aunet.training.trackers import check_trackers, close_trackers, open_tracker_folders, tracker_loggers


@dataclasses.dataclass(frozen=True)
class Plan:
    """Steps and batch layout of a run, from its budget and the devices it runs on."""

    total_steps: int
    warmup_steps: int
    val_every: int
    micro_batch: int
    flops_per_step: float
    units_per_step: int


class _DropLightningChatter(logging.Filter):
    """Drop Lightning's advertisement and, without a progress bar, its hardware banner and notes on the trainer's
    settings: a sweep of many runs would print them once per run, burying the lines that matter."""

    def __init__(self) -> None:
        super().__init__()
        self.banner = True

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("💡 Tip"):
            return False
        return self.banner or not message.startswith(("GPU available", "TPU available", "`Trainer", "Using "))


_CHATTER = _DropLightningChatter()


def _filter_chatter(banner: bool) -> None:
    """Filter the logger Lightning's ``rank_zero_info`` writes to (installed by whichever of its packages was
    imported last, so looked up now), keeping the hardware banner only when ``banner``."""
    from lightning_utilities.core.rank_zero import log as rank_zero_log

    _CHATTER.banner = banner
    if _CHATTER not in rank_zero_log.filters:
        rank_zero_log.addFilter(_CHATTER)
# Lightning's own use of a torch API deprecated in torch 2.13; nothing a user of this suite can act on.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


def plan_steps(run: RunConfig, world_size: int = 1) -> Plan:
    """Optimizer steps from the compute budget: FLOPs per step = FLOPs per unit x units per step (one formula; a
    learned cost is planned at its target ratios, and :class:`BudgetStop` charges what the steps really cost)."""
    t = run.train
    report = flops_report(run.model)
    units_per_step = report.seq_len * t.batch_size
    flops_per_step = report.flops_per_unit * units_per_step
    if t.max_steps is not None:
        total = t.max_steps
    else:
        total = int(t.budget_flops // flops_per_step)
        if total < 1:
            raise RunError(f"train.budget_flops={t.budget_flops:.3g} is less than one step ({flops_per_step:.3g} "
                           "FLOPs); raise the budget or lower train.batch_size")
    per_device = t.batch_size // t.accumulate
    if per_device % world_size:
        raise RunError(f"train.batch_size={t.batch_size} / accumulate={t.accumulate} is not divisible by the "
                       f"{world_size} devices; adjust train.batch_size")
    warmup = t.warmup_steps if t.warmup_steps is not None else int(round(t.warmup_fraction * total))
    val_every = t.val_every_steps or max(1, total // 10)
    return Plan(total, min(warmup, total - 1), val_every, per_device // world_size, flops_per_step, units_per_step)


def _before_config(paths: RunPaths) -> set[str]:
    """What a run writes into its folder before ``config.yaml``: the lock files (this process's and the sweep
    worker's), the BPE tokenizer, and the failure record of an attempt that failed before. A folder that holds only
    these (or nothing) can become this run's."""
    return {p.name for p in (paths.lock, paths.sweep_lock, paths.tokenizer, paths.failure)}


# Bytes of the longest file name below a run folder ("logs/version_N/metrics.csv" and the like, with room).
_LONGEST_RECORD = 64


def _check_folder(paths: RunPaths) -> None:
    """The run folder must be ours or nothing yet: a folder (never a file), empty, missing, or holding this run's
    records (its ``config.yaml``, checked by the caller). A folder of the user's own files (a ``metrics.csv`` of
    theirs, the current directory given as ``--run-dir .``) is refused untouched: training into it would overwrite
    them. A missing folder must be creatable, checked now (a name too long, a folder under /proc) rather than after
    minutes of data preparation, with a traceback, and a half-made folder behind."""
    root = paths.root
    absolute = Path(os.path.abspath(root))
    too_long = next((part for part in absolute.parts if len(os.fsencode(part)) > 255), None)
    if too_long is not None:
        raise RunError(f"{excerpt_path(root)}: a folder name of {len(os.fsencode(too_long))} bytes (at most 255 on "
                       "this system); give --run-dir a shorter path")
    if len(os.fsencode(str(absolute))) + _LONGEST_RECORD > 4096:
        raise RunError(f"{excerpt_path(root)}: a path of {len(os.fsencode(str(absolute)))} bytes, too long for the "
                       "files of a run (at most about 4000); give --run-dir a shorter path")
    if root.is_symlink() and not root.exists():
        raise RunError(f"{root}: a link to {os.readlink(root)}, which does not exist; restore its target, or give "
                       "--run-dir another folder")
    if root.exists() and not root.is_dir():
        raise RunError(f"{root}: not a folder (a file of that name is there); give --run-dir a folder that is empty, "
                       "missing, or this run's own")
    if root.is_dir():
        try:
            entries = sorted(entry.name for entry in os.scandir(root))
        except OSError as exc:
            raise RunError(f"{root}: cannot read the folder ({exc.strerror or type(exc).__name__}); give --run-dir "
                           "a folder you can write") from None
        if paths.config.name not in entries:
            foreign = [name for name in entries if name not in _before_config(paths)]
            if foreign:
                shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
                raise RunError(f"{root}: holds {shown}, which are not this run's records (a run folder must be "
                               "empty, missing, or made by this run: its config.yaml); give --run-dir a new or "
                               "empty folder, nothing there was touched")
        return
    _check_creatable(root)


def excerpt_path(path: Path, limit: int = 120) -> str:
    """``path`` for a message, its middle cut when longer than ``limit`` characters (a 4 kB path is not shown
    whole)."""
    text = str(path)
    return text if len(text) <= limit else f"{text[: limit // 2 - 2]}...{text[-(limit // 2 - 1):]}"


def _check_creatable(root: Path) -> None:
    """``root`` (missing) can be created: its nearest existing ancestor is a folder in which a folder can be made.
    Probed by making and removing an empty folder there (permissions alone do not tell: root may write anywhere,
    yet not under /proc), so a refused run leaves nothing behind."""
    ancestor = Path(os.path.abspath(root)).parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise RunError(f"{root}: cannot be created, {ancestor} is a file, not a folder; give --run-dir another "
                       "path")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".aunet-probe-", dir=ancestor))
    except OSError as exc:
        raise RunError(f"{root}: cannot be created ({exc.strerror or type(exc).__name__} in {ancestor}); give "
                       "--run-dir a folder you can write") from None


def _check_existing(paths: RunPaths, run: RunConfig, resume: bool, locked: bool = False) -> str:
    """``fresh``, ``resume`` or ``finished``, from the folder alone (read-only).

    RunError for a folder that is not this run's (:func:`_check_folder`, another config), and for a checkpoint the
    run saved that is gone (a missing file, a link to a moved file): training again from step 0 behind the user's
    back would overwrite the records of the steps already trained. ``locked``: this process holds the folder's
    lock, or belongs to the job whose rank 0 holds it (another process cannot train into it)."""
    _check_folder(paths)
    if paths.config.is_file():
        try:
            stored = run_config_from_record(read_yaml(paths.config))
        except ConfigError as exc:  # a garbled record is named, never overwritten by a silent restart
            raise RunError(f"{paths.config}: this run's stored config is unusable ({exc.message.split('; ')[0]}); "
                           "delete the run folder to start the run again") from None
        if stored.fingerprint() != run.fingerprint():
            raise RunError(f"{paths.root} holds a run with a different config; use another --run-dir or delete that "
                           "folder")
    if paths.summary.exists():  # after the config: a finished run of another config is not this run's result
        return "finished"
    last = paths.last_checkpoint
    if last.is_symlink() and not last.exists():
        raise RunError(f"{last}: a link to {os.readlink(last)}, which does not exist (moved, or its disk not "
                       "mounted?); restore the checkpoint there, or delete the link to start the run again")
    if last.exists() and not last.is_file():
        raise RunError(f"{last}: not a checkpoint file; move it away (a resume needs one file)")
    if last.is_file():
        if not locked and held_by_another(paths.lock):
            # Before: "pass --resume", which the second process would then have been refused for.
            raise RunError(f"{paths.root}: another process is training this run (it holds {paths.lock.name}); wait "
                           "for it to end, or stop it and continue with --resume")
        if not resume:
            raise RunError(f"{paths.root} holds an unfinished run; pass --resume to continue it")
        read_segments(paths)  # a garbled record stops the resume here, before anything is written
        return "resume"
    saved = recorded_checkpoint_step(paths)
    if saved is not None:
        raise RunError(f"{last}: missing, but this run saved its checkpoint of step {saved} there; restore the "
                       "file to continue with --resume, or delete the run folder to start again")
    return "fresh"


def _check_finished(paths: RunPaths, run: RunConfig) -> RunSummary:
    """The record of a finished run, once shown to be this run's: read and checked (:func:`read_summary`), its
    config fingerprint this run's, and, where the final checkpoint is kept, its data fingerprint and weights those
    of the checkpoint. A run folder copied over another run's reported the other run's result as this one's."""
    summary = read_summary(paths.summary)
    if summary.config_fingerprint is not None and summary.config_fingerprint != run.fingerprint():
        raise RunError(f"{paths.summary}: the record of another run (config {summary.config_fingerprint[:10]}, this "
                       f"run {run.fingerprint()[:10]}): the folder was copied or its summary replaced; delete the run "
                       "folder to train this run")
    final = paths.final_checkpoint
    if not final.is_file():
        return summary  # checkpoints removed to save space (the committed results keep no checkpoints)
    try:
        ckpt = torch.load(final, map_location="cpu", weights_only=True, mmap=True)
        identity = ckpt.get("hyper_parameters", {}).get("identity") or {}
        weights = checkpoint_weights_sha256(ckpt["state_dict"])
    except Exception as exc:  # noqa: BLE001 - any failure means the file cannot vouch for the record
        raise RunError(f"{final}: cannot read checkpoint ({type(exc).__name__}); the record cannot be checked "
                       "against it: restore the run's final checkpoint, or delete the run folder to train the run "
                       "again") from None
    mismatch = [f"{what} {mine[:10]} in the checkpoint, {theirs[:10]} in {paths.summary.name}"
                for what, mine, theirs in (("config", identity.get("config"), summary.config_fingerprint),
                                           ("data", identity.get("data"), summary.data_fingerprint),
                                           ("weights", weights, summary.weights_sha256))
                if isinstance(mine, str) and isinstance(theirs, str) and mine != theirs]
    if mismatch:
        raise RunError(f"{final}: does not match the run's record ({'; '.join(mismatch)}): one of them was replaced "
                       "or belongs to another run; put the run's own files back, or delete the run folder to train "
                       "the run again")
    return summary


@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
    """What a resume needs to know of a checkpoint before training: its step and the run it belongs to."""

    path: Path
    step: int
    data_fingerprint: str


def _check_checkpoint(paths: RunPaths, run: RunConfig) -> CheckpointInfo:
    """The run folder's ``last.ckpt`` must belong to this run: the same model, the same resolved config (its
    fingerprint, stamped in every checkpoint), and no older than the last checkpoint the run recorded. Loaded with
    weights_only=True (mmap: the tensors are not read). The data is checked once known (:func:`_check_data`)."""
    path = paths.last_checkpoint
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # noqa: BLE001 - any failure here means the file is unusable
        raise RunError(f"{path}: cannot read checkpoint ({type(exc).__name__}); delete it to restart the run") from None
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    stored = hparams.get("model") if isinstance(hparams, dict) else None
    if not isinstance(stored, dict):
        raise RunError(f"{path}: not a checkpoint of an aunet training run (no model config); delete it to restart "
                       "the run")
    if stored != run.model.to_dict():
        raise RunError(f"{path}: checkpoint is from a {stored.get('family', '?')} model of another config, this run "
                       f"trains a {run.model.family} model; use another --run-dir")
    identity = hparams.get("identity")
    if not (isinstance(identity, dict) and isinstance(identity.get("config"), str)
            and isinstance(identity.get("data"), str)):
        raise RunError(f"{path}: the checkpoint does not say which run it belongs to (no config and data "
                       "fingerprints: another tool, or an aunet before they were recorded); it cannot be shown to "
                       "continue this run, so delete it to restart the run")
    if identity["config"] != run.fingerprint():
        raise RunError(f"{path}: checkpoint of another run (config {identity['config'][:10]}, this run "
                       f"{run.fingerprint()[:10]}); resume it in its own run folder, or delete it to restart this run")
    step = int(ckpt.get("global_step", 0))
    saved = recorded_checkpoint_step(paths)
    if saved is not None and step < saved:
        raise RunError(f"{path}: checkpoint of step {step}, but this run saved step {saved} (an older copy put "
                       f"back?); restore the latest one, or delete {paths.checkpoint_record} to continue from step "
                       f"{step}")
    return CheckpointInfo(path, step, identity["data"])


def _check_data(checkpoint: CheckpointInfo, data_fingerprint: str) -> None:
    """The data a checkpoint was trained on must be the data of this resume: a changed corpus (or tokenizer)
    would mix two datasets in one result."""
    if checkpoint.data_fingerprint != data_fingerprint:
        raise RunError(f"{checkpoint.path}: checkpoint trained on other data (data fingerprint "
                       f"{checkpoint.data_fingerprint[:10]}, the corpus now gives {data_fingerprint[:10]}): the "
                       "corpus or tokenizer changed since; restore them, or delete the checkpoint to restart the run")


def train(run: RunConfig, run_dir: Path | None = None, resume: bool = False,
          callbacks: list[L.Callback] | None = None) -> RunSummary | None:
    """Train ``run`` to its budget and write its records; returns the summary (None on ranks other than 0).

    A finished run (``summary.json`` present) is not trained again: its summary is returned. With ``resume``, an
    unfinished run continues from ``checkpoints/last.ckpt`` with the same data stream, LR schedule and counters.
    ``callbacks`` are added to the trainer's (e.g. an Optuna pruning callback). SIGTERM raises :class:`RunStopped`
    before training, or after the current step with its checkpoint; once training is complete, the run finishes.
    """
    with SIGTERM.handled(), warnings.catch_warnings():
        # Lightning warns on every trainer, fit and validate when an `srun` command exists and this process was not
        # started by it. A run's processes are started by aunet (one, or Lightning's launcher for several devices) or
        # by srun (one per rank, which Lightning then detects): the hint names nothing to do, on every cluster run.
        warnings.filterwarnings("ignore", message="The `srun` command is available on your system but is not used")
        return _train(run, run_dir, resume, callbacks)


def _train(run: RunConfig, run_dir: Path | None, resume: bool, callbacks: list[L.Callback] | None
           ) -> RunSummary | None:
    paths = RunPaths(Path(run_dir) if run_dir else Path(run.train.results_dir) / run.run_id())
    is_rank_zero = rank_zero_only.rank == 0
    tr = run.trainer
    precision = tr.precision or default_precision(tr.accelerator)
    # The hardware settings and the model's size first: Lightning would refuse them with a traceback, and a model
    # that cannot fit would allocate until the machine gives up.
    _filter_chatter(banner=False)  # the real trainer prints the banner, once
    hardware = check_trainer(tr, precision)
    plan = plan_steps(run, hardware.world_size)
    check_memory(run.model, hardware, plan.micro_batch)
    check_trackers(tr)
    # Every rank reads the folder (nothing is written before the fit, so they agree): assuming "resume" on the other
    # ranks made the first job of a SLURM script that always passes --resume fail there, with no checkpoint yet.
    # Everything up to the lock only reads the folder: a refused resume leaves it exactly as it was.
    # Only rank 0 asks whether another process holds the lock: the other ranks start (Lightning's launcher) while
    # their own rank 0 holds it, and would refuse their own job's resume.
    state = _check_existing(paths, run, resume, locked=not is_rank_zero)
    if state == "finished":
        if not is_rank_zero:
            return None
        return _check_finished(paths, run)
    checkpoint = _check_checkpoint(paths, run) if state == "resume" else None
    resume_step = checkpoint.step if checkpoint is not None else 0

    L.seed_everything(run.train.seed, workers=True, verbose=False)
    timer = TrainTimer()
    logger = CSVLogger(save_dir=str(paths.root), name="logs")  # a new version per segment (never overwritten)
    last = LastCheckpoint(paths.last_checkpoint, val_every=plan.val_every,
                          after_save=lambda trainer: _record_checkpoint(paths, trainer))
    all_callbacks: list[L.Callback] = [timer, last, ThroughputLogger(timer, peak_flops=run.train.peak_flops),
                                       RecordsOnCheckpoint(lambda trainer: merge_metrics(paths))]
    if run.train.budget_flops is not None and family_of(run.model).data_dependent_cost:
        all_callbacks.append(BudgetStop(run.train.budget_flops))
    all_callbacks += list(callbacks or [])
    if tr.progress_bar:
        all_callbacks.append(TQDMProgressBar(refresh_rate=1))

    trainer_kwargs = dict(
        accelerator=tr.accelerator, devices=tr.devices, num_nodes=tr.num_nodes, strategy=tr.strategy,
        precision=precision, logger=logger, callbacks=all_callbacks, enable_progress_bar=tr.progress_bar,
        gradient_clip_val=run.train.grad_clip, accumulate_grad_batches=run.train.accumulate,
        log_every_n_steps=run.train.log_every_steps, num_sanity_val_steps=0, use_distributed_sampler=False,
        check_val_every_n_epoch=None, enable_model_summary=False, max_epochs=-1, enable_checkpointing=False,
    )
    _filter_chatter(banner=tr.progress_bar)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*litlogger.*")
        trainer = L.Trainer(max_steps=plan.total_steps, val_check_interval=plan.val_every * run.train.accumulate,
                            **trainer_kwargs)

    datamodule = CorpusDataModule(run, plan.micro_batch, tokenizer_dir=paths.tokenizer)
    optim = dict(lr=run.train.lr, betas=list(run.train.betas), eps=run.train.eps, weight_decay=run.train.weight_decay,
                 warmup_steps=plan.warmup_steps, min_lr_ratio=run.train.min_lr_ratio, total_steps=plan.total_steps)
    # Set the data up before the trainer runs: the module needs the token byte lengths and the validation size.
    # Which data this is (corpus, split, tokenizer) is known before the pack is built: a resume on other data is
    # refused first, with nothing packed for it.
    if is_rank_zero:
        datamodule.data.prepare_tokenizer()
    data_fingerprint = datamodule.data.fingerprint()["sha256"]
    if checkpoint is not None:
        _check_data(checkpoint, data_fingerprint)
    if is_rank_zero:
        datamodule.prepare_data()
    datamodule.setup("fit")
    # Every checkpoint says which run it continues: a checkpoint of another config or other data is refused on resume.
    identity = {"config": run.fingerprint(), "data": data_fingerprint}
    module = LanguageModelModule(model=run.model.to_dict(), optim=optim, micro_batch=plan.micro_batch,
                                 token_bytes=datamodule.data.token_bytes, val_text_bytes=datamodule.data.val_text_bytes,
                                 compile=tr.compile, identity=identity)
    # One process trains into a folder (rank 0 holds the lock for all ranks of its job).
    with RunFolderLock(paths.lock) if is_rank_zero else contextlib.nullcontext():
        # The folder was read before the data was prepared: another process may have trained into it since.
        if is_rank_zero and (_check_existing(paths, run, resume, locked=True) != state or (
                checkpoint is not None and _check_checkpoint(paths, run).step != checkpoint.step)):
            raise RunError(f"{paths.root}: another process wrote to this run while its data was prepared; run the "
                           "command again (with --resume)")
        return _fit(run, paths, plan, trainer, module, datamodule, timer, last, logger, state, resume_step,
                    is_rank_zero)


def _fit(run: RunConfig, paths: RunPaths, plan: Plan, trainer: L.Trainer, module: LanguageModelModule,
         datamodule: CorpusDataModule, timer: TrainTimer, last: LastCheckpoint, logger: CSVLogger, state: str,
         resume_step: int, is_rank_zero: bool) -> RunSummary | None:
    """Write the run's records, train, and write its summary (the run folder is locked and checked)."""
    if SIGTERM.received:  # while the data was prepared: nothing of this segment is written yet
        raise RunStopped(_stopped(paths, resume_step, resume_step, plan), step=resume_step)
    if is_rank_zero:
        # Written once the data is known to be usable: a run refused for its corpus leaves no folder behind.
        datamodule.data.save_tokenizer()
        atomic_write_yaml(paths.config, run.to_dict())
        add_segment(paths, logger.version, resume_step)
    # Trackers are added here, not to the Trainer's constructor: their version is the CSV logger's, known only once
    # the folder is locked (reading it earlier could race another process's segment).
    trackers = tracker_loggers(run.trainer, paths, logger.version)
    if trackers:
        trainer.loggers = [logger, *trackers]  # the CSV logger stays first: trainer.logger is the record
        if is_rank_zero:
            open_tracker_folders(trackers, paths)

    ckpt_path = str(paths.last_checkpoint) if state == "resume" else None
    try:
        summary = _fit_and_record(run, paths, plan, trainer, module, datamodule, timer, last, logger, trackers,
                                  ckpt_path, resume_step)
    except RunStopped:
        raise
    except BaseException as exc:
        # Whatever escapes (a NaN, an I/O error, CUDA out of memory, a bug): no DataLoader worker may outlive it
        # (the process would hang at its exit, see end_loader_workers), and the run is recorded as failed or
        # diverged, never left looking merely unfinished. Ctrl-C (which Lightning turns into SystemExit) is the
        # user's stop, not a failure: the run stays unfinished, to be resumed.
        end_loader_workers()
        if is_rank_zero and not isinstance(exc, (KeyboardInterrupt, SystemExit)):
            _record_failure(paths, exc)
        raise
    if summary is not None:
        paths.failure.unlink(missing_ok=True)  # an earlier attempt's failure is not this finished run's
    return summary


def _record_failure(paths: RunPaths, exc: BaseException) -> None:
    """``failure.json`` for ``exc``, if the folder can still take it (it may be the very thing that went: a folder
    removed while the run trained, a full disk); the exception in flight is what the user must see."""
    with contextlib.suppress(Exception):
        if paths.root.is_dir():
            write_failure(paths, exc)


def _fit_and_record(run: RunConfig, paths: RunPaths, plan: Plan, trainer: L.Trainer, module: LanguageModelModule,
                    datamodule: CorpusDataModule, timer: TrainTimer, last: LastCheckpoint, logger: CSVLogger,
                    trackers: list, ckpt_path: str | None, resume_step: int) -> RunSummary | None:
    """Train (from ``ckpt_path`` when resuming), then save the final checkpoint and write the summary."""
    is_rank_zero = trainer.is_global_zero
    failed = True
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        if trainer.global_step % plan.val_every != 0:
            trainer.validate(module, datamodule=datamodule, verbose=False)
        failed = False
    except (SIGTERMException, RuntimeError) as exc:
        # Lightning stopped the fit on SIGTERM (after LastCheckpoint saved the step, see there), or a DataLoader
        # worker died of the signal before it could ignore it (it does from its first line): a pre-emption, not a
        # failure. Bring metrics.csv up to the checkpoint and report where the run can resume.
        if isinstance(exc, RuntimeError) and not (SIGTERM.received and "DataLoader worker" in str(exc)):
            raise
        failed = False  # stopped to be resumed, not failed
        if is_rank_zero:
            merge_metrics(paths)
        step = last.saved_step if last.saved_step is not None else resume_step
        raise RunStopped(_stopped(paths, trainer.global_step, step, plan), step=step) from None
    finally:
        close_trackers(trackers, failed)
    save_checkpoint(trainer, paths.final_checkpoint)
    save_checkpoint(trainer, paths.last_checkpoint)
    _record_checkpoint(paths, trainer)
    bytes_seen = module.bytes_seen()
    flops_spent = module.flops_spent()  # collectives: every rank takes part
    if not trainer.is_global_zero:
        return None
    logger.save()
    merge_metrics(paths)
    summary = _summary(run, paths, plan, trainer, module, datamodule, timer, bytes_seen, flops_spent)
    write_summary(paths.summary, summary)
    return summary


def _stopped(paths: RunPaths, at: int, step: int, plan: Plan) -> str:
    """The one line of a run stopped by SIGTERM at step ``at`` whose resume point is ``step``."""
    saved = (f"checkpoint of step {step} in {paths.last_checkpoint}" if paths.last_checkpoint.is_file()
             else "no checkpoint yet")
    return f"stopped by SIGTERM at step {at}/{plan.total_steps}; {saved}; run the same command with --resume to " \
           "continue"


def _record_checkpoint(paths: RunPaths, trainer: L.Trainer) -> None:
    if trainer.is_global_zero:
        record_checkpoint(paths, trainer.global_step)


def _summary(run: RunConfig, paths: RunPaths, plan: Plan, trainer: L.Trainer, module: LanguageModelModule,
             datamodule: CorpusDataModule, timer: TrainTimer, bytes_seen: float, realized: float) -> RunSummary:
    report = flops_report(run.model)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if hasattr(v, "item") or isinstance(v, float)}
    steps = trainer.global_step
    flops_spent = steps * plan.flops_per_step
    cost = {}
    if family_of(run.model).data_dependent_cost:
        # Charged at the lengths every step ran at; the plan's figure for the same steps is the comparison.
        planned, flops_spent = flops_spent, realized
        cost = {"planned_steps": plan.total_steps, "flops_planned": planned,
                "flops_drift": flops_spent / planned - 1 if planned else 0.0,
                "stopped_by": "budget" if steps < plan.total_steps else "steps"}
    units_seen = steps * plan.units_per_step
    train_s = max(timer.train_seconds, 1e-9)
    peak = run.train.peak_flops * trainer.world_size if run.train.peak_flops else None
    throughput = {"bytes_per_s": bytes_seen / train_s, "units_per_s": units_seen / train_s,
                  "flops_per_s": flops_spent / train_s, "mfu": flops_spent / train_s / peak if peak else None,
                  "train_time_s": timer.train_seconds, "devices": trainer.world_size}
    git = git_commit()
    data = datamodule.data
    return RunSummary(
        run_id=paths.root.name, name=run.name, family=run.model.family, status="finished",
        val_bpb=metrics.get("val/bpb", math.nan), val_loss=metrics.get("val/loss", math.nan),
        params=report.params, non_embedding_params=report.non_embedding_params,
        flops_per_unit=report.flops_per_unit, unit=report.unit, head_share=report.head_share,
        budget_flops=run.train.budget_flops, steps=steps, flops_per_step=plan.flops_per_step, flops_spent=flops_spent,
        bytes_seen=bytes_seen, tokens_seen=units_seen, bytes_per_token=data.bytes_per_token(),
        val_text_bytes=data.val_text_bytes, wall_time_s=timer.wall_seconds, throughput=throughput,
        git_commit=git["commit"], git_dirty=git["dirty"], seed=run.train.seed, versions=library_versions(),
        data_fingerprint=data.fingerprint()["sha256"], data=data.fingerprint(),
        weights_sha256=weights_sha256(module.model.state_dict()),
        stages=stage_records(paths.metrics, run.model, units_seen), config_fingerprint=run.fingerprint(),
        host=os.uname().nodename if hasattr(os, "uname") else "unknown", cost=cost,
    )
