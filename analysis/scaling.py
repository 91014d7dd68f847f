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
# # Scaling: validation bits per byte against training compute
#
# For each family (BPE, AU-Net-1 to 4) this notebook finds its compute-optimal loss at every budget (the vertex of
# its isoFLOP valley when the sweep has several sizes per budget), fits $L(C) = E + A\,C^{-\alpha}$ through those
# points (robust fit in log space, 95% intervals), draws the curves a decade beyond the data, and asks how much
# compute BPE needs to match each AU-Net on these envelopes: the compute-equivalent gain. Horizontal lines mark
# reference levels on the same validation text (Kneser-Ney byte n-grams fitted on the bytes the largest run read, and
# the BPE tokenizer's unigram; see `aunet.analysis.reference`). Fitted parameters go
# to `fits.json` under `"scaling"`, figures to `plots/`.

# %% tags=["parameters"]
results_dir = "../results/scaling"  # a results/<sweep> folder holding runs.csv
output_dir = None  # where plots/ and fits.json are written; None: results_dir
n_boot = 200  # bootstrap resamples per fit
extrapolate_decades = 1.0  # how far beyond the largest budget the fitted curves are drawn
gain_at = []  # compute values (FLOPs) at which to report the gain besides the study's budgets, e.g. [9.0e+12]

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from aunet.analysis import FitError, compute_equivalent_gain_interval, fit_power_law
from aunet.analysis import plots, store, tables

output_dir = Path(output_dir or results_dir)
runs_all = tables.read_runs(results_dir)
runs = tables.finished(runs_all)
notes = []


def note(message):
    """Print why a section is skipped or approximated, and keep it for fits.json."""
    notes.append(message)
    print("note:", message)


print(f"{len(runs)} finished runs of {len(runs_all)} in {results_dir}")
print(pd.crosstab(runs_all["series"], runs_all["status"].replace("", "(none)")).to_string())

# %% [markdown]
# ## Points: each family at its own best size per budget
#
# With three or more sizes per budget (an isoFLOP grid), a family's point at a budget is the vertex of a parabola of
# its loss in log FLOPs per byte through its runs there (those of the sweep's base seed, which share one data order):
# its compute-optimal loss, with a 95% interval from the seed-to-seed noise measured on the sweep's repeated runs (a
# parametric bootstrap). Where the vertex lies outside
# the sampled sizes the optimum was not bracketed, and the best sampled size stands in (hollow marker: an upper
# bound on the optimal loss). With one size per budget (the naive protocol) the point is the best run there.
# Compute is the FLOPs each run spent (our formula, identical for both families).

# %%
from aunet.analysis.envelope import OK, envelope_points, fit_envelope, seed_noise

compute_col = tables.first_with_values(runs, "flops_spent", "planned_flops", "budget_flops")
budget_col = tables.first_with_values(runs, "budget_flops", "planned_flops", "flops_spent")
ready = compute_col is not None and tables.has_values(runs, compute_col, "val_bpb")
points = pd.DataFrame()
envelopes, noise = {}, {}
if not ready:
    note("no finished run has both val_bpb and a FLOPs column; the scaling fits are skipped")
