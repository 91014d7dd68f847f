"""Numbers and records of the code before the family interface and the run-record schema (``tests/fixtures/``).

The fixtures were written by ``python -m tests.training.test_legacy --write`` on the commit before that refactor:

* ``legacy_numerics.json``: per tiny run (AU-Net-2 and BPE, 6 steps on Tiny Shakespeare, one thread), the training
  loss of every step, the validation bits per byte and the sha256 of the final weights;
* ``legacy-run/``: the AU-Net run's folder as a crash after the checkpoint of step 4 left it (no summary);
* ``legacy-summary.json``: the finished AU-Net run's ``summary.json``.

The same seed must give the recorded losses and bits per byte, the old checkpoint must resume to the recorded result,
and the old summary must load. Across machines within a tolerance (:data:`RTOL`), never bit for bit: the fixtures
were recorded on the developers' CPU, and another CPU (an Intel Xeon with AVX-512, one thread) rounds a sum in
another order, so its fourth loss differed in the 7th digit and its weights hash entirely. Bit identity is a
same-machine property, tested on the machine that runs the tests (a resumed run against an uninterrupted one,
``tests/training/test_run.py::test_killed_and_resumed_run_equals_an_uninterrupted_one``).
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


# Relative tolerance of numbers compared with fixtures recorded on another machine: floating-point sums reordered by
# another CPU's vector width differ in the 7th digit after a few steps (8.6e-8 relative seen); a change of the code's
# numerics (another initialisation, loss or schedule) moves them in the 2nd or 3rd.
RTOL = 1e-5


def numerics(run_dir: Path, summary: dict) -> dict:
    with open(run_dir / "metrics.csv", newline="") as handle:
        losses = [float(r["train/loss"]) for r in csv.DictReader(handle) if r.get("train/loss")]
    return {"train_loss": losses, "val_bpb": summary.val_bpb, "weights_sha256": summary.weights_sha256}


def same_numerics(measured: dict, recorded: dict) -> bool:
    """Whether ``measured`` losses and bits per byte are ``recorded``'s within :data:`RTOL` (the weights hash is not
    compared: it differs with any last bit, and on another CPU it does)."""
    return (len(measured["train_loss"]) == len(recorded["train_loss"])
            and measured["train_loss"] == pytest.approx(recorded["train_loss"], rel=RTOL)
            and measured["val_bpb"] == pytest.approx(recorded["val_bpb"], rel=RTOL))


def test_the_comparison_takes_another_cpus_rounding_and_not_another_result():
    """The rounding of another CPU (each number off in its 7th digit) passes; a change in the 4th digit does not."""
    recorded = json.loads((FIXTURES / "legacy_numerics.json").read_text())["aunet2"]

    def scaled(factor: float) -> dict:
        return {"train_loss": [x * factor for x in recorded["train_loss"]], "val_bpb": recorded["val_bpb"] * factor,
                "weights_sha256": "another CPU's hash"}

    assert same_numerics(scaled(1 + 1e-7), recorded) and same_numerics(scaled(1 - 1e-7), recorded)
    assert not same_numerics(scaled(1 + 1e-4), recorded)
    assert not same_numerics({**recorded, "train_loss": recorded["train_loss"][:-1]}, recorded)


def test_training_numerics_match_the_record(tmp_path, data_dir):
    recorded = json.loads((FIXTURES / "legacy_numerics.json").read_text())
    for name, model in MODELS.items():
        summary = train(tiny_run(tmp_path / name, model=model, train={"log_every_steps": 1}, data=STREAMED))
        run_dir = tmp_path / name / "runs" / summary.run_id
        assert same_numerics(numerics(run_dir, summary), recorded[name]), (name, numerics(run_dir, summary))


def test_a_checkpoint_of_the_old_code_resumes(tmp_path, data_dir):
    recorded = json.loads((FIXTURES / "legacy_numerics.json").read_text())
    run = tiny_run(tmp_path, model=LEGACY_AUNET, train={"log_every_steps": 1}, data=STREAMED)
    shutil.copytree(FIXTURES / "legacy-run", tmp_path / "runs" / run.run_id())
    resumed = train(run, resume=True)
    run_dir = tmp_path / "runs" / run.run_id()
    assert same_numerics(numerics(run_dir, resumed), recorded["aunet2"]), numerics(run_dir, resumed)


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
