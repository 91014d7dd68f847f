"""CUTE (Edman et al., EMNLP 2024) as local lm-eval tasks: character- and word-level text manipulation, generated
with greedy decoding and scored by exact match.

The data (``$AUNET_DATA_DIR/benchmarks/cute/<task>.jsonl``, fields ``task``, ``input1``, ``input2``, ``input3``,
``label``) holds 14 tasks and 7 ``_rand`` variants on random letter strings, 1,000 items each. lm-eval has no CUTE
task, so each becomes a generated ``generate_until`` task ``cute_<task>`` that uses lm-eval's stock machinery:
few-shot context, ``generate_until`` requests (greedy, the adapter's cascaded AU-Net decoding) and the stock
``exact_match`` metric, with no normalisation (case, spaces and punctuation all count).

Prompt format (ours, written from the benchmark's description: an instruction, then examples of the same task in a
question/answer form with the answer in quotes, then the question whose answer the model completes)::

    Spell out the word, with a space between its letters.

    Question: Spell out the word "the".
    Answer: "t h e"

    ...(4 examples in all)

    Question: Spell out the word "cow".
    Answer: "

The model's continuation is cut at the closing quote (or a newline) and compared with ``label``. No field of the
data contains a double quote, so the quote delimits every answer. The few-shot examples are the first rows of the
same task file, the evaluated item itself excluded (lm-eval's ``first_n`` sampler): fixed examples for every item,
as a benchmark prompt has. ``--num-fewshot`` changes their number (default 4).

Groups: ``cute`` (the 14 tasks, mean over items, so the mean of the tasks at equal sizes) made of ``cute_char``
(spell, spell_inverse, contains_char, orth, ins_char, del_char, sub_char, swap_char: the AU-Net paper's "char"
column) and ``cute_word`` (contains_word, sem, ins_word, del_word, sub_word, swap_word: its "word"
column); ``cute_rand`` (the 7 variants on random strings). Every group reports each of its tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from aunet.evaluation.errors import EvalError
from aunet.paths import data_dir

DATA_FOLDER = "benchmarks/cute"
DEFAULT_FEWSHOT = 4
# Generation budgets in the model's units (bytes for AU-Net; BPE tokens are never more): the longest label of the
# character tasks is 27 characters, of the word tasks 73, plus room for the closing quote.
MAX_GEN = {"char": 32, "word": 80}


@dataclass(frozen=True)
class CuteTask:
    """One CUTE task: its file stem, level (``char`` or ``word``), instruction and question (a Jinja template over
    the row's fields)."""

    stem: str
    level: str
    instruction: str
    question: str

    @property
    def name(self) -> str:
        return f"cute_{self.stem}"


_TASKS = [
    CuteTask("spell", "char", "Spell out the word, with a space between its letters.",
             'Spell out the word "{{input1}}".'),
    CuteTask("spell_inverse", "char", "Join the spelled-out letters into one word.",
             'Write "{{input1}}" as one word.'),
    CuteTask("contains_char", "char", "Say whether the word contains the letter: answer Yes or No.",
             'Does "{{input2}}" contain the letter "{{input1}}"?'),
    CuteTask("contains_word", "word", "Say whether the sentence contains the word: answer Yes or No.",
             'Does "{{input2}}" contain the word "{{input1}}"?'),
    CuteTask("orth", "char", "Of the two candidates, pick the word spelled more like the given word.",
             'Which is spelled more like "{{input1}}": "{{input2}}" or "{{input3}}"?'),
    CuteTask("sem", "word", "Of the two candidates, pick the word closer in meaning to the given word.",
             'Which is closer in meaning to "{{input1}}": "{{input2}}" or "{{input3}}"?'),
    CuteTask("ins_char", "char", "Insert the letter after every occurrence of the other letter.",
             'Add "{{input1}}" after every "{{input2}}" in "{{input3}}".'),
    CuteTask("ins_word", "word", "Insert the word after every occurrence of the other word in the sentence.",
             'Add the word "{{input1}}" after every "{{input2}}" in "{{input3}}".'),
    CuteTask("del_char", "char", "Delete every occurrence of the letter from the word.",
             'Delete every "{{input1}}" from "{{input2}}".'),
    CuteTask("del_word", "word", "Delete every occurrence of the word from the sentence.",
             'Delete every word "{{input1}}" from "{{input2}}".'),
    CuteTask("sub_char", "char", "Replace every occurrence of the first letter with the second.",
             'Replace every "{{input1}}" with "{{input2}}" in "{{input3}}".'),
    CuteTask("sub_word", "word", "Replace every occurrence of the first word with the second.",
             'Replace every word "{{input1}}" with "{{input2}}" in "{{input3}}".'),
    CuteTask("swap_char", "char", "Swap the positions of the two letters in the word.",
             'Swap "{{input1}}" and "{{input2}}" in "{{input3}}".'),
    CuteTask("swap_word", "word", "Swap the positions of the two words in the sentence.",
             'Swap the words "{{input1}}" and "{{input2}}" in "{{input3}}".'),
]
_RANDOM_VARIANTS = ("spell", "spell_inverse", "contains_char", "ins_char", "del_char", "sub_char", "swap_char")
_BY_STEM = {t.stem: t for t in _TASKS}
TASKS: dict[str, CuteTask] = {t.name: t for t in _TASKS}
TASKS.update({f"cute_{stem}_rand": CuteTask(f"{stem}_rand", "char", _BY_STEM[stem].instruction,
                                            _BY_STEM[stem].question) for stem in _RANDOM_VARIANTS})
GROUPS: dict[str, list[str]] = {
    "cute_char": [t.name for t in _TASKS if t.level == "char"],
    "cute_word": [t.name for t in _TASKS if t.level == "word"],
    "cute_rand": [f"cute_{stem}_rand" for stem in _RANDOM_VARIANTS],
}
GROUPS["cute"] = ["cute_char", "cute_word"]


def is_cute(name: str) -> bool:
    """A CUTE task or group name."""
    return name in TASKS or name in GROUPS


def members(name: str) -> list[str]:
    """Every task and subgroup below ``name`` (empty for a task): the names whose scores are flattened with it."""
    out: list[str] = []
    for child in GROUPS.get(name, []):
        out += [child, *members(child)]
    return out


def task_config(task: CuteTask, data_file: Path, hf_cache: str) -> dict[str, Any]:
    """The lm-eval YAML of one task (a plain mapping; see the module docstring for the prompt)."""
    return {
        "task": task.name, "dataset_path": "json", "dataset_name": None,
        "dataset_kwargs": {"data_files": {"test": str(data_file)}, "cache_dir": hf_cache}, "test_split": "test",
        "fewshot_split": "test",  # the item itself is excluded from its examples
        "fewshot_config": {"sampler": "first_n"}, "num_fewshot": DEFAULT_FEWSHOT, "output_type": "generate_until",
        "description": task.instruction + "\n\n", "doc_to_text": "Question: " + task.question + '\nAnswer: "',
        "doc_to_target": "{{label}}", "target_delimiter": "",
        "fewshot_delimiter": '"\n\n',  # closes each example's quoted answer
        "generation_kwargs": {"until": ['"', "\n"], "max_gen_toks": MAX_GEN[task.level], "do_sample": False,
                              "temperature": 0.0},
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
                         "ignore_case": False, "ignore_punctuation": False}],
        "metadata": {"version": 1},
    }


