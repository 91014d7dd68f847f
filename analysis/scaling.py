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
n_boot = 1000  # bootstrap draws per fit (the exponent's and the gain's upper tails are long: many draws steady their bounds)
extrapolate_decades = 1.0  # how far beyond the largest budget the fitted curves are drawn
gain_at = []  # compute values (FLOPs) at which to report the gain besides the study's budgets, e.g. [9.0e+12]
noise_per_budget = True  # seed noise of each budget that repeated seeds (pooled at the others); False: pooled everywhere
noise_from = ""  # a results/<sweep> folder whose repeats give the noise of series without their own (same family)
coverage_studies = 50  # synthetic studies like this one whose intervals are checked against known truths; 0: skip

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
# its compute-optimal loss, with a 95% interval from a parametric bootstrap: every run redrawn with the seed noise,
# the same estimator applied to each redraw, and the interval bias-corrected (a minimum of a noisy valley falls below
# the truth, and its redraws below it again). The noise is measured per budget where the sweep repeated runs with other
# seeds, and at a budget without repeats it is the pool of the budgets that have them (the table says which); its
# own uncertainty (a spread from 3 seeds has 2 degrees of freedom) widens the intervals as Student's t does. A series
# without repeats takes the noise of the same family in `noise_from`, else the pool of this sweep's series. Where the
# vertex lies outside the sampled sizes the optimum was not bracketed, and the best sampled size stands in (hollow
# marker: an upper bound on the optimal loss). With one size per budget (the naive protocol) the point is the best run
# there. Compute is the FLOPs each run spent (our formula, identical for both families).

# %%
import zlib
from dataclasses import replace

from aunet.analysis.envelope import OK, family_envelope, family_noise, fit_envelope, held_out_prediction
from aunet.analysis.noise import NoiseModel, noise_model, repeat_groups

compute_col = tables.first_with_values(runs, "flops_spent", "planned_flops", "budget_flops")
budget_col = tables.first_with_values(runs, "budget_flops", "planned_flops", "flops_spent")
ready = compute_col is not None and tables.has_values(runs, compute_col, "val_bpb")
points = pd.DataFrame()
envelopes, noise, noise_models = {}, {}, {}


def repeats_model(frame, origin=""):
    """The seed-noise model of a table's runs (repeats: one budget and size, several seeds)."""
    if not tables.has_values(frame, "flops_per_byte"):
        return NoiseModel(origin=origin)  # no sizes: repeats cannot be told from a grid
    model = family_noise(frame[budget_col], frame["flops_per_byte"], frame["val_bpb"], per_budget=noise_per_budget)
    return replace(model, origin=origin) if origin else model


borrowed = {}  # family -> the noise model of its plain series in noise_from
if noise_from:
    other = tables.finished(tables.read_runs(noise_from))
    other = other[other["val_bpb"].notna() & (other["series"] == other["family"])]
    for family, grp in other.groupby("family"):
        model = repeats_model(grp, origin=f"{noise_from} {family}")
        if model.budgets:
            borrowed[family] = model
    print(f"noise borrowed from {noise_from}:", ", ".join(borrowed) or "none (no repeated seeds there)")
if not ready:
    note("no finished run has both val_bpb and a FLOPs column; the scaling fits are skipped")
