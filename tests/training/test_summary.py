"""The run record: every summary.json ever written loads, and keeps every value it was read with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aunet.errors import StateError
from aunet.training.summary import REQUIRED, RunSummary, load_summary, read_summary, write_summary

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "legacy-summary.json"
RECORDED = sorted((REPO / "results" / "runs").glob("*/summary.json"))


def test_the_legacy_summary_loads_and_round_trips():
    raw = json.loads(FIXTURE.read_text())
    summary = read_summary(FIXTURE)
    assert summary.val_bpb == raw["val_bpb"] and summary.stages == raw["stages"] and not summary.extra
    assert summary.to_dict() == raw
    assert not summary.missing()


@pytest.mark.skipif(not RECORDED, reason="no committed run records")
def test_every_committed_run_record_loads_and_round_trips():
    for path in RECORDED:
        raw = json.loads(path.read_text())
        summary = read_summary(path)
        out = summary.to_dict()
        assert {k: out[k] for k in raw} == raw, path  # every value kept; fields it predates take their default
        assert set(out) - set(raw) <= {"stages"}, path
        assert summary.run_id == path.parent.name and summary.bpb == raw["val_bpb"]


def test_older_and_newer_records_load(tmp_path):
    raw = json.loads(FIXTURE.read_text())
    older = {k: v for k, v in raw.items() if k != "stages"}  # written before per-stage records existed
    newer = {**raw, "a_future_field": [1, 2]}
    for name, record in (("older", older), ("newer", newer)):
        (tmp_path / name).write_text(json.dumps(record))
    assert read_summary(tmp_path / "older").stages == []
    loaded = read_summary(tmp_path / "newer")
    assert loaded.extra == {"a_future_field": [1, 2]} and loaded.to_dict() == newer


def test_the_writer_refuses_an_incomplete_record_and_the_readers_name_a_garbled_one(tmp_path):
    raw = json.loads(FIXTURE.read_text())
    for key in REQUIRED:
        with pytest.raises(ValueError, match=key):
            write_summary(tmp_path / "s.json", RunSummary.from_dict({**raw, key: None}))
    assert not (tmp_path / "s.json").exists()
    write_summary(tmp_path / "s.json", RunSummary.from_dict(raw))
    assert json.loads((tmp_path / "s.json").read_text()) == raw
    (tmp_path / "s.json").write_text('{"val_bpb": 1.')
    with pytest.raises(StateError, match="s.json"):
        read_summary(tmp_path / "s.json")
    assert load_summary(tmp_path / "s.json") is None and load_summary(tmp_path / "missing.json") is None
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(StateError, match="not a run summary"):
        read_summary(tmp_path / "list.json")
