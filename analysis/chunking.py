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
# # Chunking: where learned boundaries fall, and what they cost
#
# For the learned-chunking runs of a sweep (family `hnet`: the runs whose `runs.csv` row has `bytes_per_chunk_end_1`)
# this notebook asks, per chunking step:
#
# - **Compression.** Bytes per chunk over the last tenth of training against the target the run was planned with
#   (its `config.yaml`: the product of `target_ratios` up to that step).
# - **Words.** The share of learned chunk starts on a `word@1` byte (what AU-Net-2 pools: the space after a word,
#   punctuation, newlines) and on the byte after one (a chunk that begins with a word's first letter), against
#   chance: the share of such bytes in the training text, which is what a router blind to the text would get.
# - **Cost.** How far each run's realized FLOPs strayed from its plan (`flops_drift`: the deeper stages ran at the
#   realized chunk counts, padded to the batch's largest) and what stopped it.
#
# A family's mean carries a 95% t-interval over its runs (every budget, size and seed taken as draws of one family);
# the seed spread comes from the repeated seeds alone. Whether a router that finds words trains to a lower loss: the
# rank correlation of `word_next_share_end_1` and `val_bpb` among runs that differ only in their seed (both centred
# on their group's mean). Results go to `fits.json` under `"chunking"`, the figure to `plots/chunking_boundaries`.

# %% tags=["parameters"]
results_dir = "../results/scaling"  # a results/<sweep> folder holding runs.csv
output_dir = None  # where plots/ and fits.json are written; None: results_dir
chance_bytes = 4_000_000  # bytes of training text the chance levels are measured on (the largest run's); 0: skip
level = 0.95  # two-sided level of the intervals

# %%
import re
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from aunet.analysis import plots, store, tables
from aunet.analysis.boundaries import mean_interval, word_rates
from aunet.analysis.noise import pooled_variance
from aunet.analysis.reference import training_text
from aunet.errors import UserError
from aunet.training.config import load_recorded_config
from aunet.training.records import RunPaths

output_dir = Path(output_dir or results_dir)
runs = tables.finished(tables.read_runs(results_dir))
notes = []


def note(message):
    """Print why a section is skipped or approximated, and keep it for fits.json."""
    notes.append(message)
    print("note:", message)


def step_numbers(frame):
    """The chunking steps the table logged: n of every bytes_per_chunk_end_<n> column with a value."""
    found = [re.fullmatch(r"bytes_per_chunk_end_(\d+)", c) for c in frame.columns]
    return sorted(int(m.group(1)) for m in found if m and frame[m.group(0)].notna().any())


steps = step_numbers(runs)
learned = runs[runs["bytes_per_chunk_end_1"].notna()] if 1 in steps else runs.iloc[0:0]
series_list = tables.series_order(learned["series"]) if len(learned) else []
print(f"{len(runs)} finished runs; {len(learned)} with learned chunk boundaries "
      f"({', '.join(series_list) or 'none'}); chunking steps logged: {steps or 'none'}")
if not len(learned):
    note("no finished run has bytes_per_chunk_end_1 (learned chunking); nothing to analyze")

# %% [markdown]
# ## Targets and chance levels
#
# The target of each run comes from its recorded config; chance is measured on the first `chance_bytes` bytes of the
# training stream of the largest learned-chunking run (its corpus checked against the run's record).

# %%
def planned_bytes_per_chunk(row):
    """Bytes per chunk the run was planned for at each chunking step (product of its target ratios), or None."""
    folder = tables.resolve_run_dir(row.run_dir, results_dir) if isinstance(row.run_dir, str) else None
    if folder is None or not RunPaths(folder).config.is_file():
        return None
    ratios = getattr(load_recorded_config(RunPaths(folder).config).model, "target_ratios", None)
    return list(np.cumprod(ratios)) if ratios else None


targets = {}
if len(learned):
    for row in learned.itertuples(index=False):
        planned = planned_bytes_per_chunk(row)
        if planned is not None:
            targets.setdefault(row.series, set()).add(tuple(round(float(t), 6) for t in planned))
    missing = [s for s in series_list if s not in targets]
    if missing:
        note(f"no config.yaml for the runs of {', '.join(missing)}: their targets are left out")
    mixed = [s for s, t in targets.items() if len(t) > 1]
    if mixed:
        note(f"{', '.join(mixed)}: runs planned with different targets; the first is drawn")
targets = {s: list(sorted(t)[0]) for s, t in targets.items()}

chance = None
if len(learned) and chance_bytes > 0:
    try:
        text = training_text(results_dir, learned, n_bytes=int(chance_bytes))
        chance = word_rates(text)
        print(f"chance on {chance.n_bytes:,} bytes of training text: {chance.start:.3f} of bytes are word@1 "
              f"({chance.bytes_per_unit:.2f} bytes per word), {chance.next:.3f} follow one")
    except (UserError, ValueError) as exc:
        note(f"chance levels skipped: {exc}")
elif len(learned):
    note("chance levels skipped (chance_bytes = 0)")