else:
    if compute_col != "flops_spent":
        note(f"flops_spent is empty; {compute_col} is used as the compute of each run")
    scored = runs[runs[compute_col].notna() & runs["val_bpb"].notna()]
    # The fallback of a series without repeats (and without noise_from): every series' repeats, pooled.
    all_groups = repeat_groups(scored[budget_col], scored["flops_per_byte"], scored["val_bpb"]) \
        if tables.has_values(scored, "flops_per_byte") else (np.empty(0), [])
    pooled_all = noise_model(*all_groups, per_budget=False, origin="every series of this sweep, pooled")
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
            model = repeats_model(grp)
            if not model.budgets:
                family = grp["family"].iloc[0]
                model = borrowed.get(family, pooled_all)
                if model.budgets or np.isfinite(model.pooled_sd):
                    note(f"{s}: no repeated seeds of its own; its noise is that of {model.origin}")
            noise_models[s] = model
            noise[s] = model.pooled_sd
            grp = grp[grp[budget_col].isin(complete)]
            # Each series draws its own noise (a seed from its name): the gain and the variants' differences pair
            # sample i of one series with sample i of another, which is a draw from the joint only if the two are
            # independent. One seed for all gave every series the same normal draws, and those differences almost
            # no spread.
            envelopes[s] = family_envelope(grp[budget_col], grp["flops_per_byte"], grp["seed"], grp["val_bpb"],
                                           noise=model, n_boot=n_boot, seed=zlib.crc32(s.encode()))
            if all(p.noise.source == "none" for p in envelopes[s]):
                note(f"{s}: no repeated seeds in the sweep; its optima have no interval")
            fallback = [f"{p.C:.2g}" for p in envelopes[s] if p.noise.source == "pooled" and model.per_budget]
            if fallback and model.budgets:
                note(f"{s}: no repeated seeds at {', '.join(fallback)}; the noise there is the pool of "
                     f"{', '.join(f'{c:.2g}' for c in model.budgets)}")
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
        # The noise each budget's interval used: sd (degrees of freedom), and where it came from.
        table = pd.DataFrame({s: {f"{p.C:.2g}": f"{p.noise.sd:.4f} ({p.noise.dof:g}, {p.noise.source})"
                                  for p in env} for s, env in envelopes.items()}).T
        print("seed noise per budget: std of val bpb across seeds (degrees of freedom, source)")
        print(table.to_string())
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
    if s not in envelopes and len(pts) < 2 * n_params:
        # Resamples of a handful of points repeat the same few fits: the percentile interval comes out too narrow.
        # (An envelope curve's intervals refit the points' noise draws instead; their coverage is checked below.)
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

# %% [markdown]
# ## Held out: does a fit on the smaller budgets predict the largest?
#
# Each family's envelope curve is fitted again without its largest budget (its floor $E$ free, as in the full fit,
# even with three budgets left: the interval comes from refitting the points' bootstrap draws) and extrapolated to
# it: the prediction, the 95% interval where a measured envelope point should fall (the curve's bootstrap band plus
# that point's own seed noise), the point actually measured there, and whether the interval holds it. This is the only check of extrapolation the study can make; the dashed curves beyond the data
# reach further. On the scaling plot the predictions are open diamonds with their intervals, beside the measured points.

# %%
held_out = {}
for s, env in envelopes.items():
    if s not in fits or len(env) < 4:
        continue
    try:
        held_out[s] = held_out_prediction(env)
    except FitError as exc:
        note(f"{s}: held-out prediction skipped ({exc})")
if held_out:
    print(pd.DataFrame([{
        "series": s, "held out (FLOPs)": f"{h['C']:.2g}", "fitted on": f"{h['n_fitted']} budgets" + (
            ", E free" if h["irreducible"] else ", E = 0"),
        "predicted": f"{h['prediction']:.3f} [{h['interval'][0]:.3f}, {h['interval'][1]:.3f}]",
        "measured": f"{h['measured']:.3f}" + ("" if h["status"] == OK else " (not bracketed)"),
        "measured - predicted": f"{h['measured'] - h['prediction']:+.3f}", "inside": "yes" if h["contains"] else "NO",
    } for s, h in held_out.items()]).to_string(index=False))
    missed = [s for s, h in held_out.items() if not h["contains"]]
    if missed:
        note(f"held-out budget outside the predicted interval for {', '.join(missed)}: the fits do not extrapolate "
             "even one budget there")
