"""Experiment trackers next to the CSV log: TensorBoard and Weights & Biases (``trainer.loggers``).

The CSV log stays the record (``metrics.csv``, the summary and the sweep tables are built from it); a tracker only
shows the same metrics in its own viewer. Both write under the run folder's ``logs/`` and need no network: W&B runs
offline unless ``WANDB_MODE`` says otherwise (``wandb sync logs/wandb/offline-run-*`` uploads a run later).
"""

from __future__ import annotations

import importlib.util
import netrc
import os
from urllib.parse import urlparse

from lightning.pytorch.loggers import Logger, TensorBoardLogger, WandbLogger

from aunet.errors import ConfigError, excerpt
from aunet.training.config import TrainerConfig
from aunet.training.records import RunPaths

DEFAULT_PROJECT = "aunet"
# The module each tracker needs, and how to get it (wandb is an optional extra: a large install few runs use).
_MODULES = {"tensorboard": ("tensorboard", "pip install tensorboard"),
            "wandb": ("wandb", "pip install 'aunet[wandb]'")}


# The modes wandb.init accepts; the first three need no account, the others log to a server with an API key.
WANDB_OFFLINE_MODES = ("offline", "dryrun", "disabled")
WANDB_ONLINE_MODES = ("online", "run", "shared")


def wandb_mode() -> str:
    """The W&B mode of a run: ``WANDB_MODE``, else offline (no network, no account)."""
    return os.environ.get("WANDB_MODE") or "offline"


def check_trackers(trainer: TrainerConfig) -> None:
    """Refuse a tracker whose package is missing, before any data is read (a one-line fix, not a traceback); and
    for W&B a mode it does not know or an online mode without credentials (wandb.init failed inside the fit, with a
    traceback and a half-made run folder)."""
    for name in dict.fromkeys(trainer.loggers):
        module, fix = _MODULES[name]
        if importlib.util.find_spec(module) is None:
            raise ConfigError("trainer.loggers", f"{name} needs the {module} package, which is not installed; {fix}")
        if name == "wandb":
            mode = wandb_mode()
            if mode not in WANDB_OFFLINE_MODES + WANDB_ONLINE_MODES:
                raise ConfigError("WANDB_MODE", f"{excerpt(mode)} is not a W&B mode; use offline (the default, also "
                                                "when unset), online or disabled")
            if mode in WANDB_ONLINE_MODES and not _wandb_credentials():
                raise ConfigError("WANDB_MODE", f"{mode}: W&B would log to its server, but no API key is set; set "
                                                "WANDB_API_KEY (or run `wandb login`), or unset WANDB_MODE to log "
                                                "offline (`wandb sync` uploads later)")


def _wandb_credentials() -> bool:
    """Whether W&B can find credentials without asking: ``WANDB_API_KEY``, an identity token file, or a netrc
    entry for its host (what ``wandb login`` writes)."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname or "api.wandb.ai"
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def tracker_loggers(trainer: TrainerConfig, paths: RunPaths, version: int) -> list[Logger]:
    """The loggers of ``trainer.loggers`` for the run folder ``paths``, in the order given (duplicates once).

    ``version`` is the CSV logger's: a resumed segment's TensorBoard events go to a new ``version_N`` beside its CSV
    log. The W&B run id is the run id, so a resume continues the same W&B run.
    """
    out: list[Logger] = []
    for name in dict.fromkeys(trainer.loggers):
        if name == "tensorboard":
            # No "hp_metric" placeholder: Lightning would log -1 under it, a number that is not a metric.
            out.append(TensorBoardLogger(save_dir=str(paths.tensorboard), name="", version=version,
                                         default_hp_metric=False))
        elif name == "wandb":
            # wandb.init writes into <dir>/wandb/, so dir is the folder above paths.wandb. The mode is passed to
            # wandb.init directly: Lightning's offline=True would set WANDB_MODE for the whole process instead.
            out.append(WandbLogger(save_dir=str(paths.wandb.parent), project=trainer.project or DEFAULT_PROJECT,
                                   name=paths.root.name, id=paths.root.name,
                                   mode=wandb_mode()))
    return out


def open_tracker_folders(loggers: list[Logger], paths: RunPaths) -> None:
    """Create the W&B folder before the run starts (rank 0, once the run folder is locked): wandb.init falls back to
    a temporary folder, outside the run, when its ``dir`` does not exist."""
    if any(isinstance(logger, WandbLogger) for logger in loggers):
        paths.wandb.mkdir(parents=True, exist_ok=True)


def close_trackers(loggers: list[Logger], failed: bool = False) -> None:
    """End the W&B run (Lightning leaves it open: the next run trained in this process, a sweep worker's, would log
    into it). ``failed`` marks it so; a run stopped by SIGTERM and resumed later continues it under the same id."""
    if any(isinstance(logger, WandbLogger) for logger in loggers):
        import wandb  # installed: check_trackers refused the run otherwise

        if wandb.run is not None:  # None on ranks other than 0, and before the first step logged
            wandb.finish(exit_code=1 if failed else 0)
