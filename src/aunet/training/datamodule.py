"""The LightningDataModule of a run: a thin wrapper handing :class:`aunet.data.pipeline.DataPipeline` to Lightning."""

from __future__ import annotations

import functools
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from aunet.data.pipeline import DataPipeline
from aunet.training.callbacks import ignore_sigterm_in_worker
from aunet.training.config import RunConfig


class CorpusDataModule(L.LightningDataModule):
    """Data for one run (``data``: the :class:`~aunet.data.pipeline.DataPipeline` it wraps).

    Args:
        run: the run config (model, data, train sections are read).
        micro_batch: sequences per device per forward pass.
        tokenizer_dir: where the BPE tokenizer of this run is copied (the run folder), or None.
    """

    def __init__(self, run: RunConfig, micro_batch: int, tokenizer_dir: Path | None = None) -> None:
        super().__init__()
        self.run, self.micro_batch = run, micro_batch
        self.data = DataPipeline(run.data, run.model, run.train.seed, tokenizer_dir)

    def prepare_data(self) -> None:
        """Rank 0 only: check the split and train or load the BPE tokenizer into the cache."""
        self.data.prepare()

    def setup(self, stage: str | None = None) -> None:
        self.data.setup()

    def _rank_world(self) -> tuple[int, int]:
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        # A resumed run skips the micro-batches it trained (the module's counter comes from the checkpoint).
        start = getattr(self.trainer.lightning_module, "micro_batches_trained", 0) if self.trainer else 0
        dataset = self.data.train_batches(self.micro_batch, start=start, rank=rank, world_size=world)
        workers = self.run.data.num_workers
        return DataLoader(dataset, batch_size=None, num_workers=workers, persistent_workers=False,
                          pin_memory=torch.cuda.is_available(), prefetch_factor=2 if workers else None,
                          worker_init_fn=functools.partial(ignore_sigterm_in_worker, rank=rank) if workers else None)

    def val_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        return DataLoader(self.data.validation_windows(rank, world), batch_size=self.micro_batch, shuffle=False,
                          num_workers=0)
