# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Hyperparameters: the best learning rate and batch size at each compute budget
#
# The AU-Net paper's protocol: at each budget keep the runs whose validation loss is within 1% (relative) of that
# budget's best, then fit $\mathrm{value} = k\,C^{a}$ by least squares in log-log space on all kept runs. Our laws
# are drawn next to the paper's: AU-Net batch $= 0.66\,C^{0.321}$ bytes and LR $= 6.6\,C^{-0.176}$; BPE batch
# $= 29.9\,C^{0.231}$ tokens (converted to bytes with the table's bytes per token) and LR $= 19.3\,C^{-0.177}$.
# A table with one run per budget (a scaling sweep that used fixed laws) shows its choices against the paper's,
# without a fit. The laws go to `fits.json` under `"hyperparameters"`.

# %% tags=["parameters"]
results_dir = "../results/tuning"  # a results/<sweep> folder holding runs.csv
output_dir = None  # where plots/ and fits.json are written; None: results_dir
tolerance = 0.01  # keep runs within this relative distance of each budget's best validation loss
n_boot = 200  # bootstrap resamples per law

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from aunet.analysis import FitError, fit_hyperparameter_law
from aunet.analysis import plots, store, tables

output_dir = Path(output_dir or results_dir)
runs = tables.finished(tables.read_runs(results_dir))
notes = []


def note(message):
    notes.append(message)
    print("note:", message)


# (k, a) of the paper's laws, value = k * C^a; the BPE batch law is in tokens per step.
PAPER = {"aunet": {"lr": (6.6, -0.176), "batch_bytes": (0.66, 0.321)},
         "bpe": {"lr": (19.3, -0.177), "batch_tokens": (29.9, 0.231)}}
HYPERPARAMETERS = {"lr": "peak learning rate", "batch_bytes": "batch size (bytes per step)"}

budget_col = tables.first_with_values(runs, "budget_flops", "planned_flops", "flops_spent")
bpe_rows = runs[runs["family"] == "bpe"]
bytes_per_token = float(bpe_rows["bytes_per_token"].median()) if bpe_rows["bytes_per_token"].notna().any() else None


def paper_law(family, hp):
    """The paper's (k, a) for one family and hyperparameter in our units (batch in bytes), or None."""
    if family == "bpe":
        if hp == "batch_bytes":
            if bytes_per_token is None:
                return None
            k, a = PAPER["bpe"]["batch_tokens"]
            return k * bytes_per_token, a
        return PAPER["bpe"].get(hp)
    return PAPER["aunet"].get(hp) if family.startswith("aunet") else None


available = [hp for hp in HYPERPARAMETERS if budget_col and tables.has_values(runs, hp, "val_bpb", budget_col)]
print(f"{len(runs)} finished runs; budget column: {budget_col}; hyperparameters with values: {available or 'none'}")
if not available:
    note("no finished run has val_bpb, a budget and lr or batch_bytes; nothing to fit or draw")
if bytes_per_token is None and (runs["family"] == "bpe").any():
    note("bytes_per_token is empty for BPE; the paper's BPE batch law (in tokens) is not drawn")

# %% [markdown]
# ## Fits on the near-best runs

# %%
fits = {}
per_budget = 0
if available:
    # Distinct hyperparameter settings per budget (seeds of one setting do not count): with one, every run would
    # count as the best and a fitted law would only restate the sweep's own choices.
    done = runs[runs["val_bpb"].notna()]
    per_budget = int(done.groupby(["series", budget_col])[available].nunique().max().max())
    if per_budget < 2:
        note("one learning rate and batch per budget: a fitted law would only restate the sweep's own choices; no "
             "law is fitted (a tuning sweep with several settings per budget is needed)")
# A hyperparameter held fixed within every budget (the batch of an LR-only grid) has no optimum to fit.
varied = [hp for hp in available if per_budget >= 2
          and int(runs[runs["val_bpb"].notna()].groupby(["series", budget_col])[hp].nunique().max()) >= 2]
for s in tables.series_order(runs["series"]) if per_budget >= 2 else []:
    rows = runs[(runs["series"] == s) & runs["val_bpb"].notna()]
    for hp in varied:
        try:
            fits[(s, hp)] = fit_hyperparameter_law(rows[budget_col], rows[hp], rows["val_bpb"],
                                                   tolerance=tolerance, n_boot=n_boot)
        except FitError as exc:
            note(f"{s} {hp}: {exc}")

