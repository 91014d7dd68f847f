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
# # Multilingual: bits per byte per language, for each family
#
# `aunet eval RUN --suite multilingual` writes `multilingual.bpb.<name>` for the 1,000 parallel PUD sentences in 11
# languages (the same content in every language) and for held-out Chinese, Japanese and English text (`zh_gsd`,
# `ja_gsd`; samples of `zh_cmrc2018`, `ja_wikipedia_kyoto`, `gutenberg_en`). Here: each series' bits per byte per
# language at its largest budget, and the Chinese, Japanese and English texts against compute (do the families or
# split rules differ at equal compute?). Bits per byte compare families within a language; across languages UTF-8
# spends 1 to 3 bytes per character, so the bits of the same sentences (bpb x bytes) are the fair comparison there.

# %% tags=["parameters"]
results_dir = "../results/cjk-split"  # a results/<sweep> folder holding runs.csv
output_dir = None  # where plots/ and fits.json are written; None: results_dir

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from aunet.analysis import plots, store, tables

output_dir = Path(output_dir or results_dir)
runs = tables.finished(tables.read_runs(results_dir))
PREFIX = "multilingual.bpb."
PUD = ["en", "de", "fr", "es", "ru", "ar", "hi", "ko", "zh", "ja", "th"]  # Latin, Cyrillic, Arabic, Indic, CJK, Thai
CJK_TEXTS = ["zh_gsd", "ja_gsd", "zh_cmrc2018", "ja_wikipedia_kyoto", "zh", "ja", "en", "gutenberg_en"]
TITLES = {"zh_gsd": "Chinese, UD GSD (held out)", "ja_gsd": "Japanese, UD GSD (held out)",
          "zh_cmrc2018": "Chinese, CMRC 2018 sample", "ja_wikipedia_kyoto": "Japanese, Kyoto sample",
          "zh": "Chinese (Traditional), PUD", "ja": "Japanese, PUD", "en": "English news, PUD",
          "gutenberg_en": "English book (pg16)"}
columns = {c[len(PREFIX):]: c for c in runs.columns if str(c).startswith(PREFIX)}
runs = runs.assign(**{c: pd.to_numeric(runs[c], errors="coerce") for c in columns.values()})
present = [name for name, col in columns.items() if tables.has_values(runs, col)]
compute_col = tables.first_with_values(runs, "flops_spent", "planned_flops", "budget_flops")
budget_col = tables.first_with_values(runs, "budget_flops", "planned_flops", "flops_spent")
print(f"{len(runs)} finished runs; multilingual texts with scores: {', '.join(present) or 'none'}")
if not present:
    print("note: runs.csv has no multilingual.bpb.<lang> column with values; nothing to draw "
          "(run 'aunet eval RUN --suite multilingual' or 'aunet sweep eval SWEEP --tasks multilingual')")


def at_largest_budget(frame):
    """One row per series: the mean over seeds of the runs at that series' largest budget."""
    rows = []
    for s in tables.series_order(frame["series"]):
        part = frame[frame["series"] == s]
        if budget_col is not None and part[budget_col].notna().any():
            part = part[part[budget_col] == part[budget_col].max()]
        row = {"series": s, "budget": part[budget_col].max() if budget_col else float("nan")}
        row.update({name: part[columns[name]].mean() for name in present})
        rows.append(row)
    return pd.DataFrame(rows)


best = at_largest_budget(runs) if present else pd.DataFrame()
# Variants of one family keep its hue in shades, with their own markers, line styles and bar hatches.
styles = plots.series_styles(tables.series_order(runs["series"]))

# %% [markdown]
# ## Bits per byte per language (parallel sentences, each series at its largest budget)

# %%
languages = [lang for lang in PUD if lang in present]
if languages:
    series = list(best["series"])
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(languages) + 2), 3.8))
    x = np.arange(len(languages))
    for i, s in enumerate(series):
        style = styles[s]
        values = best.loc[best["series"] == s, languages].to_numpy(float)[0]
        ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, color=style["color"], hatch=style["hatch"],
               edgecolor="white", linewidth=0.5, label=style["label"])
    ax.set_xticks(x, languages)
    plots.finish_axes(ax, title="Bits per byte on the same 1,000 sentences in each language (lower is better)",
                      xlabel="language (PUD parallel sentences)", ylabel="bits per byte")
    plots.save_figure(fig, output_dir, "multilingual_bpb_by_language")
elif present:
    print("note: no PUD language has scores; the per-language chart is skipped")

# %% [markdown]
# ## Chinese, Japanese and English against compute

# %%
texts = [t for t in CJK_TEXTS if t in present]
if texts and compute_col:
    fig, axes = plots.panel_grid(len(texts), 4, (3.6, 3.2))
    for ax, name in zip(axes, texts):
        col = columns[name]
        for s in tables.series_order(runs["series"]):
            runs_s = runs[(runs["series"] == s) & runs[col].notna() & runs[compute_col].notna()]
            if runs_s.empty:
                continue
            # The line joins the mean over seeds at each budget; the faint points are the single runs (the spread
            # between seeds is the noise any difference must exceed).
            pts = runs_s.groupby(budget_col or compute_col, as_index=False)[[compute_col, col]].mean()
            pts = pts.sort_values(compute_col)
            style = styles[s]
            ax.plot(pts[compute_col], pts[col], color=style["color"], marker=style["marker"],
                    linestyle=style["linestyle"], markersize=4, label=style["label"])
            if len(runs_s) > len(pts):
                ax.scatter(runs_s[compute_col], runs_s[col], color=style["color"], marker=style["marker"], s=10,
                           alpha=0.35, linewidths=0)
        ax.set_xscale("log")
        plots.finish_axes(ax, title=TITLES.get(name, name), xlabel="training compute (FLOPs)", ylabel="bits per byte",
                          legend=ax is axes[0])
    fig.suptitle("At equal compute, which family or split rule models each language best?", fontsize=12)
    plots.save_figure(fig, output_dir, "multilingual_bpb_vs_flops")
elif texts:
    print("note: no FLOPs column with values; bits per byte against compute skipped")

# %% [markdown]
# ## Table: bits per byte at each series' largest budget

# %%
if len(best):
    shown = best.copy()
    shown["budget"] = shown["budget"].map(lambda v: f"{v:.2g}" if np.isfinite(v) else "-")
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    store.update_fits(output_dir, "multilingual", {
        "budget_column": budget_col,
        "at_largest_budget": {row["series"]: {name: row[name] for name in present} | {"budget": row["budget"]}
                              for row in best.to_dict("records")},
    })
