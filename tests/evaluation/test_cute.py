"""CUTE as local lm-eval generation tasks: the prompt of hand-checked items, exact-match scoring by hand, groups and
per-subtask reporting, and greedy generation through the adapter."""

from __future__ import annotations

import json
from pathlib import Path

import lm_eval
import pytest
from lm_eval.api.model import LM

from aunet.cli import main
from aunet.evaluation.cute import GROUPS, TASKS, members
from aunet.evaluation.lm import AUNetLM
from aunet.evaluation.tasks import build_local_tasks

# Item 0 of spell.jsonl ("the"), with the first rows of the file but itself as the 4 examples; written by hand.
SPELL_THE = (
    "Spell out the word, with a space between its letters.\n\n"
    'Question: Spell out the word "and".\nAnswer: "a n d"\n\n'
    'Question: Spell out the word "for".\nAnswer: "f o r"\n\n'
    'Question: Spell out the word "that".\nAnswer: "t h a t"\n\n'
    'Question: Spell out the word "this".\nAnswer: "t h i s"\n\n'
    'Question: Spell out the word "the".\nAnswer: "'
)
# Item 1 of swap_word.jsonl, one example (item 0).
SWAP_WORD_1 = (
    "Swap the positions of the two words in the sentence.\n\n"
    'Question: Swap the words "octopus" and "smiled" in "The octopus smiled.".\n'
    'Answer: "The smiled octopus."\n\n'
    'Question: Swap the words "When" and "on" in "When she finished, she hung the collage on the wall.".\n'
    'Answer: "'
)


class ScriptedLM(LM):
    """Answers generation requests with ``answer(context)`` and records every request."""

    def __init__(self, answer) -> None:
        super().__init__()
        self.answer = answer
        self.requests: list[tuple[str, dict]] = []

    def loglikelihood(self, requests, disable_tqdm=False):  # pragma: no cover - CUTE only generates
        raise AssertionError("CUTE tasks must not ask for log-likelihoods")

    loglikelihood_rolling = loglikelihood

    def generate_until(self, requests, disable_tqdm=False):
        out = []
        for r in requests:
            context, kwargs = r.args
            self.requests.append((context, kwargs))
            out.append(self.answer(context))
        return out


def rows(data_dir: Path, stem: str, n: int) -> list[dict]:
    with (data_dir / "benchmarks" / "cute" / f"{stem}.jsonl").open(encoding="utf-8") as handle:
        return [json.loads(line) for _, line in zip(range(n), handle)]


def evaluate(lm, tasks, limit, **kwargs):
    with build_local_tasks(tasks) as local:
        return lm_eval.simple_evaluate(model=lm, tasks=local.names, task_manager=local.task_manager(),
                                       limit=limit, bootstrap_iters=0, **kwargs)


def query_of(context: str) -> str:
    """The question being asked: the last "Question:" line of a prompt."""
    return context.rsplit("Question: ", 1)[1].split("\n", 1)[0]


def test_prompts_and_exact_match_of_hand_checked_items(data_dir):
    spell, swap = rows(data_dir, "spell", 3), rows(data_dir, "swap_word", 3)
    gold = {f'Spell out the word "{r["input1"]}".': r["label"] for r in spell}
    gold.update({f'Swap the words "{r["input1"]}" and "{r["input2"]}" in "{r["input3"]}".': r["label"]
                 for r in swap})
    # Right on spell items 0 and 2; item 1 in upper case; swap answers with a trailing space: exact match counts
    # every character, so only the two spell answers score.
    answers = {spell[1]["label"]: spell[1]["label"].upper()}
    answers.update({r["label"]: r["label"] + " " for r in swap})

    def answer(context):
        label = gold[query_of(context)]
        return answers.get(label, label)

    lm = ScriptedLM(answer)
    result = evaluate(lm, ["cute_spell"], 3)
    assert result["results"]["cute_spell"]["exact_match,none"] == pytest.approx(2 / 3)
    contexts = [c for c, _ in lm.requests]
    assert SPELL_THE in contexts
    assert all(kw["until"] == ['"', "\n"] and kw["max_gen_toks"] == 32 and not kw["do_sample"]
               for _, kw in lm.requests)

    lm = ScriptedLM(answer)
    result = evaluate(lm, ["cute_swap_word"], 3, num_fewshot=1)
    assert result["results"]["cute_swap_word"]["exact_match,none"] == 0.0
    assert SWAP_WORD_1 in [c for c, _ in lm.requests]
    assert {kw["max_gen_toks"] for _, kw in lm.requests} == {80}


