"""`aunet eval` and `aunet generate` on tiny trained checkpoints: files written, scores merged, one-line errors."""

from __future__ import annotations

import json

import pytest

from aunet.cli import main
from aunet.evaluation.checkpoint import load_checkpoint
from aunet.splitting import compute_levels


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_eval_all_four_tasks_then_bpb_merges_scores(aunet_run_dir, capsys, tmp_path):
    code, out, err = run_cli(capsys, "eval", str(aunet_run_dir / "checkpoints" / "final.ckpt"), "--limit", "2",
                             "--threads", "1")
    assert code == 0, err
    eval_dir = aunet_run_dir / "eval"
    scores = json.loads((eval_dir / "scores.json").read_text())
    for task in ("hellaswag", "arc_easy", "arc_challenge"):
        for metric in ("acc", "acc_norm", "acc_bytes"):
            assert 0.0 <= scores[f"{task}.{metric}"] <= 1.0
    assert 0.0 <= scores["mmlu.acc"] <= 1.0 and not any(k.startswith("mmlu_") for k in scores)
    results = list(eval_dir.glob("lm_eval-*.json"))
    assert len(results) == 1 and "mmlu_anatomy" in json.loads(results[0].read_text())["results"]
    provenance = json.loads((eval_dir / "scores_provenance.json").read_text())
    assert provenance["hellaswag.acc"]["limit"] == 2 and "hellaswag.acc_norm" in out

    text = tmp_path / "held_out.jsonl"
    text.write_text('{"text": "To be, or not to be."}\n{"text": "Words, words, words."}\n', encoding="utf-8")
    code, out, err = run_cli(capsys, "eval", str(aunet_run_dir), "--bpb", str(text), "--threads", "1")
    assert code == 0, err
    merged = json.loads((eval_dir / "scores.json").read_text())
    assert merged["bpb.held_out"] > 0 and merged["hellaswag.acc"] == scores["hellaswag.acc"]
    assert len(list(eval_dir.glob("lm_eval-*.json"))) == 1  # bits per byte alone does not run lm-eval


def test_generate_streams_text_and_matches_uncached(bpe_run_dir, aunet_run_dir, capsys):
    for run in (aunet_run_dir, bpe_run_dir):
        code, cached, err = run_cli(capsys, "generate", str(run), "--prompt", "KING:", "--max-bytes", "24",
                                    "--threads", "1")
        assert code == 0 and cached.startswith("KING:") and "stop:" in err
        code, full, _ = run_cli(capsys, "generate", str(run), "--prompt", "KING:", "--max-bytes", "24",
                                "--no-cache", "--threads", "1")
        assert code == 0 and full == cached


def test_generate_shows_where_chunks_start(aunet_run_dir, capsys):
    """--show-chunks prints prompt and output again with a mark before each pooled segment (AU-Net: its rule)."""
    code, out, _ = run_cli(capsys, "generate", str(aunet_run_dir), "--prompt", "KING: Speak, and", "--max-bytes",
                           "12", "--threads", "1", "--show-chunks")
    assert code == 0
    prompt = b"KING: Speak, and"
    levels = compute_levels(prompt, load_checkpoint(aunet_run_dir).config.splits)
    marks = ["", "|", "\u2016", "\u2980"]
    expected = "".join(marks[level] + chr(byte) for byte, level in zip(prompt, levels))
    assert sum(expected.count(m) for m in marks[1:]) >= 4 and f"\n{expected}" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["eval", "/no/such/run"], "no such run folder or checkpoint file"),
        (["eval", "{run}", "--tasks", "not_a_task"], "has no local data"),
        (["eval", "{run}", "--task-data", "arc_easy"], "expected TASK=PATH"),
        (["generate", "{run}", "--prompt", "x", "--max-bytes", "0"], "--max-bytes must be a positive integer"),
        (["eval", "{run}", "--limit", "0"], "--limit must be a positive integer"),
    ],
)
def test_user_errors_are_one_line_with_exit_2(aunet_run_dir, capsys, args, message):
    code, out, err = run_cli(capsys, *[a.format(run=aunet_run_dir) for a in args])
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("error: ") and message in err


def test_sweep_evaluations_draw_no_progress_bars(aunet_loaded, capsys):
    from aunet.evaluation.evaluate import run_tasks

    quiet = run_tasks(aunet_loaded, ["arc_easy"], limit=3, progress=False)
    err = capsys.readouterr().err
    assert "%|" not in err and "scoring" not in err  # neither lm-eval's request bars nor our scoring bar
    shown = run_tasks(aunet_loaded, ["arc_easy"], limit=3, progress=True)
    err = capsys.readouterr().err
    assert "scoring" in err and "%|" in err
    assert quiet["results"]["arc_easy"]["acc,none"] == shown["results"]["arc_easy"]["acc,none"]
    import lm_eval.api.task as task_module
    from tqdm import tqdm

    assert task_module.tqdm is tqdm  # restored after the quiet call