else:
    if compute_col != "flops_spent":
        note(f"flops_spent is empty; {compute_col} is used as the compute of each run")
    scored = runs[runs[compute_col].notna() & runs["val_bpb"].notna()]
    # Repeats: runs of one series, budget and size that differ only in their seed.
    size_key = scored["flops_per_byte"].round(-1) if tables.has_values(scored, "flops_per_byte") else scored["run_id"]
    repeats = {s: [g["val_bpb"].to_numpy() for _, g in grp.groupby([budget_col, size_key[grp.index]])
                   if len(g) > 1] for s, grp in scored.groupby("series")}
    pooled = seed_noise([g for groups in repeats.values() for g in groups])
    for s, grp in scored.groupby("series"):
        sizes = grp.groupby(budget_col)["flops_per_byte"].nunique() if tables.has_values(grp, "flops_per_byte") \
            else pd.Series(dtype=float)
        complete = sizes.index[sizes >= 3]
        if len(complete):
            # A budget with fewer sizes (runs still to come, or failed) cannot place a vertex: it is left out of this
            # family's envelope instead of turning the whole family into single runs.
            partial = [f"{C:.2g}" for C in sizes.index if C not in set(complete)]
            if partial:
                note(f"{s}: fewer than 3 sizes at {', '.join(partial)}; left out of its envelope")
            grp = grp[grp[budget_col].isin(complete)]
            own = seed_noise(repeats.get(s, []))
            noise[s] = own if np.isfinite(own) else pooled
            if not np.isfinite(noise[s]):
                note(f"{s}: no repeated seeds in the sweep; its optima have no interval")
            # The valley is fitted on the sweep's base seed, whose runs share one data order across sizes; the
            # repeats of other seeds only measure the noise (mixed into one size they would tilt the parabola).
            base = grp[grp["seed"] == grp["seed"].mode().iloc[0]] if grp["seed"].notna().any() else grp
            envelopes[s] = envelope_points(base[budget_col], base["flops_per_byte"], base["val_bpb"], noise=noise[s],
                                           n_boot=n_boot)
    rows = []
    for s, env in envelopes.items():
        rows += [{"series": s, budget_col: p.C, compute_col: p.C, "val_bpb": p.L_star, "lo": p.L_interval[0],
                  "hi": p.L_interval[1], "status": p.status, "size_star": p.size_star} for p in env]
        flagged = [f"{p.C:.2g} ({p.status})" for p in env if p.status != OK]
        if flagged:
            note(f"{s}: optimum not bracketed at {', '.join(flagged)}; the best sampled size stands in")
    others = scored[~scored["series"].isin(list(envelopes))]
    if len(others):
        best = tables.best_per_budget(others, "val_bpb", budget_col).assign(status="single size")
        rows += best[["series", budget_col, compute_col, "val_bpb", "status"]].to_dict("records")
        left_out = len(others) - len(best)
        if left_out:
            note(f"{left_out} runs left out: another run of the same series, budget and seed has a lower val_bpb")
    points = pd.DataFrame(rows)
    if envelopes:
        print("seed noise (std of val bpb across seeds):",
              ", ".join(f"{s} {v:.4f}" for s, v in noise.items()), f"(pooled {pooled:.4f})")
series_list = tables.series_order(points["series"]) if ready and len(points) else []

# %% [markdown]
# ## Fits: $L(C) = E + A\,C^{-\alpha}$ per family
#
# Through each family's compute-optimal points (its envelope), or its single runs under the naive protocol. Four or
# more budgets: the full three-parameter law; three: $E$ is forced to 0 (a pure power law), as three parameters
# through three points would leave nothing to estimate an interval from. Fewer: no fit, the points are joined (two
# points determine a power law exactly, with no residual to judge it by). Envelope intervals refit the curve through
# every bootstrap draw of the optima; others resample the points.

# %%
fits = {}
for s in series_list:
    pts = points[points["series"] == s]
    n_budgets = pts[budget_col].nunique()
    if n_budgets < 3:
        # Two points fix both parameters of L = A C^-alpha: such a "fit" has no residual and no interval, and its
        # extrapolation would look as trustworthy as a real one. The points are drawn joined instead.
        note(f"{s}: runs at {n_budgets} budget(s); a fit needs 3 or more, points joined instead")
        continue
    irreducible = n_budgets >= 4
    if not irreducible:
        note(f"{s}: only {n_budgets} budgets; fitted with E = 0 (L = A C^-alpha)")
    try:
        if s in envelopes:
            fits[s] = fit_envelope(envelopes[s], irreducible=irreducible)
        else:
            fits[s] = fit_power_law(pts[compute_col], pts["val_bpb"], n_boot=n_boot, irreducible=irreducible)
    except FitError as exc:
        note(f"{s}: {exc}")
        continue
    n_params = 3 if irreducible else 2
    if len(pts) < 2 * n_params:
        # Resamples of a handful of points repeat the same few fits: the percentile interval comes out too narrow.
        note(f"{s}: {len(pts)} points for {n_params} parameters; its intervals understate the uncertainty")


