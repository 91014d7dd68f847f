"""The trainer's hardware settings and the memory a model needs, checked before any work starts.

Lightning checks ``accelerator``, ``devices``, ``num_nodes``, ``strategy`` and ``precision`` when a ``Trainer`` is
built, with its own exception types and sometimes an import error (``accelerator: tpu`` without torch_xla). The run
builds a throwaway trainer first (it launches nothing and allocates nothing) and turns Lightning's refusal into a
:class:`~aunet.errors.ConfigError` naming the ``trainer.*`` key and its command-line flag, so no traceback reaches
the user. Then the memory the model needs before its first step is compared with what the device has.
"""

from __future__ import annotations

import dataclasses
import os
import warnings

import lightning as L
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException

from aunet.errors import ConfigError, excerpt
from aunet.memory import logits_bytes, machine_memory, static_bytes
from aunet.models.config import ModelConfig
from aunet.training.config import TrainerConfig

# What each key accepts, for the fix of the message (Lightning's own message says what it refused).
_FIXES = {
    "accelerator": "use one this machine has (cpu, cuda, gpu, mps) or auto",
    "devices": "give a positive number of devices per node, or auto",
    "num_nodes": "give a positive number of nodes",
    "strategy": "use auto, ddp, ddp_spawn, fsdp, deepspeed (the last two on GPUs)",
    "precision": "use 32-true, bf16-mixed, 16-mixed, bf16-true, 16-true or 64-true",
}
_DEFAULTS = {"accelerator": "auto", "devices": "auto", "num_nodes": 1, "strategy": "auto", "precision": "32-true"}
# Lightning raises these for settings it cannot use (an accelerator without its package is an ImportError).
_REFUSALS = (MisconfigurationException, ValueError, TypeError, RuntimeError, ImportError, NotImplementedError)


@dataclasses.dataclass(frozen=True)
class Hardware:
    """What the trainer will run on: processes in all, and the device type of this process (``cpu``, ``cuda``)."""

    world_size: int
    device: torch.device
    sharded: bool  # the strategy shards weights and optimizer state over the processes (FSDP, DeepSpeed)


def _probe(settings: dict) -> L.Trainer:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return L.Trainer(**settings, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)


def check_trainer(tr: TrainerConfig, precision: str) -> Hardware:
    """Lightning's verdict on the trainer settings, before any work: a ConfigError names the key Lightning refuses
    (found by putting each key back to its default until Lightning accepts), with Lightning's reason."""
    settings = {"accelerator": tr.accelerator, "devices": tr.devices, "num_nodes": tr.num_nodes,
                "strategy": tr.strategy, "precision": precision}
    try:
        probe = _probe(settings)
    except _REFUSALS as exc:
        reason = excerpt(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, 160, quote=False)
        key = next((k for k in settings if settings[k] != _DEFAULTS[k] and _accepts({**settings, k: _DEFAULTS[k]})),
                   None)
        where = f"trainer.{key} (--{key.replace('_', '-')})" if key else "trainer"
        what = f" {key}={excerpt(settings[key])}" if key else " these settings"
        fix = _FIXES[key] if key else "check the trainer section and the hardware flags"
        raise ConfigError(where, f"Lightning refuses{what}: {reason.rstrip('.')}; {fix}") from None
    if probe.world_size > 1 and probe.strategy.root_device.type == "cpu" and tr.num_nodes == 1 \
            and probe.num_devices > (os.cpu_count() or 1):
        raise ConfigError("trainer.devices (--devices)", f"{probe.num_devices} CPU processes on "
                          f"{os.cpu_count()} cores; give at most {os.cpu_count()}")
    name = type(probe.strategy).__name__.lower()
    return Hardware(probe.world_size, probe.strategy.root_device, "fsdp" in name or "deepspeed" in name)


def _accepts(settings: dict) -> bool:
    try:
        _probe(settings)
    except _REFUSALS:
        return False
    return True


def device_memory(device: torch.device) -> int | None:
    """Bytes of memory of ``device`` (the machine's RAM for the CPU), or None when unknown."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device.index or 0).total_memory)
    if device.type == "cpu":
        return machine_memory()
    return None


def check_memory(model: ModelConfig, hardware: Hardware, micro_batch: int | None = None) -> None:
    """Refuse a model whose weights, gradients, AdamW state and rotary tables alone exceed the device's memory
    (activations come on top): a cap or width with a few zeros too many would otherwise allocate until the
    machine swaps or the process is killed. With ``micro_batch`` (sequences per device per forward pass), the
    logits of one such batch are counted too (:func:`aunet.memory.logits_bytes`): a batch size of 1e8 made a
    DataLoader worker die of memory and the run hang. Both are floors: a refused config cannot fit at all."""
    available = device_memory(hardware.device)
    if available is None:
        return
    needed = static_bytes(model, shards=hardware.world_size if hardware.sharded else 1)
    if needed > available:
        raise ConfigError("model", f"needs about {needed / 2**30:.3g} GiB before its first step (weights, gradients, "
                                   f"optimizer state, rotary tables), more than the {available / 2**30:.3g} GiB of "
                                   f"this {hardware.device.type}; lower model.caps, dims or layers")
    if micro_batch is not None and needed + logits_bytes(model, micro_batch) > available:
        fits = (available - needed) // logits_bytes(model, 1)
        raise ConfigError("train.batch_size", f"{micro_batch} sequences per device and forward pass need about "
                                              f"{logits_bytes(model, micro_batch) / 2**30:.3g} GiB for their logits "
                                              f"alone, more than the {available / 2**30:.3g} GiB of this "
                                              f"{hardware.device.type} (the model takes {needed / 2**30:.3g}); at "
                                              f"most {fits} fit: lower train.batch_size, or raise train.accumulate")
