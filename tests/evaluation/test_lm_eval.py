"""Through lm-eval: stock task logic on local files gives the accuracies computed by hand; the `aunet` model name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lm_eval
import numpy as np
import pytest

from aunet.evaluation.lm import AUNetLM
from aunet.evaluation.tasks import build_local_tasks
from tests.evaluation.test_scoring import unigram_loaded

LIMIT = 20


def evaluate(lm, tasks, limit, **kwargs):
    with build_local_tasks(tasks) as local:
        folder = local.folder
        result = lm_eval.simple_evaluate(model=lm, tasks=local.names, task_manager=local.task_manager(),
                                         limit=limit, bootstrap_iters=0, **kwargs)
    assert not folder.exists()  # generated task files are temporary
    return result


def read_jsonl(path: Path, n: int) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for _, line in zip(range(n), handle)]


def hand_accuracy(lls: list[np.ndarray], choices: list[list[str]], gold: list[int]) -> dict[str, float]:
    """acc: argmax of the summed log-likelihood; acc_norm: divided by characters; acc_bytes: by UTF-8 bytes."""
    acc = [int(np.argmax(ll)) == g for ll, g in zip(lls, gold)]
    norm = [int(np.argmax(ll / np.array([len(c) for c in cs]))) == g for ll, cs, g in zip(lls, choices, gold)]
    by_bytes = [int(np.argmax(ll / np.array([len(c.encode()) for c in cs]))) == g
                for ll, cs, g in zip(lls, choices, gold)]
    return {"acc": float(np.mean(acc)), "acc_norm": float(np.mean(norm)), "acc_bytes": float(np.mean(by_bytes))}


def test_known_likelihoods_give_hand_computed_accuracies(data_dir):
    """A context-free byte model: each choice scores sum(log p(b)) over the bytes of " " + choice, exactly."""
    from lm_eval.tasks.hellaswag.utils import preprocess  # the stock preprocessing, applied by hand

    loaded = unigram_loaded()
    logp = loaded.model.table.log_softmax(0).numpy()

    def ll(cont: str) -> float:
        return float(sum(logp[b] for b in cont.encode()))

    result = evaluate(AUNetLM(loaded=loaded, batch_size=7), ["hellaswag", "arc_easy"], LIMIT)
    expected = {}
    docs = read_jsonl(data_dir / "benchmarks" / "hellaswag" / "validation.jsonl", LIMIT)
    choices = [[preprocess(e) for e in d["endings"]] for d in docs]
    expected["hellaswag"] = hand_accuracy([np.array([ll(" " + c) for c in cs]) for cs in choices], choices,
                                          [int(d["label"]) for d in docs])
    docs = read_jsonl(data_dir / "benchmarks" / "arc_easy" / "test.jsonl", LIMIT)
    choices = [d["choices"]["text"] for d in docs]
    expected["arc_easy"] = hand_accuracy([np.array([ll(" " + c) for c in cs]) for cs in choices], choices,
                                         [d["choices"]["label"].index(d["answerKey"]) for d in docs])
    for task, metrics in expected.items():
        got = result["results"][task]
        assert got["sample_len"] == LIMIT
        for metric, value in metrics.items():
            assert got[f"{metric},none"] == pytest.approx(value, abs=1e-12), (task, metric)
    # The check has teeth: the normalisations disagree with acc on this data.
    assert any(m["acc"] != m["acc_norm"] for m in expected.values())


def test_mmlu_subjects_and_group_aggregation(data_dir):
    """Every subject task sees only its own rows; the group score is lm-eval's size-weighted mean."""
    loaded = unigram_loaded()
    logp = loaded.model.table.log_softmax(0).numpy()
    letter = int(np.argmax([logp[ord(" ")] + logp[ord(c)] for c in "ABCD"]))  # the unigram always answers this
    result = evaluate(AUNetLM(loaded=loaded, batch_size=64), ["mmlu"], 3, log_samples=True)
    rows: dict[str, list[dict]] = {}
    with (data_dir / "benchmarks" / "mmlu" / "test.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            doc = json.loads(line)
            rows.setdefault(doc["subject"], []).append(doc)
    subjects = [k for k in result["results"] if k.startswith("mmlu_") and k not in
                ("mmlu_stem", "mmlu_other", "mmlu_social_sciences", "mmlu_humanities")]
    assert len(subjects) == 57
    total = 0.0
    for task in subjects:
        subject = task[len("mmlu_"):]
        first = rows[subject][:3]
        assert [s["doc"]["question"] for s in result["samples"][task]] == [d["question"] for d in first]
        expected = np.mean([d["answer"] == letter for d in first])
        assert result["results"][task]["acc,none"] == pytest.approx(expected)
        total += expected * 3
    assert result["results"]["mmlu"]["acc,none"] == pytest.approx(total / (57 * 3))


def test_model_name_aunet_through_lm_eval(aunet_run_dir, data_dir):
    """`simple_evaluate(model="aunet", model_args="checkpoint=...")` as the lm_eval CLI calls it."""
    from aunet.evaluation.plugin import register

    register()
    with build_local_tasks(["arc_easy"]) as local:
        result = lm_eval.simple_evaluate(model="aunet", model_args=f"checkpoint={aunet_run_dir},batch_size=4",
                                         tasks=local.names, task_manager=local.task_manager(), limit=3,
                                         bootstrap_iters=0)
    assert result["results"]["arc_easy"]["sample_len"] == 3
    assert result["config"]["aunet_family"] == "aunet"


def test_installed_hook_registers_the_model_in_a_fresh_interpreter():
    """The aunet-lm-eval.pth line installed with the package: lm-eval finds `aunet` and keeps its own models."""
    code = ("from lm_eval.api.registry import get_model; m = get_model('aunet'); "
            "print(m.__module__, m.__name__); get_model('dummy')")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["aunet.evaluation.lm", "AUNetLM"]


def test_unknown_task_and_bad_task_data_are_user_errors(tmp_path):
    from aunet.evaluation.errors import EvalError
    from aunet.evaluation.tasks import parse_task_data

    with pytest.raises(EvalError, match="has no local data"):
        build_local_tasks(["definitely_not_a_task"])
    with pytest.raises(EvalError, match="expected TASK=PATH"):
        parse_task_data(["arc_easy"])
    with pytest.raises(EvalError, match="is not a file"):
        parse_task_data([f"arc_easy={tmp_path / 'missing.jsonl'}"])


def test_any_stock_task_on_a_local_file(tmp_path):
    """--task-data: piqa's stock prompt and metrics on a file of ours (piqa's hub schema), acc_bytes added."""
    rows = [
        {"goal": "To open a jar,", "sol1": "twist the lid.", "sol2": "freeze it solid for a week.", "label": 0},
        {"goal": "Dry wet shoes", "sol1": "in the oven at full heat.", "sol2": "with newspaper inside.", "label": 1},
        {"goal": "Make tea", "sol1": "steep leaves in hot water.", "sol2": "stir sand into milk.", "label": 0},
        {"goal": "Cut bread", "sol1": "with a spoon.", "sol2": "with a serrated knife.", "label": 1},
    ]
    path = tmp_path / "piqa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    loaded = unigram_loaded()
    logp = loaded.model.table.log_softmax(0).numpy()
    with build_local_tasks(["piqa"], {"piqa": path}) as local:
        result = lm_eval.simple_evaluate(model=AUNetLM(loaded=loaded), tasks=local.names,
                                         task_manager=local.task_manager(), bootstrap_iters=0)
    choices = [[r["sol1"], r["sol2"]] for r in rows]
    lls = [np.array([sum(logp[b] for b in (" " + c).encode()) for c in cs]) for cs in choices]
    expected = hand_accuracy(lls, choices, [r["label"] for r in rows])
    got = result["results"]["piqa"]
    assert got["sample_len"] == 4
    assert {m: got[f"{m},none"] for m in expected} == pytest.approx(expected)


def test_task_files_for_lm_evals_own_cli(tmp_path, capsys):
    """`python -m aunet.evaluation.tasks DIR` keeps the files; lm-eval indexes them under the stock names."""
    from lm_eval.tasks import TaskManager

    from aunet.evaluation.tasks import main

    folder = tmp_path / "tasks"
    assert main([str(folder), "--tasks", "hellaswag,arc_challenge"]) == 0
    assert "--include_path" in capsys.readouterr().out
    index = TaskManager(include_path=str(folder), include_defaults=False).task_index
    assert {"hellaswag", "arc_challenge"} <= set(index) and (folder / "hellaswag.yaml").is_file()
    assert main([str(folder), "--tasks", "nope"]) == 2


def test_generate_until_requests(aunet_loaded, bpe_loaded):
    """lm-eval's generate_until: stop strings cut, max_gen_toks in the model's units, order kept."""
    from types import SimpleNamespace

    from aunet.evaluation.generation import generate

    for loaded in (aunet_loaded, bpe_loaded):
        lm = AUNetLM(loaded=loaded)
        free = generate(loaded, "KING:", max_new_units=30).text
        stop = free[5:7] if len(free) >= 7 else None
        requests = [SimpleNamespace(args=("KING:", {"until": [], "max_gen_toks": 30})),
                    SimpleNamespace(args=("A much longer prompt. KING:", {"max_gen_toks": 4}))]
        if stop:
            requests.append(SimpleNamespace(args=("KING:", {"until": [stop], "max_gen_toks": 30})))
        out = lm.generate_until(requests, disable_tqdm=True)
        assert out[0] == free
        assert out[1] == generate(loaded, "A much longer prompt. KING:", max_new_units=4).text
        if stop:
            assert out[2] == free[: free.index(stop)]