def interval(fit, name, fmt="{:.3g}"):
    lo, hi = fit.intervals.get(name, (np.nan, np.nan))
    return f"{fmt.format(getattr(fit, name))} [{fmt.format(lo)}, {fmt.format(hi)}]"


summary = pd.DataFrame(
    [{"series": s, "points": f.n_points, "E (bpb)": interval(f, "E") if f.irreducible else "0 (fixed)",
      "A": f"{f.A:.3g}", "alpha": interval(f, "alpha"), "residual (log)": f"{f.residual_scale:.2g}"}
     for s, f in fits.items()]
)
print(summary.to_string(index=False) if len(summary) else "no fits")

# %%
if ready and len(points):
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    styles = plots.series_styles(series_list)
    for s in series_list:
        style = styles[s]
        if s in envelopes:  # every run of the grid, faint: the valley each optimum comes from (seeds included)
            grp = scored[scored["series"] == s]
            ax.scatter(grp[compute_col], grp["val_bpb"], color=style["color"], marker=style["marker"], s=10,
                       alpha=0.25, zorder=2)
        pts = points[points["series"] == s]
        solid = pts["status"].isin([OK, "single size"])
        ax.scatter(pts[compute_col][solid], pts["val_bpb"][solid], color=style["color"], marker=style["marker"],
                   s=30, zorder=4, label=style["label"] if s not in fits else None)
        ax.scatter(pts[compute_col][~solid], pts["val_bpb"][~solid], facecolors="none", edgecolors=style["color"],
                   marker=style["marker"], s=30, zorder=4)
        if "lo" in pts and pts["lo"].notna().any():
            ax.errorbar(pts[compute_col], pts["val_bpb"], yerr=[pts["val_bpb"] - pts["lo"], pts["hi"] - pts["val_bpb"]],
                        fmt="none", ecolor=style["color"], elinewidth=1, capsize=2, zorder=3)
        if s not in fits and pts[budget_col].nunique() > 1:
            means = pts.groupby(pts[budget_col].to_numpy())[["val_bpb"]].mean()
            ax.plot(means.index, means["val_bpb"], color=style["color"], linestyle=style["linestyle"], linewidth=1)
        if s in fits:
            fit = fits[s]
            lo_c, hi_c = fit.C_range
            grid = np.logspace(np.log10(lo_c), np.log10(hi_c) + extrapolate_decades, 200)
            inside = grid <= hi_c * 1.0001
            band_lo, band_hi = fit.predict_band(grid)
            plots.draw_band(ax, grid, band_lo, band_hi, style["color"])
            ax.plot(grid[inside], fit.predict(grid[inside]), color=style["color"], linestyle="-",
                    label=f"{style['label']}: α = {fit.alpha:.3f}" + ("" if fit.irreducible else " (E = 0)"))
            ax.plot(grid[~inside], fit.predict(grid[~inside]), color=style["color"], linestyle="--")
    ax.set_xscale("log")
    # Reference levels (written by `aunet analyze` before the notebooks run): what byte n-grams and BPE's token
    # unigram reach on the same validation text; a model below a line has learned more than those statistics.
    references = store.read_fits(output_dir).get("reference_levels")
    if references:
        plots.draw_reference_levels(ax, references)
    else:
        note("no reference_levels in fits.json (aunet analyze computes them when the corpus is available)")
    what = ("each family at its own best size (isoFLOP vertex) · bars: 95% seed noise\nfaint: every run of the "
            "grid · hollow: optimum not bracketed · dashed: extrapolated" if envelopes
            else "one size per budget · dashed: a decade of extrapolation")
    plots.finish_axes(ax, title="How does validation loss fall with compute?\n" + what,
                      xlabel="training compute C (FLOPs)", ylabel="validation loss (bits per byte)")
    plots.save_figure(fig, output_dir, "scaling_bpb_vs_flops")

