"""The multilingual suite: bits per byte per language on the parallel PUD sentences and held-out Chinese and Japanese
text, under ``multilingual.bpb.<name>`` keys, from Python, ``aunet eval --suite`` and a sweep's task list."""

from __future__ import annotations

import json
import math

import pytest

from aunet.cli import main
from aunet.evaluation.evaluate import evaluate_loaded
from aunet.evaluation.suites import GSD_FILES, HELD_OUT_CORPORA, PUD_LANGUAGES, multilingual_texts
from tests.evaluation.test_scoring import unigram_loaded

NAMES = {*PUD_LANGUAGES, *GSD_FILES, *HELD_OUT_CORPORA}


def test_texts_are_parallel_and_held_out(data_dir):
    texts = multilingual_texts(limit=5)
    assert set(texts) == NAMES and all(len(texts[lang]) == 5 for lang in PUD_LANGUAGES)
    rows = [json.loads(line) for _, line in zip(range(5), (data_dir / "corpora/multilingual/ud_pud/parallel.jsonl")
                                                .open(encoding="utf-8"))]
    for lang in PUD_LANGUAGES:  # the same five sentences in every language, in order
        assert texts[lang] == [row[lang] for row in rows]
    assert texts["en"][0].startswith("“While much of the digital transition")
    # Held-out documents: the validation side of each corpus's own default split, whole documents only.
    from aunet.data.registry import resolve_corpus
    from aunet.data.split import CorpusSplit, SplitSpec

    full = multilingual_texts()
    for corpus in HELD_OUT_CORPORA:
        source, method = resolve_corpus(corpus)
        val = [d.data.decode() for d in CorpusSplit(source, SplitSpec(method=method)).val_documents()]
        sample = full[corpus]
        assert 50_000 < sum(len(d.encode()) for d in sample) <= 65_536  # kyoto holds out 57 kB in all
        assert sample[:-1] == val[: len(sample) - 1] and val[len(sample) - 1].startswith(sample[-1])
        assert texts[corpus] == [d for d in sample[:5]]  # limit: the first five documents
    assert len(full["gutenberg_en"]) == 1 and full["gutenberg_en"][0].startswith("PETER PAN")  # pg16, cut at 64 KiB
    assert len(full["th"]) == 1000


def test_bits_per_byte_per_language_by_hand(data_dir, tmp_path):
    """A context-free byte model: each language's bpb is -sum(log p(b)) / (bytes ln 2) over its sentences."""
    loaded = unigram_loaded(max_len=128)  # sentences longer than 128 bytes go through rolling windows
    result = evaluate_loaded(loaded, ["multilingual"], limit=4, output_dir=tmp_path)
    texts = multilingual_texts(limit=4)
    assert set(result["scores"]) == {f"multilingual.bpb.{n}" for n in NAMES}
    for name, docs in texts.items():
        data = "".join(docs).encode()
        expected = -sum(loaded.model.logprob(b) for b in data) / (len(data) * math.log(2))
        assert result["scores"][f"multilingual.bpb.{name}"] == pytest.approx(expected, rel=1e-9), name
    provenance = json.loads((tmp_path / "scores_provenance.json").read_text())
    assert provenance["multilingual.bpb.th"]["suites"] == ["multilingual"]
    assert provenance["multilingual.bpb.th"]["limit"] == 4


def test_suite_on_a_tiny_checkpoint_through_the_cli(aunet_run_dir, capsys, tmp_path):
    code = main(["eval", str(aunet_run_dir), "--suite", "multilingual", "--limit", "3", "--threads", "1",
                 "--output-dir", str(tmp_path)])
    out = capsys.readouterr()
    assert code == 0, out.err
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert set(scores) == {f"multilingual.bpb.{n}" for n in NAMES}  # no lm-eval task ran
    assert all(math.isfinite(v) and v > 0 for v in scores.values())
    assert "multilingual.bpb.ja_gsd" in out.out and not list(tmp_path.glob("lm_eval-*.json"))


def test_a_sweep_task_list_may_name_the_suite():
    """`aunet sweep eval` passes the sweep's eval.tasks to evaluate_run: a suite name there runs the suite."""
    from aunet.evaluation.evaluate import split_suites

    assert split_suites(["hellaswag", "multilingual"]) == (["hellaswag"], ["multilingual"])
    assert split_suites(["cute"], ["multilingual"]) == (["cute"], ["multilingual"])


def test_unknown_suite_is_a_one_line_error(aunet_run_dir, capsys):
    code = main(["eval", str(aunet_run_dir), "--suite", "multilingal"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "unknown suite 'multilingal'; known: multilingual" in err
