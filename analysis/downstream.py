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
# # Downstream: benchmark scores against compute and against validation loss
#
# Every evaluation column `<task>.<metric>` of `runs.csv` is drawn per family, with the headline metric of each
# task: length-normalised accuracy (`acc_norm`) for HellaSwag and ARC, accuracy (`acc`) for MMLU. Against compute,
# the plots ask whether a family's extra efficiency carries over to the benchmarks; against validation bits per
# byte, whether all families lie on one curve (then validation loss predicts downstream quality whatever the
# tokenization). The dotted line is chance for 4-way multiple choice (25%).

# %% tags=["parameters"]
results_dir = "../results/scaling"  # a results/<sweep> folder holding runs.csv
output_dir = None  # where plots/ are written; None: results_dir

# %%
from pathlib import Path

import pandas as pd

from aunet.analysis import plots, tables

output_dir = Path(output_dir or results_dir)
runs = tables.finished(tables.read_runs(results_dir))
CHANCE = 25.0  # percent: HellaSwag, ARC and MMLU are 4-way multiple choice
headline = tables.headline_scores(runs)
compute_col = tables.first_with_values(runs, "flops_spent", "planned_flops", "budget_flops")
print(f"{len(runs)} finished runs; scores: {', '.join(headline.values()) or 'none'}")
if not headline:
    print("note: runs.csv has no <task>.<metric> score with values; nothing to draw (run the evaluations first)")


def as_percent(values):
    """Scores in percent: lm-eval writes fractions, some tables percentages already (decided per column)."""
    return values * 100 if values.max() <= 1.0 else values


runs = runs.assign(**{col: as_percent(runs[col]) for col in headline.values()})


def score_grid(x_col, xlabel, title, name, log_x):
    """One panel per task, one colour per family; returns the path of the PNG or None."""
    data = runs[runs[x_col].notna()]
    tasks = [t for t, col in headline.items() if data[col].notna().any()]
    if not tasks:
        print(f"note: no run has both {x_col} and a score; '{name}' skipped")
        return None
    fig, axes = plots.panel_grid(len(tasks), 2, (5.2, 3.6))
    styles = plots.series_styles(data["series"])
    for ax, task in zip(axes, tasks):
        col = headline[task]
        for s in tables.series_order(data["series"]):
            pts = data[(data["series"] == s) & data[col].notna()].sort_values(x_col)
            style = styles[s]
            ax.plot(pts[x_col], pts[col], color=style["color"], marker=style["marker"],
                    linestyle=style["linestyle"], markersize=4, label=style["label"])
        ax.axhline(CHANCE, color="0.4", linestyle=":", linewidth=1, label="chance (25%)")
        ax.set_ylim(bottom=min(ax.get_ylim()[0], CHANCE - 5))  # keep chance in view
        if log_x:
            ax.set_xscale("log")
        else:
            ax.invert_xaxis()  # lower loss is better: better models to the right
        plots.finish_axes(ax, title=f"{task} ({col.split('.', 1)[1]})", xlabel=xlabel, ylabel="accuracy (%)",
                          legend=ax is axes[0])
    fig.suptitle(title, fontsize=12)
    return plots.save_figure(fig, output_dir, name)[0]


# %% [markdown]
# ## Scores against compute

# %%
if headline and compute_col:
    score_grid(compute_col, "training compute (FLOPs)",
               "Do benchmark scores rise with compute, and which family rises fastest?", "downstream_vs_flops", True)
elif headline:
    print("note: no FLOPs column with values; scores against compute skipped")

# %% [markdown]
# ## Scores against validation loss

# %%
if headline and tables.has_values(runs, "val_bpb"):
    score_grid("val_bpb", "validation loss (bits per byte, lower is better →)",
               "At equal validation loss, do the families score the same?", "downstream_vs_bpb", False)
elif headline:
    print("note: val_bpb is empty; scores against validation loss skipped")

# %% [markdown]
# ## Scores at each family's largest budget

# %%
if headline:
    budget_col = tables.first_with_values(runs, "budget_flops", "planned_flops", "flops_spent")
    rows = []
    for s in tables.series_order(runs["series"]):
        fam = runs[runs["series"] == s]
        if budget_col is not None and fam[budget_col].notna().any():
            fam = fam[fam[budget_col] == fam[budget_col].max()]
        row = {"series": s, "budget (FLOPs)": f"{fam[budget_col].max():.2g}" if budget_col else "-"}
        row.update({f"{col} (%)": f"{fam[col].mean():.1f}" for col in headline.values()})
        rows.append(row)
    print(pd.DataFrame(rows).to_string(index=False))
