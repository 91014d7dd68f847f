"""``aunet analyze``: notebooks executed into RESULTS_DIR, a summary per family, one-line errors with exit code 2."""

from __future__ import annotations

import json
import shutil

import pytest

from aunet.cli import main


def test_analyze_writes_notebooks_plots_fits_and_a_summary(results_root, tmp_path, capsys):
    # A copy with its run folders at the same relative place (results/<sweep> next to results/runs).
    root = tmp_path / "repo"
    shutil.copytree(results_root / "results" / "scaling", root / "results" / "scaling")
    shutil.copytree(results_root / "results" / "runs", root / "results" / "runs")
    results = root / "results" / "scaling"
    code = main(["analyze", str(results), "--notebooks", "scaling", "--param", "n_boot=30", "--timeout", "120"])
    out = capsys.readouterr().out
    assert code == 0, out
    fits = json.loads((results / "fits.json").read_text())
    assert set(fits) == {"scaling"} and fits["scaling"]["families"]["bpe"]["n_boot"] == 30
    assert [p.name for p in (results / "notebooks").iterdir()] == ["scaling.ipynb"]
    for plot in ("scaling_bpb_vs_flops", "compute_equivalent_gain", "learning_curves"):
        assert (results / "plots" / f"{plot}.png").is_file() and (results / "plots" / f"{plot}.svg").is_file()
    # Summary: one line per family with finished/total runs, alpha [interval] and the loss at the largest budget.
    lines = {line.split()[0]: line for line in out.splitlines() if line.split()}
    alpha = fits["scaling"]["families"]["bpe"]["alpha"]
    assert lines["bpe"].split()[1] == "4/5" and f"{alpha:.3g} [" in lines["bpe"]
    assert lines["aunet3"].split()[1] == "4/5" and "3e+20" in lines["aunet3"]
    assert "scaling" in out and "ok" in out and "plots: 3 PNG" in out


def test_analyze_reports_a_failing_notebook_and_exits_1(scaling_results, tmp_path, monkeypatch, capsys):
    broken = tmp_path / "analysis"
    broken.mkdir()
    (broken / "scaling.py").write_text("# %% tags=['parameters']\nresults_dir = None\n\n# %%\n"
                                       "raise ValueError('no luck')\n")
    monkeypatch.setenv("AUNET_ANALYSIS_DIR", str(broken))
    results = tmp_path / "results"
    shutil.copytree(scaling_results, results)
    # The fits of an earlier analysis: printed after this one failed, as if current, before.
    (results / "fits.json").write_text(json.dumps({"scaling": {"families": {"bpe": {"alpha": 0.123456}}}}))
    code = main(["analyze", str(results), "--notebooks", "scaling", "--no-reference"])
    out = capsys.readouterr().out
    assert code == 1 and "FAILED: ValueError: no luck" in out
    assert (results / "notebooks" / "scaling.ipynb").is_file()  # kept, with the error, for reading
    assert "0.123" not in out and "alpha: not fitted by this analysis (the scaling notebook failed)" in out, out


def test_rows_marked_finished_without_a_usable_result_are_listed_never_dropped_silently(scaling_results, tmp_path,
                                                                                       monkeypatch, capsys):
    """Ten NaN rows of a hand-edited table changed BPE's fitted exponent from 0.12 to 0.047 without a note: rows
    marked finished whose val_bpb is not a positive finite number are named by `aunet analyze`, left out of every
    notebook (tables.finished) and of the finished counts."""
    import pandas as pd

    from aunet.analysis import notebooks, tables

    results = tmp_path / "results"
    shutil.copytree(scaling_results, results)
    runs = pd.read_csv(results / "runs.csv")
    bpe = runs.index[(runs["family"] == "bpe") & (runs["status"] == "finished")]
    runs["val_bpb"] = runs["val_bpb"].astype(object)
    runs.loc[bpe[0], "val_bpb"], runs.loc[bpe[1], "val_bpb"] = "NaN", -1.0
    runs.to_csv(results / "runs.csv", index=False)
    monkeypatch.setattr(notebooks, "execute_notebook",
                        lambda name, *a, **k: notebooks.NotebookRun(name, None, 0.0, None))
    assert main(["analyze", str(results), "--notebooks", "scaling", "--no-reference"]) == 0
    out = capsys.readouterr().out
    first, second = runs.loc[bpe[0], "run_id"], runs.loc[bpe[1], "run_id"]
    assert f"excluded 2 row(s) marked finished whose numbers cannot be results: {first} (val_bpb nan); {second} " \
           "(val_bpb -1.0)" in out, out
    lines = {line.split()[0]: line for line in out.splitlines() if line.split()}
    assert lines["bpe"].split()[1] == "2/5", out  # 4 finished in the table, 2 of them usable
    done = tables.finished(tables.read_runs(results))
    assert first not in set(done["run_id"]) and second not in set(done["run_id"])


