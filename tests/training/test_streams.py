"""Which training stream a run read: the packed one by default, the streamed one for every run recorded before
packing existed (its records carry no data.stream), with the ids and fingerprints those runs were given."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from aunet.sweeps.table import row_for
from aunet.training.config import load_recorded_config, run_config_from_dict, run_config_from_record

REPO = Path(__file__).resolve().parents[2]
RECORDED = sorted((REPO / "results" / "runs").glob("*/config.yaml"))


def test_the_committed_runs_load_under_their_own_ids_and_streams():
    """Every committed run keeps its id; a record without data.stream (before packing) is streamed, one that names
    its stream (the packed demo's runs, the streamed twins of sweeps/demo-streams.yaml) keeps it."""
    assert len(RECORDED) > 100
    streams = set()
    for path in RECORDED:
        config = load_recorded_config(path)
        assert config.run_id() == path.parent.name, path
        recorded = (yaml.safe_load(path.read_text()).get("data") or {}).get("stream")
        assert config.data.stream == (recorded or "streamed"), path
        streams.add(config.data.stream)
    assert streams == {"streamed", "packed"}


def test_a_record_without_a_stream_is_streamed_and_a_new_config_is_packed():
    base = {"model": {"preset": "tiny-aunet2"}, "train": {"max_steps": 5}}
    old = run_config_from_record({**base, "data": {"corpus": "tinyshakespeare"}})
    new = run_config_from_dict({**base, "data": {"corpus": "tinyshakespeare"}})
    assert old.data.stream == "streamed" and new.data.stream == "packed" and old.run_id() != new.run_id()
    # The packed stream has no shuffle buffer: its size does not rename a packed run (it does a streamed one).
    bigger = run_config_from_dict({**base, "data": {"corpus": "tinyshakespeare", "shuffle_buffer": 7}})
    assert bigger.run_id() == new.run_id()
    assert run_config_from_record({**base, "data": {"corpus": "tinyshakespeare", "shuffle_buffer": 7}}).run_id() \
        != old.run_id()


@pytest.mark.parametrize("data, stream", [({"corpus": "x"}, "streamed"),
                                          ({"corpus": "x", "stream": "packed"}, "packed")])
def test_the_sweep_table_says_which_stream_a_run_read(tmp_path, data, stream):
    planned = {"run_id": "r", "run_config": {"model": {"dims": [8], "layers": [1]}, "data": data}}
    assert row_for(planned, tmp_path)["stream"] == stream
