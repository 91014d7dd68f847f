"""Every analysis notebook runs headless on fixture results (jupytext.read + nbclient, parameters injected) and
writes its plots; on a sparse table each skips what it cannot do, with a printed note, instead of failing.

The notebooks are executed once per session, a few kernels at a time (each writes to its own output folder), and
the tests below check what each left behind.
"""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jupytext
import nbformat
import numpy as np
import pandas as pd
import pytest

from aunet.analysis.notebooks import NOTEBOOKS, execute_notebook, notebook_path
from tests.analysis.builders import (
    BUDGETS,
    ISOFLOP_LAW_FILE,
    ISOFLOP_NOISE,
    LAWS,
    MULTILINGUAL,
    fixture_lr_law,
    law,
    lr_optimum,
)

# Fewer bootstrap resamples and synthetic studies than the default: these tests check that the notebooks run, not
# interval quality (tests/analysis/test_coverage.py checks that).
FAST = {"n_boot": 30, "coverage_studies": 2}

PLOTS = {
    "scaling": ["scaling_bpb_vs_flops", "learning_curves", "compute_equivalent_gain"],
    "downstream": ["downstream_vs_flops", "downstream_vs_bpb"],
    "hyperparameters": ["hyperparameters_vs_flops"],
    "throughput": ["throughput_vs_size"],
    "multilingual": ["multilingual_bpb_by_language", "multilingual_bpb_vs_flops"],
    "chunking": [],  # the scaling sweep has no learned chunking: its job is ("chunking", "chunking")
}
JOBS = [*((name, "scaling") for name in NOTEBOOKS), ("hyperparameters", "tuning"), ("scaling", "isoflop"),
        ("hyperparameters", "isoflop"),
        ("hyperparameters", "lrgrid"), ("scaling", "isoflop-partial"), ("scaling", "variants"),
        ("chunking", "chunking"),
        *((name, "minimal") for name in NOTEBOOKS)]


class Executed:
    """An executed notebook: its output folder, the saved notebook and everything it printed."""

    def __init__(self, out: Path, nb: nbformat.NotebookNode) -> None:
        self.out = out
        self.nb = nb
        self.text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                            for o in c.get("outputs", []) if o.get("output_type") == "stream")

    def fits(self, key: str) -> dict:
        return json.loads((self.out / "fits.json").read_text())[key]


@pytest.fixture(scope="session")
def executed(results_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Executed]:
    base = tmp_path_factory.mktemp("executed")

    def one(job: tuple[str, str]) -> Executed:
        name, sweep = job
        out = base / f"{sweep}-{name}"
        # The ablation without seeds takes its noise from the isoFLOP study's AU-Net-2.
        extra = {"noise_from": str(results_root / "results" / "isoflop")} if sweep == "variants" else {}
        outcome = execute_notebook(name, results_root / "results" / sweep, out, timeout=120,
                                   save_to=out / f"{name}.ipynb", extra_parameters={**FAST, **extra})
        assert outcome.error is None, f"{name} on {sweep}: {outcome.error}"
        return Executed(out, nbformat.read(outcome.saved_to, as_version=4))

    # Kernels are separate processes: three at a time roughly halves the wall time on two cores.
    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(zip(JOBS, pool.map(one, JOBS)))


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_on_a_scaling_sweep_and_draws_its_plots(name, executed, scaling_results):
    run = executed[(name, "scaling")]
    for plot in PLOTS[name]:
        for ext in ("png", "svg"):
            assert (run.out / "plots" / f"{plot}.{ext}").stat().st_size > 1000, f"{plot}.{ext}"
    assert not (scaling_results / "plots").exists()  # everything went to output_dir


def test_scaling_notebook_saves_one_fit_per_family_and_the_gains(executed):
    fits = executed[("scaling", "scaling")].fits("scaling")
    assert set(fits["families"]) == {"bpe", "aunet1", "aunet2", "aunet3", "aunet4"}
    assert set(fits["gain_vs_bpe"]) == {"aunet1", "aunet2", "aunet3", "aunet4"}
    assert all(f["n_points"] == 4 and f["irreducible"] and f["n_boot"] == 30 for f in fits["families"].values())
    assert fits["compute"] == "flops_spent"
    # Four budgets for three parameters: the notebook says the intervals are rough.
    assert sum("4 points for 3 parameters" in n for n in fits["notes"]) == 5


