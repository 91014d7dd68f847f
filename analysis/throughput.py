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
# # Throughput: bytes and FLOPs per second against model size
#
# Compute-matched comparisons count FLOPs; this notebook checks what those FLOPs cost in wall-clock time. For each
# family it draws the training throughput of every finished run against its parameter count: bytes of text per
# second (what a user pays for), FLOPs per second by our formula, and model FLOPs utilisation when the runs logged
# it. Points are runs; lines join the median of each size.

# %% tags=["parameters"]
results_dir = "../results/scaling"  # a results/<sweep> folder holding runs.csv
output_dir = None  # where plots/ are written; None: results_dir

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from aunet.analysis import plots, tables

output_dir = Path(output_dir or results_dir)
runs = tables.finished(tables.read_runs(results_dir))
size_col = tables.first_with_values(runs, "params", "non_embedding_params")
# (column, panel title, axis label, scale factor, log axis)
METRICS = [("bytes_per_s", "Bytes per second", "training throughput (bytes/s)", 1.0, True),
           ("flops_per_s", "FLOP/s", "training throughput (TFLOP/s, our formula)", 1e-12, False),
           ("mfu", "MFU", "model FLOPs utilisation (%)", 100.0, False)]
present = [m for m in METRICS if size_col and tables.has_values(runs, m[0], size_col)]
print(f"{len(runs)} finished runs; size column: {size_col}; throughput columns: {[m[0] for m in present] or 'none'}")
if size_col is None:
    print("note: params and non_embedding_params are empty; throughput against size skipped")
elif not present:
    print("note: no bytes_per_s, flops_per_s or mfu values; throughput skipped")

# %%
if present:
    fig, axes = plt.subplots(1, len(present), figsize=(5.0 * len(present), 4.2), squeeze=False)
    for ax, (col, title, label, scale, log_y) in zip(axes.flat, present):
        data = runs[runs[col].notna() & runs[size_col].notna()]
        for s in tables.series_order(data["series"]):
            style = plots.series_styles(data["series"])[s]
            pts = data[data["series"] == s]
            ax.scatter(pts[size_col], pts[col] * scale, color=style["color"], marker=style["marker"], s=18,
                       alpha=0.6)
            medians = pts.groupby(size_col)[col].median().sort_index()
            ax.plot(medians.index, medians.to_numpy() * scale, color=style["color"], linestyle=style["linestyle"],
                    marker=style["marker"], markersize=4, label=style["label"])
        plots.log_scale_si(ax, "x")
        if log_y:
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)  # utilisation and FLOP/s read best from zero
        size_label = "parameters" if size_col == "params" else "non-embedding parameters"
        plots.finish_axes(ax, title=f"{title} vs model size", xlabel=size_label, ylabel=label,
                          legend=ax is axes.flat[0])
    fig.suptitle("How fast does each family train at a given size?", fontsize=12)
    plots.save_figure(fig, output_dir, "throughput_vs_size")

# %%
if present:
    rows = []
    for s in tables.series_order(runs["series"]):
        pts = runs[(runs["series"] == s) & runs[size_col].notna()]
        if pts.empty:
            continue
        row = {"series": s, "runs": len(pts), "sizes": f"{pts[size_col].min():.3g} - {pts[size_col].max():.3g}"}
        for col, title, label, scale, _ in present:
            unit = {"bytes_per_s": "bytes/s", "flops_per_s": "TFLOP/s", "mfu": "%"}[col]
            row[f"{title} ({unit})"] = f"{pts[col].median() * scale:.3g}"
        rows.append(row)
    print("median over runs")
    print(pd.DataFrame(rows).to_string(index=False))