def gold_by_question(data_dir: Path, n: int) -> dict[tuple[str, str], tuple[str, str]]:
    """``(instruction, question) -> (task name, label)`` for the first ``n`` rows of every CUTE task."""
    import jinja2

    out = {}
    for name, task in TASKS.items():
        for r in rows(data_dir, task.stem, n):
            out[(task.instruction, jinja2.Template(task.question).render(**r))] = (name, r["label"])
    return out


def test_group_reports_each_subtask_and_the_char_word_averages(data_dir):
    """Right on every character-level item, wrong on every word-level one: cute_char 1, cute_word 0, cute 8/14."""
    gold = gold_by_question(data_dir, 2)

    def scripted(context):
        name, label = gold[(context.split("\n\n", 1)[0], query_of(context))]
        return label if TASKS[name].level == "char" else label + "!"

    result = evaluate(ScriptedLM(scripted), ["cute"], 2)["results"]
    subtasks = [n for n in members("cute") if n in TASKS]
    assert len(subtasks) == 14 and all(n in result for n in subtasks)
    for name in subtasks:
        assert result[name]["exact_match,none"] == (1.0 if TASKS[name].level == "char" else 0.0), name
    assert result["cute_char"]["exact_match,none"] == 1.0 and result["cute_word"]["exact_match,none"] == 0.0
    assert result["cute"]["exact_match,none"] == pytest.approx(8 / 14)
    assert set(GROUPS["cute_rand"]) == {f"cute_{s}_rand" for s in ("spell", "spell_inverse", "contains_char",
                                                                     "ins_char", "del_char", "sub_char", "swap_char")}


def test_generation_through_the_adapter_is_scored_by_hand(aunet_loaded, data_dir):
    """Greedy cascaded generation of a tiny AU-Net, cut at the closing quote, compared with the label by hand."""
    from aunet.evaluation.generation import generate

    result = evaluate(AUNetLM(loaded=aunet_loaded), ["cute_contains_char", "cute_spell_rand"], 3, num_fewshot=1,
                      log_samples=True)
    for task in ("cute_contains_char", "cute_spell_rand"):
        samples = result["samples"][task]
        assert len(samples) == 3
        hits = []
        for sample in samples:
            context, kwargs = sample["arguments"][0]
            text = generate(aunet_loaded, context, max_new_units=kwargs["max_gen_toks"], until=kwargs["until"]).text
            assert sample["resps"][0][0] == text and '"' not in text and "\n" not in text
            hits.append(float(text == sample["target"]))
            assert sample["exact_match"] == hits[-1]
        assert result["results"][task]["exact_match,none"] == pytest.approx(sum(hits) / 3)


def test_cli_reports_every_subtask_of_a_group(aunet_run_dir, capsys, tmp_path):
    code = main(["eval", str(aunet_run_dir), "--tasks", "cute_word", "--limit", "1", "--num-fewshot", "1",
                 "--threads", "1", "--output-dir", str(tmp_path)])
    out = capsys.readouterr()
    assert code == 0, out.err
    scores = json.loads((tmp_path / "scores.json").read_text())
    expected = {"cute_word", *GROUPS["cute_word"]}
    assert {k.split(".")[0] for k in scores if k.endswith(".exact_match")} == expected
    assert "cute_swap_word.exact_match" in out.out


def test_cute_needs_no_task_data(tmp_path):
    from aunet.evaluation.errors import EvalError

    with pytest.raises(EvalError, match="CUTE tasks read"):
        build_local_tasks(["cute_spell"], {"cute_spell": tmp_path / "x.jsonl"})
