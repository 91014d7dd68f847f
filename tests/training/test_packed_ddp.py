"""The packed stream under real data parallelism on CPU: a two-rank run (DDP over gloo, two DataLoader workers per
rank) killed mid-epoch resumes to the uninterrupted run's weights. (Every window once per epoch over two ranks with
two workers each: tests/data/test_packed_ranks.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.training.helpers import tiny_run
from tests.training.test_interruption import wait_for_checkpoints

WORLD = 2


def _train(config: Path, tmp_path: Path, data_dir: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "AUNET_DATA_DIR": str(data_dir.resolve()), "PYTHONUNBUFFERED": "1"}
    env.pop("SLURM_NTASKS", None)
    return subprocess.Popen([sys.executable, "-m", "aunet", "train", str(config), "--no-progress", *extra],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


@pytest.mark.slow
def test_a_two_rank_run_killed_mid_epoch_resumes_to_the_uninterrupted_weights(tmp_path, data_dir):
    sections = dict(train={"max_steps": 24, "val_every_steps": 4, "batch_size": 4},
                    data={"num_workers": 2, "val_bytes": 1024},
                    trainer={"devices": WORLD, "strategy": "ddp"})
    summaries = []
    for name in ("straight", "killed"):
        folder = tmp_path / name
        folder.mkdir()
        run = tiny_run(folder, **sections)
        config = folder / "run.yaml"
        config.write_text(json.dumps(run.to_dict()))
        proc = _train(config, folder, data_dir)
        run_dir = folder / "runs" / run.run_id()
        if name == "killed":
            wait_for_checkpoints(proc, run_dir, count=2, timeout=300)
            assert proc.poll() is None, "the run finished before it could be killed: lengthen it"
            os.killpg(proc.pid, signal.SIGKILL)  # both ranks and their workers, mid-epoch
            proc.wait()
            step = json.loads((run_dir / "logs" / "checkpoint.json").read_text())["step"]
            assert 0 < step < 24
            proc = _train(config, folder, data_dir, "--resume")
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        summaries.append(json.loads((run_dir / "summary.json").read_text()))
    straight, resumed = summaries
    assert resumed["steps"] == straight["steps"] == 24 and resumed["throughput"]["devices"] == WORLD
    assert resumed["weights_sha256"] == straight["weights_sha256"] and resumed["val_bpb"] == straight["val_bpb"]
    assert resumed["data"]["stream"] == "aunet-pack-v1"
