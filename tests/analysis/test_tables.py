"""Reading results tables, family colours, fits.json merging and notebook parameter injection."""

from __future__ import annotations

import json
import re

import nbformat
import numpy as np
import pandas as pd
import pytest

from aunet.analysis import notebooks, store, tables
from aunet.analysis.plots import series_style, series_styles
from tests.analysis.builders import LAWS


def test_read_runs_coerces_types_and_adds_missing_columns(scaling_results, minimal_results):
    runs = tables.read_runs(scaling_results)
    assert len(runs) == 22 and set(tables.RUNS_COLUMNS) <= set(runs.columns)
    assert pd.api.types.is_float_dtype(runs["val_bpb"]) and pd.api.types.is_float_dtype(runs["hellaswag.acc_norm"])
    assert (runs["variant"] == "").all() and runs["series"].tolist()[:4] == ["bpe"] * 4
    done = tables.finished(runs)
    assert len(done) == 20 and set(done["status"]) == {"finished"}
    sparse = tables.read_runs(minimal_results)
    assert set(tables.RUNS_COLUMNS) <= set(sparse.columns) and sparse["flops_spent"].isna().all()
    assert not tables.has_values(sparse, "flops_spent") and tables.has_values(sparse, "val_bpb", min_count=6)
    assert not tables.has_values(sparse, "val_bpb", min_count=7)  # the planned run has no value
    assert tables.first_with_values(sparse, "flops_spent", "planned_flops", "budget_flops") == "budget_flops"


def test_read_runs_keeps_variants_apart(tmp_path):
    folder = tmp_path / "ablation"
    folder.mkdir()
    (folder / "runs.csv").write_text(
        "run_id,family,variant,val_bpb,extra\nr1,aunet2,,1.0,x\nr2,aunet2,stride@4,1.1,y\n")
    runs = tables.read_runs(folder)
    assert runs["series"].tolist() == ["aunet2", "aunet2/stride@4"] and runs["extra"].tolist() == ["x", "y"]
    assert tables.series_order(["aunet2/stride@4", "bpe", "aunet2", "mystery"]) == [
        "bpe", "aunet2", "aunet2/stride@4", "mystery"]
    assert series_style("aunet2/stride@4", ["stride@4"])["linestyle"] != series_style("aunet2")["linestyle"]
    assert series_style("aunet2/stride@4")["color"] == tables.family_color("aunet2")


def test_variants_of_one_family_get_distinct_shades_and_markers():
    styles = series_styles(["bpe", "aunet2/word", "aunet2/stride4", "aunet2/stride5", "aunet3/mid1"])
    variants = [styles[f"aunet2/{v}"] for v in ("word", "stride4", "stride5")]
    assert len({s["color"] for s in variants}) == 3 and len({s["marker"] for s in variants}) == 3
    assert len({s["hatch"] for s in variants}) == 3  # bars (the multilingual chart) are told apart too
    assert styles["bpe"]["color"] == tables.family_color("bpe")
    assert styles["aunet3/mid1"]["color"] == tables.family_color("aunet3")  # a lone variant keeps the family colour


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "nope", r"nope: no such results folder; pass a folder results/<sweep> that holds runs\.csv"),
    (lambda p: p, r"runs\.csv: missing; run the sweep first"),
])
def test_read_runs_errors_name_the_path(tmp_path, make, message):
    with pytest.raises(tables.ResultsError, match=message):
        tables.read_runs(make(tmp_path))


def test_family_colours_and_labels_are_fixed_and_distinct():
    colors = tables.family_colors()
    assert list(colors) == ["bpe", "aunet1", "aunet2", "aunet3", "aunet4", "hnet1", "hnet2"]
    assert len(set(colors.values())) == 7 and all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in colors.values())
    assert tables.family_color("unknown") not in colors.values()
    assert [tables.family_label(f) for f in colors] == ["BPE", "AU-Net-1", "AU-Net-2", "AU-Net-3", "AU-Net-4",
                                                        "Learned-1", "Learned-2"]
    assert tables.family_order(["aunet3", "zeta", "bpe", "aunet1"]) == ["bpe", "aunet1", "aunet3", "zeta"]