elif envelopes:
    note("no family has 4 budgets with an envelope curve; the held-out check needs them")

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
        if s in held_out:  # the prediction of the largest budget from the others, to its right, one x per family
            h = held_out[s]
            at = h["C"] * (1.08 + 0.06 * list(held_out).index(s))
            ax.errorbar([at], [h["prediction"]], yerr=[[h["prediction"] - h["interval"][0]],
                                                       [h["interval"][1] - h["prediction"]]],
                        fmt="D", mfc="white", mec=style["color"], ecolor=style["color"], ms=5, elinewidth=1,
                        capsize=2, zorder=5)
    ax.set_xscale("log")
    # Reference levels (written by `aunet analyze` before the notebooks run): what byte n-grams and BPE's token
    # unigram reach on the same validation text; a model below a line has learned more than those statistics.
    references = store.read_fits(output_dir).get("reference_levels")
    if references:
        plots.draw_reference_levels(ax, references)
    else:
        note("no reference_levels in fits.json (aunet analyze computes them when the corpus is available)")
    what = ("each family at its own best size (isoFLOP vertex) · bars: 95% seed noise · faint: every run\nhollow: "
            "optimum not bracketed · dashed: extrapolated · ◇: predicted from smaller budgets"
            if envelopes
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
# ## Variants of one family: is the best one resolved?
#
# For an ablation (series `family/variant`), each variant's compute-optimal point at every budget against the best
# variant there: the difference and its 95% interval from the two points' bootstrap draws (each drawn with its own
# seed noise, recentred on its estimate: `aunet.analysis.envelope.difference_interval`). An interval that contains 0
# does not resolve the order.

# %%
from aunet.analysis.envelope import difference_interval

variant_rows = []
families_with_variants = {s.partition("/")[0] for s in envelopes if "/" in s}
for family in sorted(families_with_variants):
    mine = [s for s in envelopes if s.partition("/")[0] == family]
    for C in sorted({p.C for s in mine for p in envelopes[s]}):
        at = {s: next(p for p in envelopes[s] if abs(p.C / C - 1) < 0.01) for s in mine
              if any(abs(p.C / C - 1) < 0.01 for p in envelopes[s])}
        best = min(at, key=lambda s: at[s].L_star)
        for s, p in at.items():
            lo = hi = float("nan")
            if s != best:
                d = difference_interval(p, at[best])
                lo, hi = d.lo, d.hi
            variant_rows.append({"series": s, "C": C, "L_star": p.L_star, "best": best,
                                 "minus_best": p.L_star - at[best].L_star, "lo": lo, "hi": hi, "status": p.status,
                                 "noise_sd": p.noise.sd, "noise_source": p.noise.source})
if variant_rows:
    print(pd.DataFrame([{"series": r["series"], "C (FLOPs)": f"{r['C']:.2g}", "bpb": f"{r['L_star']:.3f}",
                         "minus best": "best" if r["series"] == r["best"] else
                         f"{r['minus_best']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}]",
                         "noise": f"{r['noise_sd']:.3f} ({r['noise_source']})"} for r in variant_rows]).to_string(
        index=False))

# %% [markdown]
# ## Families against each other
#
# Every pair of families (plain series) at every budget where both have a compute-optimal point: the first minus the
# second, in bits per byte, and its 95% interval from the two points' bootstrap draws (independent seed noise; each
# point's draws recentred on its estimate, `aunet.analysis.envelope.difference_interval`). A
# negative difference: the first family is ahead. An interval that contains 0 does not resolve the order; two
# points' own intervals can overlap while their difference's interval excludes 0.

# %%
pair_rows = []
plain = [s for s in tables.series_order(list(envelopes)) if "/" not in s]
for i, a in enumerate(plain):
    for b in plain[i + 1:]:
        for p in envelopes[a]:
            q = next((q for q in envelopes[b] if abs(q.C / p.C - 1) < 0.01), None)
            if q is None:
                continue
            d = difference_interval(p, q)
            pair_rows.append({"a": a, "b": b, "C": p.C, "a_minus_b": d.estimate, "lo": d.lo, "hi": d.hi,
                              "resolved": d.resolved, "status": [p.status, q.status]})
if pair_rows:
    table = pd.DataFrame(pair_rows)
    table["pair"] = table["a"] + " - " + table["b"]
    table["cell"] = [f"{r.a_minus_b:+.3f} [{r.lo:+.3f}, {r.hi:+.3f}]{'*' if r.resolved else ''}"
                     for r in table.itertuples()]
    print("first minus second, bits per byte [95%]; *: the interval excludes 0")
    print(table.pivot(index="pair", columns="C", values="cell").rename(columns=lambda c: f"{c:.2g}")
          .reindex(list(dict.fromkeys(table["pair"]))).to_string())

# %% [markdown]
# ## Do the intervals hold? Synthetic studies like this one
#
# A 95% interval should contain the truth in 95% of studies. Here that is checked where the truth is known:
# `coverage_studies` synthetic studies with this study's budgets, grid of sizes and repeated seeds, each family's
# fitted envelope curve as its true law, its measured noise per budget as the true noise and the median curvature of
# the bracketed valleys, each fitted exactly as above (`aunet.analysis.coverage`). The table gives, per kind of
# interval, the share that contained the truth and its Monte Carlo standard error. It checks the procedure at this
# noise, not the assumptions behind it (a valley that is not a parabola, noise shared by the runs of one seed).

# %%
from aunet.analysis.coverage import Design, Family, Law, simulate_coverage

coverage = {}
curves = [s for s in envelopes if s in fits and fits[s].irreducible]
curvatures = [p.coeffs[2] for env in envelopes.values() for p in env if p.status == OK and p.coeffs[2] > 0]
if coverage_studies <= 0:
    note("coverage check skipped (coverage_studies = 0)")
elif not curves or not curvatures:
    note("coverage check skipped: it needs envelope curves on 4 or more budgets and at least one bracketed valley")
else:
    reference = "bpe" if "bpe" in curves else curves[0]
    budgets = [p.C for p in envelopes[reference]]
    # The grid of each budget relative to its second-smallest size (x0.5, x1, x2 and x4 for the CPU study).
    multipliers = tuple(tuple(np.array(p.sizes) / p.sizes[min(1, len(p.sizes) - 1)]) for p in envelopes[reference])
    repeated = {i: 1.0 for i, C in enumerate(budgets) if noise_models[reference].at(C).source == "measured"}
    design = Design(tuple(budgets), multipliers, curvature=float(np.median(curvatures)), repeats=repeated)
    truths = {}
    for s in curves:
        sds = [noise_models[s].at(C).sd for C in budgets]
        if [p.C for p in envelopes[s]] == budgets and all(np.isfinite(sds)):
            truths[s] = Family(Law(fits[s].E, fits[s].A, fits[s].alpha), tuple(sds))
    if reference not in truths or len(truths) < 2:
        note("coverage check skipped: fewer than two families with envelope curves on the same budgets and noise")
    else:
        # 200 draws per synthetic fit at most: fewer draws make interval ends noisier, so a coverage that holds with
        # 200 holds with more, and 1000 would cost five times as long.
        boot = min(n_boot, 200)
        result = simulate_coverage(design, truths, reference=reference, n_studies=coverage_studies, n_boot=boot)
        coverage = {"n_studies": coverage_studies, "n_boot": boot, "reference": reference,
                    "families": {s: {"E": f.law.E, "A": f.law.A, "alpha": f.law.alpha, "noise": f.noise}
                                 for s, f in truths.items()},
                    "design": {"budgets": budgets, "multipliers": multipliers, "curvature": design.curvature,
                               "offset": design.offset, "repeats": {str(budgets[i]): m for i, m in repeated.items()}},
                    "rates": result.summary()}
        print(pd.DataFrame([{"interval": q, "contains the truth": f"{v['rate']:.3f} ± {v['stderr']:.3f}",
                             "intervals": v["n"]} for q, v in result.summary().items()]).to_string(index=False))
        low = [q for q, v in result.summary().items() if v["rate"] < 0.9]
        if low:
            note(f"synthetic coverage below 90% for {', '.join(low)}: read those intervals as too narrow")

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
    "noise_model": {s: {**m.to_dict(), "at_budgets": [p.noise.to_dict() for p in envelopes[s]]}
                    for s, m in noise_models.items()},
    "held_out": held_out,
    "variants": variant_rows,
    "differences": pair_rows,
    "coverage": coverage,
    "families": {s: {**f.to_dict(), "series": s, "largest_budget": largest.get(s)} for s, f in fits.items()},
    "gain_vs_bpe": {s: {"C": g.C[::6], "gain": g.gain[::6], "lo": g.lo[::6], "hi": g.hi[::6],
                        "unreachable": g.unreachable[::6]} for s, g in gains.items()},
    "gain_at": gain_at_budgets if gains else {},
    "notes": notes,
}
print("wrote", store.update_fits(output_dir, "scaling", record))
