"""Tiny trained checkpoints shared by the evaluation tests (each trains in a few seconds on CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aunet.evaluation.checkpoint import LoadedModel, load_checkpoint
from aunet.training.run import train
from tests.threads import single_thread
from tests.training.helpers import TINY_BPE, tiny_run

# Three stages, so that scoring and generation exercise pooling twice; a byte window shorter than the inputs.
TINY_AUNET3 = dict(family="aunet", dims=[32, 48, 64], layers=[1, 1, 1], head_dims=[16, 16, 16], caps=[96, 32, 16],
                   splits=["word@1", "word@2"], windows=[16, None, None], ffn_multiple_of=16)


def _trained(tmp_path: Path, model: dict) -> Path:
    with single_thread():  # session fixtures start before the function-scoped one_thread fixture
        summary = train(tiny_run(tmp_path, model=model, train={"max_steps": 6, "val_every_steps": 6}))
    return tmp_path / "runs" / summary.run_id


@pytest.fixture(scope="session")
def aunet_run_dir(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    return _trained(tmp_path_factory.mktemp("aunet-run"), TINY_AUNET3)


@pytest.fixture(scope="session")
def bpe_run_dir(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    return _trained(tmp_path_factory.mktemp("bpe-run"), TINY_BPE)


@pytest.fixture(scope="session")
def aunet_loaded(aunet_run_dir: Path) -> LoadedModel:
    return load_checkpoint(aunet_run_dir)


@pytest.fixture(scope="session")
def bpe_loaded(bpe_run_dir: Path) -> LoadedModel:
    return load_checkpoint(bpe_run_dir)