@pytest.mark.parametrize("args, message", [
    (["{tmp}/nope"], "nope: no such results folder"),
    (["{tmp}"], "runs.csv: missing; run the sweep first"),
    (["{scaling}", "--notebooks", "scalng"], "unknown notebook 'scalng' (did you mean scaling?)"),
    (["{scaling}", "--param", "n-boot"], "--param n-boot: expected NAME=VALUE"),
    (["{scaling}", "--param", "results_dir=x"], "--param results_dir: set by aunet analyze itself"),
    (["{scaling}", "--timeout", "0"], "--timeout 0: must be a positive number of seconds"),
    (["{scaling}", "--param", "gain_at=[9e12, abc]"], "--param gain_at: element 'abc' is not a number"),
    (["{scaling}", "--param", "gain_at=[-1e12]"], "--param gain_at: element -1000000000000.0 must be a positive"),
    (["{scaling}", "--param", "noise_from={tmp}"], "no runs.csv in"),
    (["{scaling}", "--param", "coverage_studies=-1"], "--param coverage_studies=-1: must be at least 0"),
    (["{scaling}", "--param", "gain_at=[" + ", ".join(["1e12"] * 1001) + "]"],
     "--param gain_at: 1001 values, at most 1000"),
    (["{scaling}", "--param", "level=1.5"], "--param level=1.5: must be at most 0.999"),
    (["{scaling}", "--param", "chance_bytes=-1"], "--param chance_bytes=-1: must be at least 0"),
])
def test_analyze_user_errors_are_one_line_with_exit_2(args, message, scaling_results, tmp_path, capsys):
    argv = ["analyze", *(a.format(tmp=tmp_path, scaling=scaling_results) for a in args)]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and message in err


def test_numbers_in_parameters_are_numbers_however_they_are_written(scaling_results, tmp_path, monkeypatch):
    """YAML 1.1 reads 9e12 (no dot) as text: the list of gain budgets gets numbers anyway, a single one becomes a
    list, and a float parameter takes 1e0; a results folder is made absolute (the notebook runs elsewhere)."""
    from aunet.cli.analyze_cmd import parse_params

    monkeypatch.chdir(scaling_results.parent)
    params = parse_params(["gain_at=[9e12, 2.0e+13, 3E13]", "extrapolate_decades=1e0",
                           f"noise_from={scaling_results.name}"], ["scaling"])
    assert params == {"gain_at": [9e12, 2e13, 3e13], "extrapolate_decades": 1.0,
                      "noise_from": str(scaling_results.resolve())}
    assert parse_params(["gain_at=9e12"], ["scaling"])["gain_at"] == [9e12]
    assert parse_params(["noise_from="], ["scaling"])["noise_from"] == ""


def test_the_summary_shows_how_well_the_largest_budget_was_predicted(scaling_results):
    from aunet.analysis import tables
    from aunet.cli.analyze_cmd import family_summary

    fits = {"scaling": {"families": {}, "held_out": {
        "bpe": {"prediction": 1.85, "interval": [1.8, 1.9], "contains": True, "measured": 1.87},
        "aunet1": {"prediction": 2.0, "interval": [1.95, 2.05], "contains": False, "measured": 2.2}}}}
    rows, header = family_summary(tables.read_runs(scaling_results), fits)
    last = {row[0]: row[-1] for row in rows}
    assert header[-1].startswith("envelope there, from the others")
    assert last["bpe"] == "1.850 [1.800, 1.900]: holds 1.870" and last["aunet1"].endswith("misses 2.200")
    assert last["aunet2"] == "-"