def test_scaling_notebook_compares_families_on_their_isoflop_envelopes(executed):
    run = executed[("scaling", "isoflop")]
    fits = run.fits("scaling")
    assert fits["method"] == "isoflop envelope" and set(fits["gain_vs_bpe"]) == {"aunet1", "aunet2", "aunet3", "aunet4"}
    for family, points in fits["envelopes"].items():
        assert [p["status"] for p in points] == ["ok"] * 4 and [p["n_sizes"] for p in points] == [3] * 4
        for p in points:  # the vertex lands on the family's law within a few times the seed noise
            assert abs(p["L_star"] - law(family, p["C"])) < 4 * ISOFLOP_NOISE, (family, p)
            assert p["L_interval"][0] < p["L_star"] < p["L_interval"][1]
        assert 0.3 * ISOFLOP_NOISE < fits["seed_noise"][family] < 3 * ISOFLOP_NOISE
        assert fits["families"][family]["n_points"] == 4 and fits["families"][family]["n_boot"] > 20
    for ext in ("png", "svg"):
        assert (run.out / "plots" / f"isoflop_valleys.{ext}").stat().st_size > 1000


def test_scaling_notebook_compares_every_pair_of_families_at_every_budget(executed):
    pairs = executed[("scaling", "isoflop")].fits("scaling")["differences"]
    assert len(pairs) == 10 * len(BUDGETS)  # 5 families, each pair once, at the 4 budgets
    assert len({(p["a"], p["b"]) for p in pairs}) == 10 and all(p["a"] != p["b"] for p in pairs)
    for p in pairs:
        true = law(p["a"], p["C"]) - law(p["b"], p["C"])
        assert p["lo"] < p["a_minus_b"] < p["hi"]
        assert abs(p["a_minus_b"] - true) < 6 * ISOFLOP_NOISE, p
        if abs(true) > 10 * ISOFLOP_NOISE:  # a gap far beyond the noise is resolved, with the right sign
            assert p["resolved"] and np.sign(p["a_minus_b"]) == np.sign(true), p
        assert p["resolved"] == (p["lo"] > 0 or p["hi"] < 0)


def test_chunking_notebook_summarises_learned_boundaries_per_family_and_step(executed, results_root):
    run = executed[("chunking", "chunking")]
    fits = run.fits("chunking")
    runs = pd.read_csv(results_root / "results" / "chunking" / "runs.csv")
    assert set(fits["series"]) == {"hnet1", "hnet2"}  # the BPE runs log no boundaries
    assert set(fits["series"]["hnet1"]["steps"]) == {"1"} and set(fits["series"]["hnet2"]["steps"]) == {"1", "2"}
    for family in ("hnet1", "hnet2"):
        mine = runs[runs["family"] == family]
        step = fits["series"][family]["steps"]["1"]
        assert fits["series"][family]["runs"] == len(mine) == 13
        assert step["word_next_share_end"]["mean"] == pytest.approx(mine["word_next_share_end_1"].mean())
        share = step["word_next_share_end"]
        assert share["lo"] < share["mean"] < share["hi"]
        assert step["bytes_per_chunk_end"]["n"] == 13 and step["word_next_share_seed_sd"]["dof"] == 4
        assert fits["series"][family]["cost"]["flops_drift"]["mean"] == pytest.approx(mine["flops_drift"].mean())
        assert fits["series"][family]["cost"]["stopped_by"] == {"budget": 13}
    assert fits["loss_vs_words"]["runs"] == 12 and fits["loss_vs_words"]["groups"] == 4
    assert -1 <= fits["loss_vs_words"]["rho"] <= 1
    # Without run folders, neither the targets nor the chance levels can be rebuilt: said, not guessed.
    assert fits["chance"] is None and any("chance levels skipped" in n for n in fits["notes"])
    assert any("targets are left out" in n for n in fits["notes"])
    for ext in ("png", "svg"):
        assert (run.out / "plots" / f"chunking_boundaries.{ext}").stat().st_size > 1000


