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


@pytest.mark.parametrize("change, problem", [
    (lambda raw: {}, "no run_id"),
    (lambda raw: {**raw, "val_bpb": "1.2"}, "val_bpb is '1.2', expected a number"),
    (lambda raw: {**raw, "val_bpb": float("nan")}, "val_bpb is nan, expected a finite number"),
    (lambda raw: {**raw, "val_bpb": -0.5}, "val_bpb is -0.5, expected a number above 0"),
    (lambda raw: {**raw, "steps": 2.5}, "steps is 2.5, expected an integer"),
    (lambda raw: {**raw, "params": True}, "params is True, expected an integer"),
    (lambda raw: {k: v for k, v in raw.items() if k != "val_loss"}, "no val_loss"),
    (lambda raw: {**raw, "config_fingerprint": "abc"}, "config_fingerprint is 'abc', expected a sha256 digest"),
    (lambda raw: {**raw, "status": "diverged"}, "status is 'diverged', expected 'finished'"),
])
def test_a_record_that_cannot_be_a_finished_runs_is_refused_naming_the_file(tmp_path, change, problem):
    """A summary.json of {}, or with val_bpb a string, NaN or negative, was read as a finished run (and tabled):
    now every reader gets a StateError naming the file and the field; the table shows the run as failed."""
    raw = json.loads(FIXTURE.read_text())
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(change(raw)))  # json writes NaN as the bare token NaN, which Python reads back
    with pytest.raises(StateError, match="summary.json: not a usable run record") as err:
        read_summary(path)
    assert problem in str(err.value)
    assert load_summary(path) is None
    read_summary(path, check=False)  # what a reader that needs no result may still take (analysis/reference)


def test_the_writer_refuses_a_value_no_finished_run_has(tmp_path):
    raw = json.loads(FIXTURE.read_text())
    with pytest.raises(ValueError, match="val_bpb is nan"):
        write_summary(tmp_path / "s.json", RunSummary.from_dict({**raw, "val_bpb": float("nan")}))
    assert not (tmp_path / "s.json").exists()