# %% [markdown]
# ## IsoFLOP valleys: loss against model size at each budget
#
# One panel per budget: each family's runs (FLOPs per byte on the x axis; every size spends the whole budget) and
# the parabola whose vertex is its optimum. A family whose valley is still falling at the edge of its grid was not
# bracketed there.

# %%
if envelopes:
    budgets = sorted({p.C for env in envelopes.values() for p in env})
    fig, axes = plots.panel_grid(len(budgets), 4, (3.6, 3.2))
    styles = plots.series_styles(series_list)
    for ax, C in zip(axes, budgets):
        for s, env in envelopes.items():
            p = next((q for q in env if abs(q.C / C - 1) < 0.01), None)
            if p is None:
                continue
            style = styles[s]
            grp = scored[(scored["series"] == s) & ((scored[budget_col] / C - 1).abs() < 0.01)]
            ax.scatter(grp["flops_per_byte"], grp["val_bpb"], color=style["color"], marker=style["marker"], s=14,
                       label=style["label"])
            if np.isfinite(p.coeffs[2]):
                x = np.linspace(np.log(min(p.sizes)), np.log(max(p.sizes)), 50)
                c0, c1, c2 = p.coeffs
                ax.plot(np.exp(x), c0 + c1 * x + c2 * x**2, color=style["color"], linewidth=1)
            if p.status == OK:
                ax.scatter([p.size_star], [p.L_star], color=style["color"], marker="*", s=60, zorder=4)
        ax.set_xscale("log")
        plots.log_scale_si(ax, "x")
        plots.finish_axes(ax, title=f"C = {C:.2g} FLOPs", xlabel="FLOPs per byte (model size)",
                          ylabel="validation bpb", legend=ax is axes[0])
    fig.suptitle("IsoFLOP valleys: each family's runs at one budget, its parabola, and its optimum (★)")
    plots.save_figure(fig, output_dir, "isoflop_valleys")

# %% [markdown]
# ## Learning curves from the runs' `metrics.csv`

# %%
curves = tables.load_metrics(runs, results_dir) if len(runs) else pd.DataFrame()
if curves.empty or not (tables.has_values(curves, "val/bpb") and tables.has_values(curves, "train/flops_spent")):
    note("no run folder with val/bpb and train/flops_spent in metrics.csv; learning curves skipped")
else:
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    labelled = set()
    for run_id, metrics in curves.groupby("run_id", sort=False):
        series = metrics["series"].iloc[0]
        curve = tables.learning_curve(metrics)
        style = plots.series_styles(curves["series"])[series]
        ax.plot(curve["train/flops_spent"], curve["val/bpb"], color=style["color"], alpha=0.8, linewidth=1,
                label=style["label"] if series not in labelled else None)
        labelled.add(series)
    ax.set_xscale("log")
    plots.finish_axes(ax, title="Learning curves: validation loss during training",
                      xlabel="training compute so far (FLOPs)", ylabel="validation loss (bits per byte)")
    plots.save_figure(fig, output_dir, "learning_curves")
    print(f"{curves['run_id'].nunique()} runs with metrics.csv")

# %% [markdown]
# ## Compute-equivalent gain of each AU-Net over BPE
#
# At compute $C$, the gain $g$ solves $L_\mathrm{BPE}(g\,C) = L_\mathrm{AU\text{-}Net}(C)$: BPE needs $g$ times the
# compute to reach the AU-Net's loss ($g > 1$: the AU-Net is more compute-efficient). Where the AU-Net's loss is below
# BPE's fitted floor $E$, BPE never gets there (the band runs off the top). Intervals pair the two fits' bootstrap
# samples.

# %%
gains, gain_at_budgets = {}, {}
aunets = [s for s in fits if s != "bpe" and s.startswith("aunet")]
if "bpe" not in fits or not aunets:
    note("the gain needs a BPE fit and at least one AU-Net fit; skipped")
