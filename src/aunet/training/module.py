"""One LightningModule for every family: next-unit cross-entropy (plus the family's auxiliary term, if any), AdamW
with warmup + cosine, and metrics.

Validation bits per byte are computed identically for bytes and BPE tokens: the summed negative log-likelihood of
every text target (BOS/EOS targets excluded) over the validation text, divided by its UTF-8 byte count and ln 2.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric, SumMetric

from aunet.errors import DivergedError
from aunet.flops import flops_report
from aunet.models import build_model, family_of, model_config_from_dict
from aunet.models.loss import IGNORE, compiled_next_unit_loss, next_unit_loss
from aunet.training.optim import adamw
from aunet.training.schedule import warmup_cosine


class LanguageModelModule(L.LightningModule):
    """Wraps the model of any family (:func:`~aunet.models.build_model`) for training.

    Args:
        model: the model section as a plain dict (``RunConfig.model.to_dict()``), so checkpoints stay loadable with
            ``weights_only=True``.
        optim: ``lr``, ``betas``, ``eps``, ``weight_decay``, ``warmup_steps``, ``min_lr_ratio``, ``total_steps``.
        micro_batch: sequences per device per forward pass.
        token_bytes: ``[vocab]`` UTF-8 bytes per token id (0 for BOS/EOS), to count bytes and score bits per byte.
        val_text_bytes: UTF-8 bytes of the whole validation text (all ranks): the bits-per-byte denominator.
        compile: compile the model's forward and the training loss with ``torch.compile``.
        identity: the run this module trains, ``{"config": fingerprint, "data": fingerprint}``; saved with the
            hyperparameters in every checkpoint, so that a resume can refuse a checkpoint of another run.

    Batches are dicts with ``tokens`` ``[B, S+1]`` (inputs are the first S, targets the last S; PAD < 0 is never
    scored) and, for AU-Net with several stages (and learned chunking, which observes them), ``levels`` ``[B, S+1]``.

    FLOPs spent: the formula's FLOPs per step times the steps taken, except for a family whose cost is learned
    (``family.data_dependent_cost``), which is charged the realized FLOPs of every micro-batch
    (``family.realized_flops``), summed over ranks and over the segments of a resumed run.
    """

    def __init__(self, model: dict[str, Any], optim: dict[str, Any], micro_batch: int, token_bytes: list[int],
                 val_text_bytes: int, compile: bool = False, identity: dict[str, str] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["token_bytes"])
        self.model_config = model_config_from_dict(model)
        self.model = build_model(self.model_config)
        self.family = family_of(self.model_config)
        report = flops_report(self.model_config)
        self.flops_per_unit = report.flops_per_unit
        self.units_per_sequence = report.seq_len
        self.register_buffer("token_bytes", torch.tensor(token_bytes, dtype=torch.long), persistent=False)
        self.register_buffer("bytes_seen_local", torch.zeros((), dtype=torch.float64), persistent=False)
        self.bytes_seen_before = 0.0  # from earlier segments of a resumed run
        self.register_buffer("flops_spent_local", torch.zeros((), dtype=torch.float64), persistent=False)
        self.flops_spent_before = 0.0  # realized FLOPs of earlier segments (data-dependent cost only)
        self.micro_batches_trained = 0  # the data position, saved in checkpoints
        # Sums in float64: bits per byte over a large validation text must not drift with float32 rounding.
        # nan_strategy="disable": a NaN is summed like any value. torchmetrics' default drops it with a warning, so
        # weights gone NaN validated to a bpb of 0.0 (NaN nats dropped, the byte count kept): a record-breaking run.
        self.val_loss = MeanMetric(nan_strategy="disable").set_dtype(torch.float64)
        self.val_nats = SumMetric(nan_strategy="disable").set_dtype(torch.float64)
        self.val_token_bytes = SumMetric(nan_strategy="disable").set_dtype(torch.float64)
        self.val_nonfinite = SumMetric(nan_strategy="disable").set_dtype(torch.float64)
        self.loss_fn = compiled_next_unit_loss() if compile else next_unit_loss
        if compile:
            self.model.compile()

    # --- forward and loss ------------------------------------------------------------------------------------------

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits, targets, stats = self.family.forward_batch(self.model, batch, return_stats=True)
        loss = self.loss_fn(logits, targets)
        auxiliary = self.family.auxiliary_loss(stats)
        total = loss if auxiliary is None else loss + auxiliary
        # One host sync per step: a NaN must stop the run before it reaches a checkpoint.
        if not torch.isfinite(total):
            raise DivergedError(f"training loss became {total.item()} at step {self.global_step}; lower train.lr "
                                "or check the data (the last good checkpoint and the records are kept)")
        cost = self.family.realized_flops(stats)
        if cost is not None:
            self.flops_spent_local += cost
        self.micro_batches_trained += 1
        inputs = batch["tokens"][:, :-1].clamp(min=0)
        self.bytes_seen_local += self.token_bytes[inputs].sum()
        log = dict(on_step=True, on_epoch=False, batch_size=inputs.shape[0])
        self.log("train/loss", loss, prog_bar=True, **log)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], **log)
        if auxiliary is not None:
            self.log("train/aux_loss", auxiliary, **log)
        for key, value in self.family.step_metrics(batch, stats).items():
            self.log(f"train/{key}", value, **log)
        return total

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # Units spent are a deterministic function of the optimizer step, and so are FLOPs where the formula fixes
        # them: logged without a device sync.
        self.log("train/flops_spent", self.flops_spent(), on_step=True, on_epoch=False)
        self.log("train/units_seen", float(self.global_step * self.units_per_step), on_step=True, on_epoch=False)

    @property
    def units_per_step(self) -> int:
        """Input units (bytes or tokens) per optimizer step over all devices."""
        accumulate = self.trainer.accumulate_grad_batches if self._trainer is not None else 1
        world = self.trainer.world_size if self._trainer is not None else 1
        return self.units_per_sequence * self.hparams.micro_batch * accumulate * world

    @property
    def flops_per_step(self) -> float:
        """FLOPs of one optimizer step by the formula (for a learned cost: at the target ratios, as planned)."""
        return self.flops_per_unit * self.units_per_step

    def flops_spent(self) -> float:
        """FLOPs charged so far over all ranks and segments (a collective under DDP where the cost is realized)."""
        if not self.family.data_dependent_cost:
            return float(self.global_step * self.flops_per_step)
        local = self.flops_spent_local.clone()
        total = self.trainer.strategy.reduce(local, reduce_op="sum") if self._trainer is not None else local
        return self.flops_spent_before + float(total)

    def bytes_seen(self) -> float:
        """Text bytes seen as inputs over all ranks and all segments of the run (a collective under DDP)."""
        local = self.bytes_seen_local.clone()
        total = self.trainer.strategy.reduce(local, reduce_op="sum") if self._trainer is not None else local
        return self.bytes_seen_before + float(total)

    # --- validation ------------------------------------------------------------------------------------------------

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits, targets, _ = self.family.forward_batch(self.model, batch)
        flat = targets.flatten()
        nats = F.cross_entropy(logits.float().flatten(0, 1), flat, ignore_index=IGNORE, reduction="none")
        scored = flat != IGNORE
        nats = nats.double()
        self.val_nonfinite.update((~torch.isfinite(nats[scored])).sum().double())
        self.val_loss.update(nats[scored])
        text_bytes = torch.where(scored, self.token_bytes[flat.clamp(min=0)], torch.zeros_like(flat))
        text = text_bytes > 0
        self.val_nats.update(nats[text].sum())
        self.val_token_bytes.update(text_bytes.sum().double())

    def on_validation_epoch_end(self) -> None:
        # torchmetrics sums over ranks; the denominator is the exact byte count of the validation text.
        # The values are equal on every rank already; sync_dist (by max: exact, where a mean of n copies may round)
        # only tells Lightning so, which otherwise warns under DDP.
        nats, sync = self.val_nats.compute(), dict(sync_dist=True, reduce_fx="max")
        loss, bpb = self.val_loss.compute(), nats / (self.hparams.val_text_bytes * math.log(2))
        token_bytes, nonfinite = self.val_token_bytes.compute(), int(self.val_nonfinite.compute())
        for metric in (self.val_loss, self.val_nats, self.val_token_bytes, self.val_nonfinite):
            metric.reset()
        # Checked before anything is logged: a non-finite value must not reach metrics.csv or a checkpoint.
        if nonfinite or not (torch.isfinite(loss) and torch.isfinite(bpb)):
            raise DivergedError(f"validation at step {self.global_step}: {nonfinite} non-finite next-unit loss(es), "
                                f"val/loss {float(loss):.4g}, val/bpb {float(bpb):.4g}; the weights diverged: lower "
                                "train.lr, check train.eps and the precision (the last good checkpoint and the "
                                "records are kept)")
        self.log("val/loss", loss, prog_bar=True, **sync)
        self.log("val/bpb", bpb, prog_bar=True, **sync)
        self.log("val/token_bytes", token_bytes, **sync)

    # --- optimisation ----------------------------------------------------------------------------------------------

    def configure_optimizers(self) -> dict[str, Any]:
        o = self.hparams.optim
        # Weight decay on every parameter, norms and embeddings included, as in the paper's code.
        precision = str(self.trainer.precision) if self._trainer is not None else "32-true"
        optimizer = adamw(self.model.parameters(), precision, lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"],
                          weight_decay=o["weight_decay"])
        total, warmup, floor = int(o["total_steps"]), int(o["warmup_steps"]), float(o["min_lr_ratio"])
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine(step, total, warmup, floor))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # --- resumable state beyond weights and optimizer --------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["aunet"] = {"micro_batches_trained": self.micro_batches_trained, "bytes_seen": self.bytes_seen()}
        if self.family.data_dependent_cost:
            checkpoint["aunet"]["flops_spent"] = self.flops_spent()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("aunet", {})
        self.micro_batches_trained = int(state.get("micro_batches_trained", 0))
        self.bytes_seen_before = float(state.get("bytes_seen", 0.0))
        self.bytes_seen_local.zero_()
        self.flops_spent_before = float(state.get("flops_spent", 0.0))
        self.flops_spent_local.zero_()