def test_scaling_notebook_measures_the_noise_per_budget_and_says_where_it_pools(executed):
    """The fixture repeats the centre size with two more seeds at the two smallest budgets: those budgets use their
    own noise (2 degrees of freedom each), the two larger ones the pool of both, and fits.json says which."""
    run = executed[("scaling", "isoflop")]
    fits = run.fits("scaling")
    for family, model in fits["noise_model"].items():
        assert [m["C"] for m in model["measured"]] == pytest.approx(list(BUDGETS[:2]), rel=0.01)
        assert [m["dof"] for m in model["measured"]] == [2, 2] and model["per_budget"]
        assert [b["source"] for b in model["at_budgets"]] == ["measured", "measured", "pooled", "pooled"]
        assert [p["noise"]["source"] for p in fits["envelopes"][family]] == [b["source"] for b in model["at_budgets"]]
        assert model["pooled"]["sd"] == pytest.approx(fits["seed_noise"][family])
    assert f"no repeated seeds at {BUDGETS[2]:.2g}, {BUDGETS[3]:.2g}; the noise there is the pool" in run.text


def test_scaling_notebook_predicts_the_largest_budget_from_the_others(executed):
    """fits.json "held_out": each family's curve fitted on the three smaller budgets, extrapolated to the largest:
    near the fixture's law there, and the measured vertex within the interval for most families (30 draws)."""
    fits = executed[("scaling", "isoflop")].fits("scaling")
    held = fits["held_out"]
    assert set(held) == set(LAWS)
    for family, h in held.items():
        assert h["C"] == pytest.approx(BUDGETS[-1], rel=0.01) and h["n_fitted"] == 3 and h["irreducible"]
        assert h["interval"][0] <= h["prediction"] <= h["interval"][1]
        assert abs(h["prediction"] - law(family, BUDGETS[-1])) < 0.05, (family, h)
        assert h["measured"] == pytest.approx(fits["envelopes"][family][-1]["L_star"])
    assert sum(h["contains"] for h in held.values()) >= 4


def test_scaling_notebook_checks_its_intervals_on_synthetic_studies_like_itself(executed):
    record = executed[("scaling", "isoflop")].fits("scaling")["coverage"]
    assert record["n_studies"] == 2 and record["reference"] == "bpe" and set(record["families"]) == set(LAWS)
    assert record["design"]["budgets"] == pytest.approx(list(BUDGETS), rel=0.01)
    assert record["design"]["repeats"] and len(record["design"]["repeats"]) == 2
    assert {"vertex", "alpha", "gain", "held_out_curve", "held_out_measured"} <= set(record["rates"])
    assert record["rates"]["vertex"]["n"] == 2 * 5 * 4  # studies x families x budgets


def test_an_ablation_without_seeds_takes_its_noise_from_another_study(executed):
    """noise_from: the variants of AU-Net-2 take the per-budget noise of AU-Net-2 in the isoFLOP study (measured at
    its two smallest budgets, the pool elsewhere), and the variants table gives each one's distance to the best."""
    run = executed[("scaling", "variants")]
    fits = run.fits("scaling")
    for series in ("aunet2/word", "aunet2/stride4"):
        model = fits["noise_model"][series]
        assert model["origin"].endswith("isoflop aunet2")
        assert [b["source"] for b in model["at_budgets"]] == ["measured", "pooled"]
        assert all(p["L_interval"][0] < p["L_star"] < p["L_interval"][1] for p in fits["envelopes"][series])
    rows = {(r["series"], round(r["C"] / 1e19, 1)): r for r in fits["variants"]}
    assert len(rows) == 4 and all(r["best"] == "aunet2/word" for r in rows.values())
    stride = rows[("aunet2/stride4", 3.0)]
    assert stride["minus_best"] > 0 and stride["lo"] < stride["minus_best"] < stride["hi"]
    # Two points with independent noise of 0.004 each: their difference spreads by more than 0.01 (95%). Draws shared
    # between series (one bootstrap seed for all) would cancel in the difference and leave next to no interval.
    assert stride["hi"] - stride["lo"] > 0.01, stride
    assert "no repeated seeds of its own; its noise is that of" in run.text


def test_the_gain_at_each_budget_brackets_the_true_gain(executed):
    """The gain over BPE at the study's budgets (fits.json "gain_at") is near the gain the fixture's true laws give,
    g with L_bpe(g C) = L_family(C), and inside its own interval; every budget lies in the fitted range. (Near: a
    vertex off by the fixture's seed noise, 0.004 bits per byte, moves g by about 8%.)"""
    fits = executed[("scaling", "isoflop")].fits("scaling")
    E, alpha, at_1e19 = LAWS["bpe"]
    for family in ("aunet1", "aunet2", "aunet3", "aunet4"):
        at = fits["gain_at"][family]
        assert at["C"] == pytest.approx(list(BUDGETS)) and not any(at["extrapolated"]), (family, at)
        for C, gain, lo, hi in zip(at["C"], at["gain"], at["lo"], at["hi"]):
            true = 1e19 * ((law(family, C) - E) / (at_1e19 - E)) ** (-1 / alpha) / C
            assert lo <= gain <= hi and abs(gain / true - 1) < 0.25, (family, C, true, gain, lo, hi)