def group_config(name: str) -> dict[str, Any]:
    """The lm-eval YAML of group ``name``: its tasks or subgroups and their exact-match aggregate."""
    return {
        "group": name, "task": list(GROUPS[name]),
        # Weighted by items, so "cute" is the mean over all its items (over tasks when --limit makes sizes equal).
        "aggregate_metric_list": [{"metric": "exact_match", "aggregation": "mean", "weight_by_size": True}],
        "metadata": {"version": 1},
    }


def write_cute_tasks(folder: Path, names: list[str], hf_cache: str) -> None:
    """Write the YAML files of the CUTE ``names`` (tasks or groups) and everything below them into ``folder``."""

    wanted = {n for name in names for n in (name, *members(name))}
    for name in sorted(wanted):
        if name in GROUPS:
            path = folder / f"group_{name}.yaml"
            path.write_text(yaml.safe_dump(group_config(name), sort_keys=False), encoding="utf-8")
            continue
        task = TASKS[name]
        data_file = data_dir() / DATA_FOLDER / f"{task.stem}.jsonl"  # type: ignore[operator]
        if not data_file.is_file():
            raise EvalError(f"{data_file}: CUTE file missing from the data directory (AUNET_DATA_DIR)")
        path = folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump(task_config(task, data_file, hf_cache), sort_keys=False,
                                       allow_unicode=True), encoding="utf-8")