def test_headline_scores_pick_acc_norm_for_hellaswag_and_arc_and_acc_for_mmlu(scaling_results):
    runs = tables.read_runs(scaling_results)
    assert tables.headline_scores(runs) == {"hellaswag": "hellaswag.acc_norm", "arc_easy": "arc_easy.acc_norm",
                                            "arc_challenge": "arc_challenge.acc_norm", "mmlu": "mmlu.acc"}
    assert tables.headline_scores(runs.drop(columns=["hellaswag.acc_norm"]))["hellaswag"] == "hellaswag.acc"


def test_metrics_are_found_from_run_dir_and_interpolated(scaling_results):
    runs = tables.finished(tables.read_runs(scaling_results))
    metrics = tables.load_metrics(runs, scaling_results)
    assert metrics["run_id"].nunique() == 2 * len(LAWS)  # the two smallest budgets of every family
    one = metrics[metrics["run_id"] == "bpe-1e+19-s0"]
    curve = tables.learning_curve(one)
    val_rows = one[one["val/bpb"].notna()]
    assert len(curve) == len(val_rows) > 3 and val_rows["train/flops_spent"].isna().all()
    # Validation rows carry no FLOPs of their own: they are interpolated over steps from the training rows.
    train = one.dropna(subset=["train/flops_spent"])
    per_step = (train["train/flops_spent"] / train["step"]).iloc[0]
    np.testing.assert_allclose(curve["train/flops_spent"], val_rows["step"].to_numpy() * per_step, rtol=1e-9)
    assert tables.resolve_run_dir("results/runs/does-not-exist", scaling_results) is None


def test_best_per_budget_keeps_one_run_per_series_budget_and_seed(tuning_results):
    runs = tables.read_runs(tuning_results)
    best = tables.best_per_budget(runs, "val_bpb", "budget_flops")
    assert len(best) == 2 * 3
    for row in best.itertuples():
        same = runs[(runs["series"] == row.series) & (runs["budget_flops"] == row.budget_flops)]
        assert row.val_bpb == same["val_bpb"].min()


def test_update_fits_merges_keys_and_writes_strict_json(tmp_path):
    store.update_fits(tmp_path, "scaling", {"alpha": np.float64(0.2), "band": np.array([1.0, np.nan, np.inf])})
    store.update_fits(tmp_path, "hyperparameters", {"laws": {}})
    store.update_fits(tmp_path, "scaling", {"alpha": 0.3})
    text = (tmp_path / "fits.json").read_text()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert data == {"scaling": {"alpha": 0.3}, "hyperparameters": {"laws": {}}}
    assert store.to_jsonable({"x": np.array([1.0, np.nan])}) == {"x": [1.0, None]}
    (tmp_path / "fits.json").write_text("{broken")
    with pytest.raises(tables.ResultsError, match="fits.json: not valid JSON"):
        store.read_fits(tmp_path)


def test_parameters_are_injected_after_the_parameters_cell():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# title"),
        nbformat.v4.new_code_cell("results_dir = 'x'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("print(results_dir)"),
    ])
    notebooks.inject_parameters(nb, {"results_dir": "/data/r", "n_boot": 10})
    assert nb.cells[2].metadata["tags"] == ["injected-parameters"]
    assert "results_dir = '/data/r'\nn_boot = 10" in nb.cells[2].source and nb.cells[3].source == "print(results_dir)"


def test_notebooks_are_found_in_the_checkout_or_through_the_environment(tmp_path, monkeypatch):
    assert notebooks.notebook_path("scaling").name == "scaling.py"
    monkeypatch.setenv(notebooks.ANALYSIS_DIR_ENV, str(tmp_path / "missing"))
    with pytest.raises(notebooks.NotebookError, match="AUNET_ANALYSIS_DIR=.*missing is not a directory"):
        notebooks.notebooks_dir()
    monkeypatch.setenv(notebooks.ANALYSIS_DIR_ENV, str(tmp_path))
    with pytest.raises(notebooks.NotebookError, match="scaling.py: missing"):
        notebooks.notebook_path("scaling")



def test_panel_grid_gives_count_axes_and_hides_the_rest():
    from aunet.analysis.plots import panel_grid

    fig, axes = panel_grid(5, 2, (3.0, 2.0))
    assert len(axes) == 5 and all(ax.get_visible() for ax in axes)
    cells = fig.get_axes()
    assert len(cells) == 6 and not cells[5].get_visible()
    assert tuple(fig.get_size_inches()) == (6.0, 6.0)
    fig, axes = panel_grid(1, 4, (3.0, 2.0))
    assert len(fig.get_axes()) == 1 and tuple(fig.get_size_inches()) == (3.0, 2.0)
