"""Reference levels of a sweep: which bytes they are fitted and scored on, the cache, fits.json, the plot, the CLI."""

from __future__ import annotations

import collections
import csv
import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import yaml

from aunet.analysis import plots, reference
from aunet.analysis.ngram import kneser_ney_bpb
from aunet.cli import main
from aunet.data.bpe import BPETokenizer
from aunet.data.corpus import CorpusSource
from aunet.data.split import CorpusSplit, SplitSpec

WORDS = ("the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far", "away", "from", "home", "it", "was",
         "late", "when", "they", "came", "back")
VAL_BYTES = 3000


def _prose(rng: np.random.Generator, n_words: int) -> bytes:
    words = rng.choice(WORDS, size=n_words)
    return (" ".join(words) + ".\n").encode()


def write_reference_sweep(root: Path, *, seed: int = 3) -> Path:
    """A fake repository ``root`` with a corpus of six documents (``val.txt`` held out), two finished runs (BPE
    read 20 000 bytes, AU-Net-1 30 000) and a failed run that claims more, each with config.yaml and summary.json.
    Returns ``root/results/sweep``."""
    rng = np.random.default_rng(0)
    corpus = root / "corpus"
    corpus.mkdir(parents=True)
    for name in ("a", "b", "c", "d", "e"):
        (corpus / f"{name}.txt").write_bytes(_prose(rng, 2500))
    (corpus / "val.txt").write_bytes(_prose(rng, 1500))
    data = {"corpus": str(corpus), "val_documents": ["val"], "val_bytes": VAL_BYTES}
    runs = [("bpe-1", "bpe", "finished", 20_000, 2.9), ("aunet1-1", "aunet1", "finished", 30_000, 3.4),
            ("aunet2-1", "aunet2", "failed", 90_000, None)]
    rows = []
    for run_id, family, status, bytes_seen, bpb in runs:
        folder = root / "results" / "runs" / run_id
        folder.mkdir(parents=True)
        model = {"preset": "tiny-bpe", "vocab_size": 300} if family == "bpe" else {"preset": "tiny-aunet1"}
        config = {"name": family, "model": model, "data": data, "train": {"seed": seed, "max_steps": 10}}
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
        (folder / "summary.json").write_text(json.dumps({"val_text_bytes": VAL_BYTES}))
        rows.append({"run_id": run_id, "sweep": "sweep", "family": family, "variant": "", "budget_flops": 1e12,
                     "seed": seed, "status": status, "flops_spent": 1e12 if bpb else "", "bytes_seen": bytes_seen,
                     "val_bpb": bpb or "", "run_dir": f"results/runs/{run_id}"})
    results = root / "results" / "sweep"
    results.mkdir(parents=True)
    with (results / "runs.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return results


@pytest.fixture
def sweep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AUNET_CACHE_DIR", str(tmp_path / "cache"))  # a cold cache for every test
    return write_reference_sweep(tmp_path / "repo")


def _expected_texts(results: Path, seed: int = 3) -> tuple[list[bytes], list[bytes]]:
    """The training prefix and validation text as the runs' split defines them, built here without the module."""
    split = CorpusSplit(CorpusSource([str(results.parent.parent / "corpus")]), SplitSpec(val_documents=["val"]))
    train, total = [], 0
    for doc in split.train_documents(epoch=0, seed=seed):  # the order a run with this seed reads
        train.append(doc.data[: 30_000 - total])
        total += len(train[-1])
        if total == 30_000:
            break
    val = [doc.data for doc in split.val_documents()]
    return train, [val[0][:VAL_BYTES]]


def test_levels_are_fitted_on_the_largest_runs_bytes_and_scored_on_the_validation_text(sweep):
    record, cached = reference.sweep_reference_levels(sweep, max_order=6)
    assert not cached
    train, val = _expected_texts(sweep)
    # The failed run claims more bytes but is not a finished run: the AU-Net's 30 000 bytes are the largest.
    assert record["training_text"]["run_id"] == "aunet1-1" and record["training_bytes"] == 30_000
    assert record["training_text"]["seed"] == 3 and not record["training_text"]["whole_split"]
    assert record["validation_bytes"] == VAL_BYTES and record["validation_documents"] == 1
    expected = kneser_ney_bpb(train, val, 6)
    ng = record["byte_ngram"]
    assert ng["orders"] == [1, 2, 3, 4, 5, 6] and ng["bpb"] == pytest.approx([expected[k] for k in range(1, 7)],
                                                                            rel=1e-12)
    assert ng["best_bpb"] == min(ng["bpb"]) and ng["bpb"][ng["best_order"] - 1] == ng["best_bpb"]
    assert record["bpe_unigram"]["run_id"] == "bpe-1" and record["bpe_unigram"]["vocab_size"] <= 300
    assert record["fingerprint"] and record["notes"] == []


def test_the_second_call_comes_from_the_cache_and_another_order_does_not(sweep):
    first, _ = reference.sweep_reference_levels(sweep, max_order=6)
    again, cached = reference.sweep_reference_levels(sweep, max_order=6)
    assert cached and again == first
    other, cached = reference.sweep_reference_levels(sweep, max_order=7)
    assert not cached and other["byte_ngram"]["orders"][-1] == 7
    assert other["byte_ngram"]["bpb"][:6] == pytest.approx(first["byte_ngram"]["bpb"], rel=1e-12)


def test_bpe_unigram_level_on_a_toy_tokenizer():
    rng = np.random.default_rng(1)
    train = [_prose(rng, 800), _prose(rng, 300)]
    val = [_prose(rng, 200) + "naïve".encode()]  # "ï" is two bytes; every byte is encodable, seen or not
    tokenizer = BPETokenizer.train(train, 280)
    level = reference.bpe_unigram_level(tokenizer, train, val)
    # Recomputed from plain counts: add-one over the text tokens (all ids but BOS and EOS).
    counts = collections.Counter(int(t) for doc in train for t in tokenizer.encode(doc))
    n_text = tokenizer.vocab_size - 2
    total = sum(counts.values())
    val_ids = [int(t) for doc in val for t in tokenizer.encode(doc)]
    bits = sum(-math.log2((counts[t] + 1) / (total + n_text)) for t in val_ids)
    assert level["bits"] == pytest.approx(bits, rel=1e-12)
    assert level["bpb"] == pytest.approx(bits / len(val[0]), rel=1e-12)
    assert level["training_tokens"] == total and level["validation_tokens"] == len(val_ids)
    assert level["unseen_validation_tokens"] == sum(counts[t] == 0 for t in val_ids) > 0


def test_first_bytes_cuts_the_stream_and_says_when_it_ran_out():
    assert reference.first_bytes([b"abc", b"", b"defg"], 5) == ([b"abc", b"de"], False)
    assert reference.first_bytes([b"abc"], 3) == ([b"abc"], False)
    assert reference.first_bytes([b"abc", b"d"], 10) == ([b"abc", b"d"], True)


def test_a_run_that_read_more_than_the_split_is_fitted_on_the_whole_split(sweep):
    rows = list(csv.DictReader((sweep / "runs.csv").open()))
    rows[1]["bytes_seen"] = "10000000"
    with (sweep / "runs.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    record, _ = reference.sweep_reference_levels(sweep, max_order=6)
    corpus = sweep.parent.parent / "corpus"
    train_bytes = sum(p.stat().st_size for p in corpus.glob("*.txt") if p.stem != "val")
    assert record["training_text"]["whole_split"] and record["training_bytes"] == train_bytes
    assert "fitted on the whole split once" in record["notes"][0]


@pytest.mark.parametrize("change, message", [
    ("val_text_bytes", "validation text now has 3000 bytes but run aunet1-1 was scored on 2999"),
    ("corpus", "changed since run aunet1-1 was trained"),
    ("config", "run aunet1-1: no run folder with config.yaml"),
])
def test_data_that_is_not_what_the_runs_saw_is_refused(sweep, change, message):
    folder = sweep.parent / "runs" / "aunet1-1"
    if change == "val_text_bytes":
        (folder / "summary.json").write_text(json.dumps({"val_text_bytes": VAL_BYTES - 1}))
    elif change == "corpus":
        (folder / "summary.json").write_text(json.dumps({"data": {"corpus": "0" * 64}}))
    else:
        (folder / "config.yaml").unlink()
    with pytest.raises(reference.ReferenceUnavailable, match=message):
        reference.sweep_reference_levels(sweep, max_order=6)


def test_draw_reference_levels_labels_a_line_per_level():
    record = {"byte_ngram": {"orders": [1, 2, 3, 4, 5, 6], "bpb": [4.6, 3.5, 2.8, 2.4, 2.1, 2.05], "best_order": 6,
                             "best_bpb": 2.05},
              "bpe_unigram": {"bpb": 3.25}}
    fig, ax = plt.subplots()
    ax.plot([1e11, 1e13], [3.9, 2.0], label="a model")
    pairs = plots.draw_reference_levels(ax, record)
    labels = [text.get_text() for _, text in pairs]
    assert labels == ["byte 1-gram: 4.600", "byte 2-gram: 3.500", "byte 3-gram: 2.800", "byte 4-gram: 2.400",
                      "byte 6-gram (best n-gram): 2.050", "BPE token unigram: 3.250"]
    assert [line.get_ydata()[0] for line, _ in pairs] == [4.6, 3.5, 2.8, 2.4, 2.05, 3.25]
    # The lines stay out of the legend (their labels sit on them); every label is inside the figure and apart.
    assert ax.get_legend_handles_labels()[1] == ["a model"]
    heights = sorted(text.get_position()[1] for _, text in pairs)
    assert np.diff(heights).min() >= plots._LABEL_GAP - 1e-12 and heights[0] >= 0
    assert plots.draw_reference_levels(ax, None) == [] and plots.draw_reference_levels(ax, {}) == []
    chosen = plots.draw_reference_levels(ax, record, orders=[2])
    assert [t.get_text() for _, t in chosen] == ["byte 2-gram: 3.500", "byte 6-gram (best n-gram): 2.050",
                                                 "BPE token unigram: 3.250"]
    plt.close(fig)


def test_analyze_stores_the_levels_and_the_scaling_plot_draws_them(sweep, capsys):
    code = main(["analyze", str(sweep), "--notebooks", "scaling", "--param", "n_boot=10", "--reference-order", "6"])
    out = capsys.readouterr().out
    assert code == 0, out
    fits = json.loads((sweep / "fits.json").read_text())
    assert fits["reference_levels"]["byte_ngram"]["orders"] == [1, 2, 3, 4, 5, 6]
    line = next(line for line in out.splitlines() if line.startswith("reference levels"))
    assert "best" in line and "BPE unigram" in line and "30,000 training bytes" in line
    # The notebook found them (it notes their absence otherwise) and drew the plot.
    assert not any("reference_levels" in n for n in fits["scaling"]["notes"])
    assert (sweep / "plots" / "scaling_bpb_vs_flops.png").is_file()
    main(["analyze", str(sweep), "--notebooks", "scaling", "--param", "n_boot=10", "--reference-order", "6"])
    assert "reference levels (cached)" in capsys.readouterr().out


def test_analyze_without_the_data_skips_the_levels_in_one_line_and_exits_0(sweep, monkeypatch, capsys):
    # A named corpus needs the data directory; without it everything else is still done.
    for run_id in ("bpe-1", "aunet1-1"):
        path = sweep.parent / "runs" / run_id / "config.yaml"
        config = yaml.safe_load(path.read_text())
        path.write_text(yaml.safe_dump({**config, "data": {**config["data"], "corpus": "gutenberg_en"}}))
    monkeypatch.delenv("AUNET_DATA_DIR", raising=False)
    code = main(["analyze", str(sweep), "--notebooks", "scaling", "--param", "n_boot=10"])
    out = capsys.readouterr().out
    assert code == 0, out
    skipped = [line for line in out.splitlines() if line.startswith("reference levels")]
    assert len(skipped) == 1 and skipped[0].startswith("reference levels: skipped (")
    assert "AUNET_DATA_DIR is not set" in skipped[0]
    assert "reference_levels" not in json.loads((sweep / "fits.json").read_text())


def test_stored_levels_are_kept_for_the_same_runs_and_dropped_when_stale(sweep, monkeypatch, capsys):
    assert main(["analyze", str(sweep), "--notebooks", "scaling", "--param", "n_boot=10",
                 "--reference-order", "6"]) == 0
    capsys.readouterr()
    (sweep.parent / "runs" / "aunet1-1" / "config.yaml").unlink()  # the levels cannot be recomputed now
    assert main(["analyze", str(sweep), "--notebooks", "scaling", "--param", "n_boot=10"]) == 0
    assert "kept those in fits.json, fitted for the same runs" in capsys.readouterr().out
    assert "reference_levels" in json.loads((sweep / "fits.json").read_text())
    text = (sweep / "runs.csv").read_text().replace(",30000,", ",31000,")  # the largest run read more since
    (sweep / "runs.csv").write_text(text)
    assert main(["analyze", str(sweep), "--notebooks", "scaling", "--param", "n_boot=10"]) == 0
    assert "removed stale ones from fits.json" in capsys.readouterr().out
    assert "reference_levels" not in json.loads((sweep / "fits.json").read_text())


@pytest.mark.parametrize("args, message", [
    (["--reference-order", "5"], "--reference-order 5: must lie in 6..8"),
    (["--reference-order", "9"], "--reference-order 9: must lie in 6..8"),
])
def test_analyze_rejects_a_bad_reference_order(sweep, args, message, capsys):
    assert main(["analyze", str(sweep), *args]) == 2
    assert message in capsys.readouterr().err


def test_training_text_is_the_largest_runs_stream_prefix(sweep):
    train, _ = _expected_texts(sweep)
    text = reference.training_text(sweep, n_bytes=12_345)
    assert b"".join(text) == b"".join(train)[:12_345]
    runs = reference.tables.read_runs(sweep)
    only_bpe = runs[runs["family"] == "bpe"]  # the largest of the rows given: the BPE run, same corpus and seed
    assert b"".join(reference.training_text(sweep, only_bpe, n_bytes=500)) == b"".join(train)[:500]
    with pytest.raises(reference.ReferenceUnavailable, match="n_bytes must be positive"):
        reference.training_text(sweep, n_bytes=0)
    with pytest.raises(reference.ReferenceUnavailable, match="no finished run"):
        reference.training_text(sweep, runs[runs["status"] == "failed"], n_bytes=10)
