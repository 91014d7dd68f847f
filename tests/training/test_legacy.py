"""Numbers and records of the code before the family interface and the run-record schema (``tests/fixtures/``).

The fixtures were written by ``python -m tests.training.test_legacy --write`` on the commit before that refactor:

* ``legacy_numerics.json``: per tiny run (AU-Net-2 and BPE, 6 steps on Tiny Shakespeare, one thread), the training
  loss of every step, the validation bits per byte and the sha256 of the final weights;
* ``legacy-run/``: the AU-Net run's folder as a crash after the checkpoint of step 4 left it (no summary);
* ``legacy-summary.json``: the finished AU-Net run's ``summary.json``.

The same seed on the CPU must give bit-identical losses and weights, the old checkpoint must resume to the weights of
the uninterrupted run, and the old summary must load.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import pytest

from aunet.training.run import train
from tests.training.helpers import TINY_BPE, tiny_run

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
# Smaller than TINY_AUNET so that its checkpoint (weights and AdamW state) stays a small file in the repository.
LEGACY_AUNET = dict(family="aunet", dims=[16, 32], layers=[1, 1], head_dims=[16, 16], caps=[64, 24],
                    splits=["word@1"], n_offsets=2, ffn_multiple_of=16)
MODELS = {"aunet2": LEGACY_AUNET, "bpe": TINY_BPE}
# The fixtures were trained on the streamed data (the only stream then); their config.yaml has no data.stream.
STREAMED = {"stream": "streamed"}
KEPT = ("config.yaml", "metrics.csv", "checkpoints/last.ckpt", "logs/segments.json", "logs/checkpoint.json",
        "logs/version_0/metrics.csv", "logs/version_0/hparams.yaml")


def numerics(run_dir: Path, summary: dict) -> dict:
    with open(run_dir / "metrics.csv", newline="") as handle:
        losses = [float(r["train/loss"]) for r in csv.DictReader(handle) if r.get("train/loss")]
    return {"train_loss": losses, "val_bpb": summary.val_bpb, "weights_sha256": summary.weights_sha256}


def test_training_numerics_are_bit_identical(tmp_path, data_dir):
    recorded = json.loads((FIXTURES / "legacy_numerics.json").read_text())
    for name, model in MODELS.items():
        summary = train(tiny_run(tmp_path / name, model=model, train={"log_every_steps": 1}, data=STREAMED))
        run_dir = tmp_path / name / "runs" / summary.run_id
        assert numerics(run_dir, summary) == recorded[name], name


def test_a_checkpoint_of_the_old_code_resumes(tmp_path, data_dir):
    recorded = json.loads((FIXTURES / "legacy_numerics.json").read_text())
    run = tiny_run(tmp_path, model=LEGACY_AUNET, train={"log_every_steps": 1}, data=STREAMED)
    shutil.copytree(FIXTURES / "legacy-run", tmp_path / "runs" / run.run_id())
    resumed = train(run, resume=True)
    assert resumed.weights_sha256 == recorded["aunet2"]["weights_sha256"]
    assert resumed.val_bpb == recorded["aunet2"]["val_bpb"]


class _Crash(Exception):
    pass


def write(out: Path) -> None:
    """Write the fixtures with the code of this checkout (see the module docstring)."""
    import lightning as L

    class CrashAt(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step >= 4:
                raise _Crash("crash after the checkpoint of step 4")

    import tempfile

    tmp = Path(tempfile.mkdtemp())
    recorded = {}
    for name, model in MODELS.items():
        summary = train(tiny_run(tmp / name, model=model, train={"log_every_steps": 1}, data=STREAMED))
        run_dir = tmp / name / "runs" / summary.run_id
        recorded[name] = numerics(run_dir, summary)
        if name == "aunet2":
            shutil.copy(run_dir / "summary.json", out / "legacy-summary.json")
    run = tiny_run(tmp / "crash", model=LEGACY_AUNET, train={"log_every_steps": 1}, data=STREAMED)
    try:
        train(run, callbacks=[CrashAt()])
    except _Crash:
        pass
    crashed = tmp / "crash" / "runs" / run.run_id()
    shutil.rmtree(out / "legacy-run", ignore_errors=True)
    for relative in KEPT:
        if (crashed / relative).is_file():
            (out / "legacy-run" / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(crashed / relative, out / "legacy-run" / relative)
    (out / "legacy_numerics.json").write_text(json.dumps(recorded, indent=1) + "\n")


if __name__ == "__main__":
    if "--write" in sys.argv:
        import torch

        torch.set_num_threads(1)
        write(FIXTURES)
    else:
        pytest.main([__file__])