table = []
for (s, hp), fit in fits.items():
    paper = paper_law(s.partition("/")[0], hp)
    table.append({"series": s, "hyperparameter": hp, "kept/runs": f"{fit.n_points}/{fit.n_runs}",
                  "k": f"{fit.k:.3g}", "a": f"{fit.a:.3f} [{fit.intervals['a'][0]:.3f}, {fit.intervals['a'][1]:.3f}]",
                  "paper k": f"{paper[0]:.3g}" if paper else "-", "paper a": f"{paper[1]:.3f}" if paper else "-"})
print(pd.DataFrame(table).to_string(index=False) if table else "no fitted laws")

# %% [markdown]
# ## Loss against learning rate at each budget
#
# Where a family was trained at three or more learning rates per budget (an LR grid), the vertex of a parabola of
# its loss in log LR, through the best grid point and up to two neighbours on each side, is its optimum there; the
# parabola's curvature says how much a factor-2 error in the LR costs. `aunet sweep tune` with `fit: parabola` fits
# its per-family LR law through these vertices.

# %%
from aunet.analysis.hyperparameters import VALLEY_OK, lr_valley

valleys = {}
if "lr" in available:
    for s in tables.series_order(runs["series"]):
        rows = runs[(runs["series"] == s) & runs["val_bpb"].notna() & runs["lr"].notna()]
        groups = list(rows.groupby(budget_col)) if len(rows) else []
        if groups and min(g["lr"].nunique() for _, g in groups) >= 3:
            valleys[s] = [(C, g, lr_valley(C, g["lr"], g["val_bpb"], n_boot=n_boot)) for C, g in groups]
if valleys:
    fig, axes = plots.panel_grid(len(valleys), 3, (4.6, 3.6))
    styles = plots.series_styles(list(valleys))
    table = []
    for ax, (s, entries) in zip(axes, valleys.items()):
        shades = plt.cm.viridis(np.linspace(0.15, 0.8, len(entries)))
        for color, (C, g, v) in zip(shades, entries):
            ax.scatter(g["lr"], g["val_bpb"], color=color, s=16, zorder=3)
            if v.status == VALLEY_OK:
                c0, c1, c2 = v.coeffs
                x = np.linspace(np.log(g["lr"].min()), np.log(g["lr"].max()), 80)
                y = c0 + c1 * x + c2 * x**2
                near = y <= v.loss_star + 4 * v.cost_2x  # the parabola only around the points it was fitted to
                ax.plot(np.exp(x[near]), y[near], color=color, linewidth=1)
                ax.scatter([v.lr_star], [v.loss_star], color=color, marker="*", s=70, zorder=4,
                           label=f"C = {C:.2g}: LR* {v.lr_star:.2g}, 2x off costs {v.cost_2x:.3f}")
            else:
                ax.plot(g.sort_values("lr")["lr"], g.sort_values("lr")["val_bpb"], color=color, linewidth=1,
                        label=f"C = {C:.2g}: {v.status.replace('_', ' ')}")
            table.append({"series": s, "budget": f"{C:.2g}", "best grid LR": f"{v.best_lr:.3g}",
                          "LR* [95%]": f"{v.lr_star:.3g} [{v.interval[0]:.3g}, {v.interval[1]:.3g}]",
                          "loss at LR*": f"{v.loss_star:.4f}", "2x LR error costs (bpb)": f"{v.cost_2x:.4f}",
                          "status": v.status})
        plots.log_scale_plain(ax, "x")
        plots.finish_axes(ax, title=f"{styles[s]['label']}: loss against learning rate",
                          xlabel="peak learning rate", ylabel="validation bpb")
    fig.suptitle("Learning-rate valleys per family and budget (★: parabola vertex)")
    plots.save_figure(fig, output_dir, "lr_valleys")
    print(pd.DataFrame(table).to_string(index=False))

# %% [markdown]
# ## Our laws against the paper's