def test_hyperparameters_notebook_copies_the_laws_the_runs_used(executed):
    """A study whose LRs came from a fitted-law file: fits.json names the file and holds each family's law."""
    fits = executed[("hyperparameters", "isoflop")].fits("hyperparameters")
    assert set(fits["laws_used"]) == set(LAWS)
    for family, used in fits["laws_used"].items():
        assert used["source"] == ISOFLOP_LAW_FILE
        assert (used["lr"]["coefficient"], used["lr"]["exponent"]) == pytest.approx(fixture_lr_law(family))
        assert used["batch_bytes"]["exponent"] == 0.0
    assert executed[("hyperparameters", "scaling")].fits("hyperparameters")["laws_used"] == {}


def test_a_budget_short_of_sizes_is_left_out_of_that_familys_envelope_only(executed):
    """A sweep still running: BPE has one size at the largest budget. Its other budgets keep their vertices (it does
    not fall back to single runs), that budget is named in a note, and the other families keep all four."""
    run = executed[("scaling", "isoflop-partial")]
    fits = run.fits("scaling")
    assert fits["method"] == "isoflop envelope"
    assert [p["C"] for p in fits["envelopes"]["bpe"]] == list(BUDGETS[:-1])
    assert all(len(fits["envelopes"][f]) == 4 for f in ("aunet1", "aunet2", "aunet3", "aunet4"))
    assert f"bpe: fewer than 3 sizes at {BUDGETS[-1]:.2g}; left out of its envelope" in run.text


def test_downstream_notebook_uses_the_headline_metric_of_each_task(executed):
    text = executed[("downstream", "scaling")].text
    for col in ("hellaswag.acc_norm", "arc_easy.acc_norm", "arc_challenge.acc_norm", "mmlu.acc"):
        assert col in text
    assert "hellaswag.acc_bytes" not in text


def test_hyperparameters_notebook_says_so_when_there_is_one_run_per_budget(executed):
    run = executed[("hyperparameters", "scaling")]
    assert "note: one learning rate and batch per budget" in run.text
    assert run.fits("hyperparameters")["laws"] == {} and run.fits("hyperparameters")["runs_per_budget"] == 1


def test_hyperparameters_notebook_fits_laws_on_a_tuning_sweep(executed):
    record = executed[("hyperparameters", "tuning")].fits("hyperparameters")
    assert set(record["laws"]) == {"bpe", "aunet2"}
    for laws in record["laws"].values():
        assert set(laws) == {"lr", "batch_bytes"}
        assert laws["lr"]["a"] < 0 and laws["lr"]["n_points"] < laws["lr"]["n_runs"] == 45
    assert record["paper"]["bpe"]["batch_bytes"][0] == pytest.approx(29.9 * 4.4)  # tokens -> bytes


def test_hyperparameters_notebook_draws_each_familys_lr_valleys(executed):
    run = executed[("hyperparameters", "lrgrid")]
    record = run.fits("hyperparameters")
    assert set(record["lr_valleys"]) == {"bpe", "aunet2"}
    for family, valleys in record["lr_valleys"].items():
        for v in valleys:
            assert v["status"] == "ok" and abs(math.log(v["lr_star"] / lr_optimum(family, v["C"]))) < 0.2, v
            assert v["cost_2x"] == pytest.approx(0.05 * math.log(2) ** 2, rel=0.3)
    # The batch was fixed: only the LR gets a law.
    assert all(set(laws) == {"lr"} for laws in record["laws"].values())
    assert (run.out / "plots" / "lr_valleys.png").stat().st_size > 1000