else:
    lo_c = min(fits[s].C_range[0] for s in ["bpe", *aunets])
    hi_c = max(fits[s].C_range[1] for s in ["bpe", *aunets])
    grid = np.logspace(np.log10(lo_c), np.log10(hi_c) + extrapolate_decades, 120)
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for s in aunets:
        g = compute_equivalent_gain_interval(fits[s], fits["bpe"], grid)
        gains[s] = g
        style = plots.series_styles(series_list)[s]
        inside = grid <= min(fits[s].C_range[1], fits["bpe"].C_range[1]) * 1.0001
        # An unreachable BPE loss makes the upper bound infinite: the band is cut at 1000x to keep the axis useful.
        plots.draw_band(ax, grid, g.lo, np.minimum(g.hi, 1e3), style["color"], alpha=0.12)
        ax.plot(grid[inside], g.gain[inside], color=style["color"], label=style["label"])
        ax.plot(grid[~inside], g.gain[~inside], color=style["color"], linestyle="--")
    ax.axhline(1.0, color="0.4", linewidth=1, linestyle=":", label="parity (g = 1)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    plots.finish_axes(ax, title="How much more compute does BPE need to match each AU-Net?\n"
                      "g > 1: the AU-Net is more compute-efficient · 95% bands · dashed: extrapolated",
                      xlabel="AU-Net training compute C (FLOPs)", ylabel="compute-equivalent gain g (×)")
    plots.save_figure(fig, output_dir, "compute_equivalent_gain")
    # The gain at the study's budgets (and at gain_at, to compare studies with other budgets at one compute), with
    # whether it is read off the fitted range of both curves or extrapolated.
    extra = list(gain_at) if isinstance(gain_at, (list, tuple)) else [gain_at]
    if not all(isinstance(c, (int, float)) and not isinstance(c, bool) and c > 0 for c in extra):
        raise ValueError(f"gain_at={gain_at!r}: expected a list of positive FLOPs values, e.g. [9.0e+12]")
    at = np.array(sorted({float(b) for b in points[budget_col].unique()} | {float(c) for c in extra}))
    gain_at_budgets, rows = {}, []
    for s in gains:
        at_g = compute_equivalent_gain_interval(fits[s], fits["bpe"], at)
        # Runs spend their budget within a few percent, so a budget at the edge counts as inside the fitted range.
        fitted = (max(fits[s].C_range[0], fits["bpe"].C_range[0]) * 0.95 <= at) & (
            at <= min(fits[s].C_range[1], fits["bpe"].C_range[1]) * 1.05)
        gain_at_budgets[s] = {"C": at, "gain": at_g.gain, "lo": at_g.lo, "hi": at_g.hi, "extrapolated": ~fitted}
        rows += [{"series": s, "C (FLOPs)": f"{c:.2g}", "gain": f"{v:.3g}", "95% interval": f"[{a:.3g}, {b:.3g}]",
                  "": "" if f else "extrapolated"} for c, v, a, b, f in zip(at, at_g.gain, at_g.lo, at_g.hi, fitted)]
    print(pd.DataFrame(rows).to_string(index=False))

# %% [markdown]
# ## Save the fits

# %%
largest = {}
for s in series_list:
    pts = points[points["series"] == s]
    top = pts[pts[budget_col] == pts[budget_col].max()]
    largest[s] = {"budget_flops": float(top[budget_col].iloc[0]), "val_bpb": float(top["val_bpb"].min())}
record = {
    "metric": "val_bpb",
    "compute": compute_col,
    "method": "isoflop envelope" if envelopes else "one size per budget",
    "envelopes": {s: [p.to_dict() for p in env] for s, env in envelopes.items()},
    "seed_noise": noise,
    "families": {s: {**f.to_dict(), "series": s, "largest_budget": largest.get(s)} for s, f in fits.items()},
    "gain_vs_bpe": {s: {"C": g.C[::6], "gain": g.gain[::6], "lo": g.lo[::6], "hi": g.hi[::6],
                        "unreachable": g.unreachable[::6]} for s, g in gains.items()},
    "gain_at": gain_at_budgets if gains else {},
    "notes": notes,
}
print("wrote", store.update_fits(output_dir, "scaling", record))