# %% [markdown]
# ## Per family and chunking step
#
# Means over the last tenth of each run, with their intervals; `seed sd` is the pooled spread of runs that differ
# only in their seed; `above chance` counts the runs whose share beats chance.

# %%
GROUP = ["series", "budget_flops", "flops_per_byte"]


def seed_sd(frame, column):
    """Pooled standard deviation of ``column`` over groups of runs that differ only in their seed (and its dof)."""
    keys = [k for k in GROUP if k in frame.columns and frame[k].notna().all()]
    groups = [g[column].to_numpy(float) for _, g in frame.groupby(keys)] if keys else []
    var, dof = pooled_variance(groups)
    return float(np.sqrt(var)), dof


def summarise(values):
    """A mean with its interval, as a dict (None when no value is finite)."""
    values = pd.to_numeric(values, errors="coerce").to_numpy(float)
    return mean_interval(values, level).to_dict() if np.isfinite(values).any() else None


def cell(entry):
    """``mean [lo, hi]`` of a :func:`summarise` dict, or "-"."""
    return "-" if not entry else f"{entry['mean']:.3f} [{entry['lo']:.3f}, {entry['hi']:.3f}]"


per_series, rows = {}, []
for s in series_list:
    mine = learned[learned["series"] == s]
    record = {"runs": len(mine), "steps": {}}
    for n in steps:
        if not mine.get(f"bytes_per_chunk_end_{n}", pd.Series(dtype=float)).notna().any():
            continue
        entry = {"bytes_per_chunk_end": summarise(mine[f"bytes_per_chunk_end_{n}"]),
                 "target_bytes_per_chunk": targets[s][n - 1] if s in targets and n <= len(targets[s]) else None}
        for col in ("word_start_share_end", "word_next_share_end", "word_recall_end", "truncated"):
            if f"{col}_{n}" in mine.columns:
                entry[col] = summarise(mine[f"{col}_{n}"])
        sd, dof = seed_sd(mine, f"word_next_share_end_{n}") if f"word_next_share_end_{n}" in mine else (np.nan, 0)
        entry["word_next_share_seed_sd"] = {"sd": sd, "dof": dof}
        if chance is not None:
            for col, base in (("word_start_share_end", chance.start), ("word_next_share_end", chance.next)):
                values = mine.get(f"{col}_{n}", pd.Series(dtype=float)).dropna()
                entry[f"{col}_above_chance"] = {"runs": int((values > base).sum()), "of": int(len(values))}
            if n == 1 and f"word_next_share_end_{n}" in mine.columns:
                # Of the words, how many begin a chunk: chunks per byte x share of them at a word's first letter,
                # over words per byte (chance.next). Estimated: the shares are of the training batches, words per
                # byte of the chance text, and bytes per chunk counts the forced starts too.
                entry["word_start_recall_estimate"] = summarise(
                    mine[f"word_next_share_end_{n}"] / mine[f"bytes_per_chunk_end_{n}"] / chance.next)
        by_budget = {}
        if f"word_next_share_end_{n}" in mine.columns:
            for C, grp in mine.groupby("budget_flops"):
                by_budget[f"{C:.2g}"] = {"word_next_share_end": summarise(grp[f"word_next_share_end_{n}"]),
                                         "bytes_per_chunk_end": summarise(grp[f"bytes_per_chunk_end_{n}"])}
        entry["by_budget"] = by_budget
        record["steps"][n] = entry
        rows.append({"series": s, "step": n, "runs": len(mine),
                     "bytes/chunk (end)": cell(entry["bytes_per_chunk_end"]),
                     "target": "-" if entry["target_bytes_per_chunk"] is None else
                     f"{entry['target_bytes_per_chunk']:.2f}",
                     "word@1 share": cell(entry.get("word_start_share_end")),
                     "next-byte share": cell(entry.get("word_next_share_end")),
                     "seed sd (dof)": f"{sd:.3f} ({dof})" if dof else "-",
                     "above chance": "-" if chance is None else
                     f"{entry['word_next_share_end_above_chance']['runs']}/"
                     f"{entry['word_next_share_end_above_chance']['of']}"})
    if "flops_drift" in mine.columns and mine["flops_drift"].notna().any():
        drift = mine["flops_drift"].astype(float)
        record["cost"] = {"flops_drift": summarise(drift), "min": float(drift.min()), "max": float(drift.max()),
                          "stopped_by": mine.get("stopped_by", pd.Series(dtype=str)).fillna("").astype(str)
                          .value_counts().to_dict()}
    per_series[s] = record