# %%
if available:
    fig, axes = plt.subplots(1, len(available), figsize=(6.2 * len(available), 4.6), squeeze=False)
    for ax, hp in zip(axes.flat, available):
        data = runs[runs[hp].notna() & runs["val_bpb"].notna()]
        c_lo, c_hi = data[budget_col].min(), data[budget_col].max()
        grid = np.logspace(np.log10(c_lo) - 0.1, np.log10(c_hi) + 0.1, 100)
        for s in tables.series_order(data["series"]):
            style = plots.series_styles(data["series"])[s]
            rows = runs[(runs["series"] == s) & runs["val_bpb"].notna()]  # the rows the fit was given
            has_value = rows[hp].notna().to_numpy()
            pts = rows[has_value]
            fit = fits.get((s, hp))
            kept = fit.kept[has_value] if fit is not None else np.ones(len(pts), dtype=bool)
            # Every run faintly; the runs that enter the fit (all of them without a fit) solid.
            ax.scatter(pts[budget_col], pts[hp], color=style["color"], alpha=0.25, s=14, marker=style["marker"])
            ax.scatter(pts[budget_col][kept], pts[hp][kept], color=style["color"], s=30, marker=style["marker"],
                       label=f"{style['label']}: near-best runs" if fit is not None else f"{style['label']}: runs")
            if fit is not None:
                lo, hi = fit.predict_band(grid)
                plots.draw_band(ax, grid, lo, hi, style["color"])
                ax.plot(grid, fit.predict(grid), color=style["color"],
                        label=f"{style['label']}: ours, {fit.k:.3g}·C^{fit.a:.3f}")
            paper = paper_law(s.partition("/")[0], hp)
            if paper is not None:
                ax.plot(grid, paper[0] * grid ** paper[1], color=style["color"], linestyle="--", linewidth=1,
                        label=f"{style['label']}: paper, {paper[0]:.3g}·C^{paper[1]:.3f}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        question = "learning rate" if hp == "lr" else "batch size"
        plots.finish_axes(ax, title=f"Which {question} is best at each compute budget?\n"
                          f"solid: fit on runs within {tolerance:.0%} of the best, dashed: paper",
                          xlabel="compute budget C (FLOPs)", ylabel=HYPERPARAMETERS[hp])
    plots.save_figure(fig, output_dir, "hyperparameters_vs_flops")

# %% [markdown]
# ## Laws the runs used
#
# A sweep that takes its hyperparameters from a fitted-law file (`hparams: {family: {law: FILE}}`, written by
# `aunet sweep tune`) names the file in each run's `hparams_source`. Its laws are copied here, per family, so that
# `fits.json` says where every run's learning rate and batch came from.

# %%
import json


def law_file(path):
    """The law file a run names: absolute, or relative to the working directory or to the repository (two levels
    above results/<sweep>)."""
    repo = Path(results_dir).resolve().parents[1]
    candidates = [Path(path)] if Path(path).is_absolute() else [Path(path), repo / path]
    return next((c for c in candidates if c.is_file()), None)


laws_used = {}
has_sources = "hparams_source" in runs.columns
sources = runs["hparams_source"].dropna().astype(str) if has_sources else pd.Series([], dtype=str)
for source in sorted(sources[sources.str.startswith("fitted:")].unique()):
    path = source.partition(":")[2]
    found = law_file(path)
    if found is None:
        note(f"{path}: the law file the runs name is not here; its laws are not copied")
        continue
    data = json.loads(found.read_text())
    for family in sorted(set(runs.loc[runs["hparams_source"] == source, "family"])):
        entry = data.get(family) if isinstance(data, dict) else None
        if not isinstance(entry, dict):
            note(f"{path}: no laws for {family}")
            continue
        laws_used[family] = {"source": path}
        for hp in HYPERPARAMETERS:
            if isinstance(entry.get(hp), dict):
                law = entry[hp]
                laws_used[family][hp] = {"coefficient": law["coefficient"], "exponent": law["exponent"],
                                         "exponent_interval": law.get("fit", {}).get("intervals", {}).get("a")}
print(pd.DataFrame([{"family": f, "source": u["source"],
                     **{f"{hp} = k C^a": f"{u[hp]['coefficient']:.3g} C^{u[hp]['exponent']:.3f}"
                        for hp in HYPERPARAMETERS if hp in u}} for f, u in laws_used.items()]).to_string(index=False)
      if laws_used else "no run took its hyperparameters from a fitted-law file")

# %% [markdown]
# ## Save the laws

# %%
laws = {}
for (s, hp), fit in fits.items():
    laws.setdefault(s, {})[hp] = fit.to_dict()
paper_ours = {f: {hp: paper_law(f, hp) for hp in HYPERPARAMETERS} for f in ("bpe", "aunet")}
record = {"tolerance": tolerance, "budget": budget_col, "laws": laws, "laws_used": laws_used,
          "runs_per_budget": per_budget,
          "lr_valleys": {s: [v.to_dict() for _, _, v in entries] for s, entries in valleys.items()},
          "paper": paper_ours, "bytes_per_token": bytes_per_token, "notes": notes}
print("wrote", store.update_fits(output_dir, "hyperparameters", record))
