"""Bad evaluation input: task files of the wrong schema and checkpoints that are not this run's kind end with one line
naming the file, exit code 2, and nothing written into the run folder. See docs/reliability.md."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from aunet.cli import main
from aunet.evaluation.errors import EvalError
from aunet.evaluation.tasks import build_local_tasks
from tests.training.helpers import TINY_BPE

GOOD_ARC = {"id": "q1", "question": "Which is a liquid?", "choices": {"text": ["ice", "water"], "label": ["A", "B"]},
            "answerKey": "B"}


def write_rows(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "task, rows, message",
    [
        ("arc_easy", [{"q": "Which is a liquid?", "answer": 1}], ": not usable as the data of task 'arc_easy' "
                                                                   "(missing field 'question'); give rows with"),
        ("arc_easy", [{k: v for k, v in GOOD_ARC.items() if k != "answerKey"}], "(missing field 'answerKey')"),
        ("hellaswag", [{"ctx": "A man sits", "endings": ["a", "b"], "label": "0"}],
         "task 'hellaswag' (missing field 'ctx_a')"),
        ("piqa", [{"question": "To open a jar,", "sol1": "twist", "sol2": "freeze", "label": 0}],
         "task 'piqa' (missing field 'goal')"),
        ("arc_easy", [GOOD_ARC, '{"question": "cut'], ":2: not valid JSON"),
    ],
    ids=["arc-no-question", "arc-no-answer", "hellaswag-no-ctx_a", "piqa-no-goal", "not-json"],
)
def test_a_task_file_of_the_wrong_schema_is_one_line(aunet_run_dir, tmp_path, capsys, task, rows, message):
    run_dir = tmp_path / "run"
    shutil.copytree(aunet_run_dir, run_dir)
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    path = write_rows(tmp_path / f"{task}.jsonl", rows)
    code = main(["eval", str(run_dir), "--tasks", task, "--task-data", f"{task}={path}", "--limit", "2"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith(f"error: {path}:") and message in err, err
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before  # nothing written


def test_a_task_file_of_the_right_schema_passes_the_check(tmp_path, data_dir):
    path = write_rows(tmp_path / "arc.jsonl", [GOOD_ARC, {**GOOD_ARC, "id": "q2", "answerKey": "A"}])
    with build_local_tasks(["arc_easy"], {"arc_easy": path}) as local:
        assert local.names == ["arc_easy"] and (local.folder / "arc_easy.yaml").is_file()
    with pytest.raises(EvalError, match="no rows for task 'arc_easy'|not usable"):
        build_local_tasks(["arc_easy"], {"arc_easy": write_rows(tmp_path / "empty.jsonl", [])})


def _checkpoint_with(run_dir: Path, tmp_path: Path, change) -> Path:
    ckpt = torch.load(run_dir / "checkpoints" / "final.ckpt", weights_only=True)
    path = tmp_path / "other.ckpt"
    torch.save(change(ckpt), path)
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: {**c, "hyper_parameters": {**c["hyper_parameters"], "model": dict(TINY_BPE)}},
         "weights do not fit the model config"),
        (lambda c: c["state_dict"], "no model config in hyper_parameters; not an aunet training checkpoint"),
        (lambda c: {"state_dict": c["state_dict"], "hyper_parameters": {"model": {"family": "gpt2"}}},
         "stored model config is invalid"),
    ],
    ids=["bpe-config-aunet-weights", "bare-state-dict", "unknown-family"],
)
def test_a_checkpoint_of_another_kind_given_to_eval_is_one_line(aunet_run_dir, tmp_path, capsys, change, message):
    path = _checkpoint_with(aunet_run_dir, tmp_path, change)
    code = main(["eval", str(path), "--bpb", str(path)])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith(f"error: {path}: ") and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.ckpt"]  # no eval/ folder next to it


def test_garbled_scores_file_is_named_before_evaluating(tmp_path):
    from aunet.errors import UserError
    from aunet.evaluation.evaluate import read_scores

    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "scores.json").write_text('{"hellaswag.acc": 0.2')  # truncated mid-write by hand
    with pytest.raises(UserError, match=r"scores\.json: unreadable"):
        read_scores(tmp_path)
    (tmp_path / "eval" / "scores.json").write_text("[1, 2]")
    with pytest.raises(UserError, match=r"expected a JSON object"):
        read_scores(tmp_path)
