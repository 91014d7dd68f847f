"""Trackers next to the CSV log (``trainer.loggers``): each one, on a microscopic run, holds the validation bits per
byte the CSV record holds, under the run folder, offline; the setting is checked and leaves the run id alone."""

from __future__ import annotations

import csv
import importlib.util
import struct

import pytest

from aunet.errors import ConfigError
from aunet.training.config import TRACKERS
from aunet.training.records import RunPaths
from aunet.training.run import train
from aunet.training.trackers import check_trackers
from tests.training.helpers import tiny_run


def csv_val_bpb(paths: RunPaths) -> list[float]:
    with paths.metrics.open(newline="") as handle:
        return [float(r["val/bpb"]) for r in csv.DictReader(handle) if r.get("val/bpb")]


def tensorboard_val_bpb(paths: RunPaths) -> list[float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (folder,) = paths.tensorboard.glob("version_*")
    events = EventAccumulator(str(folder))
    events.Reload()
    return [e.value for e in events.Scalars("val/bpb")]


def wandb_val_bpb(paths: RunPaths) -> list[float]:
    """``val/bpb`` of the history records of the offline W&B run file, read without wandb's service.

    The file is a LevelDB log (32 KiB blocks of chunks with a 7-byte header: crc32c, length, type; types 1 and 4
    end a record) after a 7-byte W&B header; each record is a ``wandb_internal_pb2.Record``."""
    from wandb.proto import wandb_internal_pb2

    (run_file,) = paths.wandb.glob("offline-run-*/run-*.wandb")
    data = run_file.read_bytes()
    assert data.startswith(b":W&B")
    block, pos, pending, values = 32768, 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            if record.WhichOneof("record_type") == "history":
                # wandb writes a key with "/" as a plain key or as its parts, depending on the version
                items = {item.key or "/".join(item.nested_key): item.value_json for item in record.history.item}
                if "val/bpb" in items:
                    values.append(float(items["val/bpb"]))
    return values


READERS = {"tensorboard": tensorboard_val_bpb, "wandb": wandb_val_bpb}


@pytest.mark.parametrize("tracker", TRACKERS)
def test_a_tracker_logs_the_validation_bpb_under_the_run_folder(tracker, tmp_path, data_dir, monkeypatch):
    if importlib.util.find_spec(tracker) is None:
        pytest.skip(f"{tracker} is not installed (wandb is the optional extra aunet[wandb])")
    # Offline by default: no WANDB_MODE, no network, nothing written outside tmp_path.
    monkeypatch.delenv("WANDB_MODE", raising=False)
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    sections = {"train": {"max_steps": 4, "val_every_steps": 2}}
    run = tiny_run(tmp_path, trainer={"loggers": [tracker]}, **sections)
    # Loggers change where metrics are shown, not the result: the run id is the one without them.
    assert run.run_id() == tiny_run(tmp_path, **sections).run_id()
    summary = train(run)
    paths = RunPaths(tmp_path / "runs" / summary.run_id)
    recorded = csv_val_bpb(paths)  # the CSV record is still written, and is what the tracker must match
    assert len(recorded) == 2 and recorded[-1] == pytest.approx(summary.val_bpb)
    assert READERS[tracker](paths) == pytest.approx(recorded)


def test_unknown_logger_is_one_line_naming_the_key_and_the_choices(tmp_path):
    with pytest.raises(ConfigError) as info:
        tiny_run(tmp_path, trainer={"loggers": ["tensorbord"]})
    message = str(info.value)
    assert "trainer.loggers" in message and "'tensorbord'" in message and "\n" not in message
    assert all(name in message for name in TRACKERS)


def test_a_missing_tracker_package_is_refused_with_the_install_line(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError, match=r"trainer\.loggers.*wandb.*not installed.*aunet\[wandb\]"):
        check_trackers(tiny_run(tmp_path, trainer={"loggers": ["tensorboard", "wandb"]}).trainer)
    check_trackers(tiny_run(tmp_path, trainer={"loggers": ["tensorboard"]}).trainer)  # the installed one passes


def test_loggers_can_be_set_from_the_command_line(tmp_path):
    from aunet.training.config import load_run_config

    run = load_run_config("tiny-aunet2", ["trainer.loggers=[tensorboard, wandb]"])
    assert run.trainer.loggers == ["tensorboard", "wandb"]
    assert run.run_id() == load_run_config("tiny-aunet2").run_id()
