"""Odd but legal input trains; bad input to `aunet train` ends with one line naming the problem and the fix, exit
code 2, and nothing written (no run folder). See docs/reliability.md."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aunet.cli import main
from aunet.data.pipeline import DataPipeline
from aunet.training.run import train
from tests.training.helpers import tiny_run

SENTENCE = "The old ferryman counted 1,024 coins — «très bien», said Ελένη; 東京へ行きます. Ünïcödé\u200b! "


def test_a_single_50_mb_line_of_mixed_scripts_trains(tmp_path, data_dir):
    """One jsonl row of 50 MB: a single line, and a corpus of one huge document (validation = its tail)."""
    text = SENTENCE * (50_000_000 // len(SENTENCE.encode()) + 1)
    path = tmp_path / "huge.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        handle.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
    assert path.stat().st_size > 50_000_000 and path.read_bytes().count(b"\n") == 1
    run = tiny_run(tmp_path, data={"corpus": str(path), "split": "tail", "val_fraction": 0.001, "val_bytes": 1024},
                   train={"max_steps": 2, "val_every_steps": 2})
    summary = train(run)
    assert summary.steps == 2 and 0 < summary.val_bpb < 10 and summary.val_text_bytes == 1024


def test_a_single_text_file_is_a_corpus(tmp_path, english_text, capsys, monkeypatch):
    """`aunet train PRESET --data input.txt`, the first thing a user tries: the file's tail is the validation split
    (said in one line), and the run records a validation bits per byte."""
    (tmp_path / "input.txt").write_bytes(english_text)
    monkeypatch.chdir(tmp_path)
    settings = ["train.budget_flops=null", "train.max_steps=2", "train.batch_size=2", "data.val_bytes=4096",
                "data.num_workers=0", f"train.results_dir={tmp_path / 'runs'}"]
    code = main(["train", "tiny-aunet2", "--data", "input.txt", "--accelerator", "cpu", "--no-progress",
                 *(arg for setting in settings for arg in ("--set", setting))])
    out, err = capsys.readouterr()
    assert code == 0, err
    notes = [line for line in err.splitlines() if "validation split" in line]
    assert len(notes) == 1 and notes[0].startswith("input.txt: one document, so its last 5% of bytes")
    (run_dir,) = (tmp_path / "runs").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert 0 < summary["val_bpb"] < 9 and summary["val_text_bytes"] == 4096
    assert f"val_bpb {summary['val_bpb']:.4f}" in out
    # Recorded: the data fingerprint holds the split chosen, the same data as asking for it.
    assert summary["data"]["split"]["method"] == "tail"
    explicit = tiny_run(tmp_path, data={"corpus": "input.txt", "split": "tail"})
    assert DataPipeline(explicit.data, explicit.model, seed=0).fingerprint()["sha256"] == summary["data_fingerprint"]


def run_cli(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().err


def write_config(tmp_path: Path, **sections) -> Path:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(json.dumps(tiny_run(tmp_path, **sections).to_dict()))
    return cfg


def _parquet_cut_in_half(path: Path) -> None:
    pq.write_table(pa.table({"text": ["some text " * 50] * 40}), path, row_group_size=4)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


BAD_CORPORA = {
    # name: (what to create, corpus relative to tmp_path, text that must appear after the file name)
    "missing path": (lambda d: None, "nowhere/corpus.txt", ": no such file or directory"),
    "no match": (lambda d: None, "nowhere/*.jsonl", ": no file matches this pattern"),
    "empty file": (lambda d: (d / "empty.txt").write_bytes(b""), "empty.txt", ": corpus is empty"),
    "empty folder": (lambda d: (d / "folder").mkdir(), "folder", ": no .txt, .jsonl, .jsonl.gz, .parquet file"),
    "jsonl wrong field": (lambda d: (d / "rows.jsonl").write_text('{"text": "fine"}\n{"body": "x"}\n'),
                          "rows.jsonl", ":2: no string field 'text'; set data.text_field"),
    "jsonl field of wrong type": (lambda d: (d / "rows.jsonl").write_text('{"text": ["a list"]}\n'),
                                  "rows.jsonl", ":1: no string field 'text'"),
    "jsonl not json": (lambda d: (d / "rows.jsonl").write_text('{"text": "cut\n'), "rows.jsonl", ":1: not valid JSON"),
    "truncated parquet": (lambda d: _parquet_cut_in_half(d / "t.parquet"), "t.parquet",
                          ": not a readable parquet file"),
    "unsupported file": (lambda d: (d / "notes.docx").write_bytes(b"PK"), "notes.docx", ": unsupported file type"),
    "one document, hash split": (lambda d: (d / "one").mkdir() or (d / "one" / "book.txt").write_text(SENTENCE * 50),
                                 "one", ": no validation document; raise data.val_fraction, list "
                                        "data.val_documents, or use data.split: tail"),
}


@pytest.mark.parametrize("case", list(BAD_CORPORA))
def test_bad_corpora_fail_with_one_line_and_nothing_written(tmp_path, data_dir, capsys, case):
    create, corpus, expected = BAD_CORPORA[case]
    data = tmp_path / "data"
    data.mkdir()
    create(data)
    # One document gets a tail split by default: the hash split's empty side is refused when asked for.
    split = {"split": "hash"} if case == "one document, hash split" else {"split": "tail"}
    cfg = write_config(tmp_path, data={"corpus": str(data / corpus), **split})
    code, err = run_cli(capsys, "train", str(cfg))
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: "), err
    named = data / corpus.split("/")[0] if case in ("missing path", "no match", "one document, hash split") else \
        data / corpus
    assert str(named) in err and expected in err, err
    assert not (tmp_path / "runs").exists()  # no run folder: nothing written half-way


BAD_CONFIGS = {
    # name: (YAML text, the dotted key or file in the message, the rest of the message)
    "unknown section": ("model: {preset: tiny-aunet1}\ntrian: {max_steps: 2}\n", "trian",
                        "unknown section; did you mean 'train'?"),
    "unknown key": ("model: {preset: tiny-aunet1}\ntrainer: {devcies: 2}\ntrain: {max_steps: 2}\n",
                    "trainer.devcies", "unknown key; did you mean 'devices'?"),
    "wrong type": ("model: {preset: tiny-aunet1}\ntrain: {max_steps: 2, lr: fast}\n", "train.lr",
                   "expected a number, got 'fast'"),
    "wrong type of section": ("model: {preset: tiny-aunet1}\ndata: [a, b]\ntrain: {max_steps: 2}\n", "data",
                              "expected a mapping"),
    "impossible size": ("model: {preset: tiny-aunet2, caps: [64, 128]}\ntrain: {max_steps: 2}\n", "model.caps[1]",
                        "exceeds caps[0]"),
    "impossible batch": ("model: {preset: tiny-aunet1}\ntrain: {max_steps: 2, batch_size: 6, accumulate: 4}\n",
                         "train.batch_size", "not divisible by train.accumulate=4"),
    "budget below one step": ("model: {preset: tiny-aunet1}\ntrain: {budget_flops: 10}\n", "train.budget_flops",
                              "less than one step"),
    "both budget and steps": ("model: {preset: tiny-aunet1}\ntrain: {budget_flops: 1e12, max_steps: 3}\n",
                              "train.budget_flops", "set exactly one"),
    "name with ..": ("name: ../x\nmodel: {preset: tiny-aunet1}\ntrain: {max_steps: 2}\n", "name",
                     "'../x' cannot name a run folder"),
    "name with /": ("name: a/b\nmodel: {preset: tiny-aunet1}\ntrain: {max_steps: 2}\n", "name",
                    "'a/b' cannot name a run folder"),
    "python tag": ("name: !!python/object/apply:os.system ['touch PWNED']\nmodel: {preset: tiny-aunet1}\n", "",
                   "not valid YAML"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_configs_fail_with_one_line_naming_the_key(tmp_path, capsys, monkeypatch, case):
    monkeypatch.chdir(tmp_path)  # results/runs would land here
    text, key, message = BAD_CONFIGS[case]
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    code, err = run_cli(capsys, "train", str(cfg))
    assert code == 2 and err.count("\n") == 1, err
    where = f"error: {cfg}: {key}: " if key and case != "budget below one step" else "error: "
    assert err.startswith(where) and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]  # no results folder, no PWNED file


@pytest.mark.parametrize(
    "override, message",
    [("train.lr=[1, 2", "train.lr: cannot parse value"), ("train.lr", "--set: expected key=value"),
     ("train.lr=!!python/object/apply:os.system [touch PWNED]", "train.lr: cannot parse value"),
     ("model.dims.x=1", "'dims' is not a section"), ("name=../../etc", "cannot name a run folder")],
)
def test_bad_overrides_fail_with_one_line(tmp_path, capsys, monkeypatch, override, message):
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(capsys, "train", "tiny-aunet1", "--set", override)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert list(tmp_path.iterdir()) == []


def test_a_run_dir_outside_the_results_folder_is_still_allowed(tmp_path, data_dir):
    """`--run-dir` is an explicit path (a name is not): the run trains there, and the name stays checked."""
    run = tiny_run(tmp_path, train={"max_steps": 2, "val_every_steps": 2}, data={"val_bytes": 100})
    summary = train(run, run_dir=tmp_path / "elsewhere" / "my-run")
    assert summary.run_id == "my-run" and (tmp_path / "elsewhere" / "my-run" / "summary.json").is_file()
    assert not (tmp_path / "runs").exists()