if rows:
    if chance is not None:
        print(f"chance: word@1 share {chance.start:.3f}, next-byte share {chance.next:.3f}")
    print(pd.DataFrame(rows).to_string(index=False))
    print("\nper budget, step 1: next-byte share and bytes per chunk (mean [95%], runs)")
    print(pd.DataFrame({s: {C: f"{v['word_next_share_end']['mean']:.2f} [{v['word_next_share_end']['lo']:.2f}, "
                              f"{v['word_next_share_end']['hi']:.2f}] / {v['bytes_per_chunk_end']['mean']:.2f} "
                              f"({v['word_next_share_end']['n']})"
                           for C, v in r["steps"][1]["by_budget"].items()}
                        for s, r in per_series.items() if 1 in r["steps"]}).T.to_string())
    for s, r in per_series.items():
        recall = r["steps"].get(1, {}).get("word_start_recall_estimate")
        if recall:
            print(f"{s}: words that begin a chunk (estimated) {recall['mean']:.2f} [{recall['lo']:.2f}, "
                  f"{recall['hi']:.2f}]")
for s, record in per_series.items():
    cost = record.get("cost")
    if cost:
        d = cost["flops_drift"]
        print(f"{s}: realized FLOPs over planned {d['mean']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}] "
              f"(runs from {cost['min']:+.3f} to {cost['max']:+.3f}); stopped by {cost['stopped_by']}")

# %% [markdown]
# ## Does finding words go with a lower loss?
#
# Among runs that differ only in their seed, each centred on its group's mean: Spearman's rank correlation of the
# next-byte share (chunks beginning with a word's first letter) and validation bits per byte. A negative value: the
# seeds whose routers found words trained to a lower loss.

# %%
loss_vs_words = {}
if len(learned) and "word_next_share_end_1" in learned.columns:
    keys = [k for k in GROUP if k in learned.columns and learned[k].notna().all()]
    frame = learned[learned["word_next_share_end_1"].notna() & learned["val_bpb"].notna()]
    sizes = frame.groupby(keys)["val_bpb"].transform("size") if keys else pd.Series(0, index=frame.index)
    repeated = frame[sizes >= 2]
    if len(repeated) >= 4:
        centred = repeated.groupby(keys)[["word_next_share_end_1", "val_bpb"]].transform(lambda v: v - v.mean())
        rho, p = stats.spearmanr(centred["word_next_share_end_1"], centred["val_bpb"])
        loss_vs_words = {"rho": float(rho), "p": float(p), "runs": int(len(repeated)),
                         "groups": int(repeated.groupby(keys).ngroups)}
        print(f"Spearman rho {rho:+.2f} (p = {p:.2f}) over {len(repeated)} runs in {loss_vs_words['groups']} "
              "groups of repeated seeds")
    else:
        note("fewer than 4 runs with repeated seeds: the loss against word alignment is not measured")

# %% [markdown]
# ## Plot: compression, words and cost against compute

# %%
if len(learned):
    compute_col = tables.first_with_values(learned, "flops_spent", "budget_flops")
    styles = plots.series_styles(learned["series"])
    fig, axes = plots.panel_grid(4, 2, (5.2, 3.8))
    panels = [("bytes_per_chunk_end", "Bytes per chunk (last tenth)", "bytes per chunk"),
              ("word_next_share_end", "Chunks that begin a word", "share of learned starts after a word@1 byte"),
              ("word_start_share_end", "Chunks that start on a word@1 byte", "share of learned starts on one"),
              ("flops_drift", "Realized cost against the plan", "realized / planned FLOPs - 1")]
    markers = {1: "o", 2: "s", 3: "^"}
    for ax, (col, title, label) in zip(axes, panels):
        for s in series_list:
            mine = learned[learned["series"] == s]
            for n in (steps if col != "flops_drift" else [None]):
                name = col if n is None else f"{col}_{n}"
                if name not in mine.columns or not mine[name].notna().any():
                    continue
                pts = mine[mine[name].notna()]
                tag = styles[s]["label"] + ("" if n is None else f", step {n}")
                ax.scatter(pts[compute_col], pts[name], color=styles[s]["color"], marker=markers.get(n, "o"),
                           s=22, alpha=0.55, label=tag)
                means = pts.groupby("budget_flops")[[compute_col, name]].mean().sort_index()
                ax.plot(means[compute_col], means[name], color=styles[s]["color"], alpha=0.8,
                        linestyle="-" if n in (None, 1) else "--")
                if col == "bytes_per_chunk_end" and s in targets and n <= len(targets[s]):
                    ax.axhline(targets[s][n - 1], color=styles[s]["color"], linestyle=":", linewidth=1)
        if chance is not None and col in ("word_next_share_end", "word_start_share_end"):
            base = chance.next if col == "word_next_share_end" else chance.start
            ax.axhline(base, color="black", linestyle=":", linewidth=1.2, label=f"chance ({base:.2f})")
        if col == "flops_drift":
            ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xscale("log")
        plots.log_scale_si(ax)
        plots.finish_axes(ax, title=title, xlabel="training compute (FLOPs)", ylabel=label)
    print("saved", *plots.save_figure(fig, output_dir, "chunking_boundaries"))

# %% [markdown]
# ## Save

# %%
if len(learned):
    record = {"series": per_series, "chance": chance.to_dict() if chance is not None else None,
              "loss_vs_words": loss_vs_words, "level": level, "notes": notes}
    print("wrote", store.update_fits(output_dir, "chunking", record))