def test_multilingual_notebook_tables_every_language_at_the_largest_budget(executed, scaling_results):
    record = executed[("multilingual", "scaling")].fits("multilingual")
    table = record["at_largest_budget"]
    assert set(table) == {"bpe", "aunet1", "aunet2", "aunet3", "aunet4"}
    runs = pd.read_csv(scaling_results / "runs.csv")
    for series, values in table.items():
        assert values["budget"] == BUDGETS[-1] and set(values) == {*MULTILINGUAL, "budget"}
        row = runs[(runs["family"] == series) & (runs["budget_flops"] == BUDGETS[-1])]
        assert values["th"] == pytest.approx(float(row["multilingual.bpb.th"].iloc[0]))


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_degrades_on_a_sparse_table(name, executed):
    run = executed[(name, "minimal")]
    assert "note:" in run.text
    if name == "scaling":
        fits = run.fits("scaling")
        assert list(fits["families"]) == ["bpe"] and not fits["families"]["bpe"]["irreducible"]
        assert any("aunet2: runs at 1 budget" in n for n in fits["notes"])
        # Two budgets determine a power law exactly: joined, not fitted (no extrapolation without a residual).
        assert any("aunet1: runs at 2 budget(s); a fit needs 3 or more" in n for n in fits["notes"])
        assert any("budget_flops is used as the compute" in n for n in fits["notes"])
        assert (run.out / "plots" / "scaling_bpb_vs_flops.png").is_file()
    else:
        assert not (run.out / "plots").exists()


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_ipynb_pair_matches_the_percent_script(name):
    """The .ipynb next to each .py holds the same cells (run `jupytext --sync analysis/*.py` after editing)."""
    script = jupytext.read(notebook_path(name))
    paired = nbformat.read(notebook_path(name).with_suffix(".ipynb"), as_version=4)
    assert script.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    assert [(c.cell_type, c.source) for c in script.cells] == [(c.cell_type, c.source) for c in paired.cells]
    assert any("parameters" in c.metadata.get("tags", []) for c in paired.cells)
    assert all(not c.get("outputs") for c in paired.cells if c.cell_type == "code")  # committed unexecuted


def test_chunking_notebook_measures_chance_on_the_runs_training_text_and_reads_their_targets(tmp_path, monkeypatch):
    """With run folders (config.yaml, summary.json) and the corpus at hand, the targets come from the runs' configs
    and the chance levels from the largest learned-chunking run's training stream."""
    import csv

    import yaml

    from aunet.analysis.boundaries import word_rates
    from aunet.analysis.reference import first_bytes
    from tests.analysis.test_reference import _expected_texts, write_reference_sweep

    monkeypatch.setenv("AUNET_CACHE_DIR", str(tmp_path / "cache"))
    results = write_reference_sweep(tmp_path / "repo")
    folder = results.parent / "runs" / "hnet1-1"
    folder.mkdir()
    data = yaml.safe_load((results.parent / "runs" / "bpe-1" / "config.yaml").read_text())["data"]
    (folder / "config.yaml").write_text(yaml.safe_dump({"name": "hnet1", "model": {"preset": "tiny-hnet1"},
                                                        "data": data, "train": {"seed": 3, "max_steps": 10}}))
    (folder / "summary.json").write_text("{}")
    with (results / "runs.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    boundary = {"bytes_per_chunk_end_1": 4.2, "word_start_share_end_1": 0.1, "word_next_share_end_1": 0.6,
                "word_recall_end_1": 0.1, "truncated_1": 0.0, "flops_drift": 0.1, "stopped_by": "budget"}
    rows.append({**{k: "" for k in rows[0]}, "run_id": "hnet1-1", "sweep": "sweep", "family": "hnet1",
                 "budget_flops": 1e12, "seed": 3, "status": "finished", "flops_spent": 1e12, "bytes_seen": 25_000,
                 "val_bpb": 3.1, "run_dir": "results/runs/hnet1-1", **boundary})
    with (results / "runs.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[-1]))
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "out"
    outcome = execute_notebook("chunking", results, out, timeout=120, extra_parameters={"chance_bytes": 20_000})
    assert outcome.error is None, outcome.error
    fits = json.loads((out / "fits.json").read_text())["chunking"]
    train, _ = _expected_texts(results)
    expected = word_rates(first_bytes(train, 20_000)[0])  # the first 20 000 bytes of the run's stream, per document
    assert fits["chance"] == pytest.approx(expected.to_dict())
    step = fits["series"]["hnet1"]["steps"]["1"]
    assert step["target_bytes_per_chunk"] == pytest.approx(4.6)  # tiny-hnet1's target ratio
    assert step["word_next_share_end_above_chance"] == {"runs": 1, "of": 1}
    assert step["word_start_recall_estimate"]["mean"] == pytest.approx(0.6 / 4.2 / fits["chance"]["next"])
