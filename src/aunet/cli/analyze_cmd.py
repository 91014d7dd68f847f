"""``aunet analyze RESULTS_DIR``: run the analysis notebooks headlessly on a sweep's results and summarise the fits."""

from __future__ import annotations

import argparse
import difflib
import math
import re
from pathlib import Path
from typing import Any

from aunet.errors import UserError, excerpt

DEFAULT_TIMEOUT = 600.0


def add_parser(sub: argparse._SubParsersAction) -> None:
    from aunet.analysis.ngram import MAX_ORDER as DEFAULT_MAX_ORDER
    from aunet.analysis.ngram import MIN_ORDER
    from aunet.analysis.notebooks import NOTEBOOKS

    p = sub.add_parser(
        "analyze", help="fit scaling curves and draw the plots of a sweep's results (runs the analysis notebooks)",
        description=(
            "Execute the analysis notebooks (analysis/*.py, jupytext percent scripts) headlessly on RESULTS_DIR, a "
            "results/<sweep> folder holding runs.csv. Writes the executed notebooks to RESULTS_DIR/notebooks/, the "
            "figures (PNG and SVG) to RESULTS_DIR/plots/ and the fitted parameters to RESULTS_DIR/fits.json, then "
            "prints per family the runs, the fitted compute exponent alpha, the loss at the largest budget and its "
            "envelope point as predicted from the smaller budgets. "
            "First, when the corpus is available (AUNET_DATA_DIR), it computes reference levels on the runs' "
            "validation text: Kneser-Ney byte n-grams of orders 1..K fitted on the bytes the largest run read, and "
            "the BPE tokenizer's unigram (cached in AUNET_CACHE_DIR); they go to fits.json under reference_levels "
            "and onto the scaling plot."
        ),
    )
    p.add_argument("results_dir", metavar="RESULTS_DIR", help="a results/<sweep> folder holding runs.csv")
    p.add_argument("--notebooks", default=",".join(NOTEBOOKS), metavar="NAMES",
                   help=f"comma-separated notebooks to run (default: {','.join(NOTEBOOKS)})")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="S",
                   help=f"seconds one notebook cell may run (default: {DEFAULT_TIMEOUT:g})")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="override a notebook parameter, e.g. --param n_boot=50, --param gain_at=[9e12] or --param "
                        "noise_from=results/cpu-study (repeatable; the value is read as YAML, numbers such as 9e12 as "
                        "numbers, and must suit the parameter's default; a name that no notebook run declares is "
                        "refused, the notebooks without it ignore it)")
    p.add_argument("--reference-order", type=int, default=DEFAULT_MAX_ORDER, metavar="K",
                   help=f"highest order of the Kneser-Ney byte n-gram reference levels, "
                        f"{MIN_ORDER}..{DEFAULT_MAX_ORDER} (default: {DEFAULT_MAX_ORDER})")
    p.add_argument("--no-reference", action="store_true",
                   help="skip the reference levels (byte n-grams and the BPE unigram on the validation text)")
    p.set_defaults(run=run)


def parse_notebooks(text: str) -> list[str]:
    """``"scaling,downstream"`` -> the names, checked against the known notebooks (did-you-mean on a typo)."""
    from aunet.analysis.notebooks import NOTEBOOKS

    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UserError(f"--notebooks: no names given; choose from {', '.join(NOTEBOOKS)}")
    for name in names:
        if name not in NOTEBOOKS:
            close = difflib.get_close_matches(name, NOTEBOOKS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise UserError(f"--notebooks: unknown notebook '{name}'{hint}; choose from {', '.join(NOTEBOOKS)}")
    return list(dict.fromkeys(names))


# Bounds of parameters beyond their type, checked before any notebook runs: a negative bootstrap count still wrote a
# fits.json; 1e8 bootstrap resamples or curves drawn 1e9 decades out ran until memory gave out inside a notebook.
PARAM_MINIMUMS = {"n_boot": 1, "tolerance": 0.0, "extrapolate_decades": 0.0, "coverage_studies": 0,
                  "chance_bytes": 0, "level": 0.5}
PARAM_MAXIMUMS = {"n_boot": 100_000, "tolerance": 1.0, "extrapolate_decades": 6.0, "coverage_studies": 10_000,
                  "chance_bytes": 1_000_000_000, "level": 0.999}
# List parameters of NUMBER_LISTS: the most items (compute values at which to report a gain).
PARAM_LISTS = {"gain_at": 1000}
# Parameters that hold a list of positive numbers, and what they are (for the message).
NUMBER_LISTS = {"gain_at": "compute values in FLOPs"}
# Parameters that name a results folder: resolved against the working directory here (the notebook runs elsewhere)
# and checked for a runs.csv before any kernel starts.
FOLDER_PARAMS = ("noise_from",)
# A number as YAML 1.2 and Python read it: YAML 1.1 (PyYAML) reads 9e12 or 1E13 (no dot) as a string.
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _as_number(value: Any) -> Any:
    """``value``, or the float a string such as ``"9e12"`` spells (any other value unchanged)."""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return float(value)
    return value


def _number_list(name: str, value: Any) -> list[float]:
    """The list of positive finite numbers ``--param NAME=VALUE`` gives (a single number is a list of one); any other
    element is a one-line UserError."""
    items = [] if value is None else value if isinstance(value, list) else [value]
    out = []
    for item in items:
        number = _as_number(item)
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise UserError(f"--param {name}: element {excerpt(item)} is not a number; give {NUMBER_LISTS[name]}, "
                            f"e.g. {name}=[9e12, 2e13]")
        if not math.isfinite(number) or number <= 0:
            raise UserError(f"--param {name}: element {number!r} must be a positive finite number")
        out.append(float(number))
    if len(out) > PARAM_LISTS[name]:
        raise UserError(f"--param {name}: {len(out)} values, at most {PARAM_LISTS[name]}")
    return out


def _folder(name: str, value: Any) -> str:
    """A results folder parameter as an absolute path; empty stays empty (none). Refused unless it holds runs.csv."""
    if value in (None, ""):
        return ""
    if not isinstance(value, str):
        raise UserError(f"--param {name}={excerpt(value)}: expected a results/<sweep> folder")
    path = Path(value).expanduser().resolve()
    if not (path / "runs.csv").is_file():
        raise UserError(f"--param {name}={value}: no runs.csv in {path}; give a results/<sweep> folder")
    return str(path)


def parse_params(items: list[str], notebooks: list[str] | None = None) -> dict[str, Any]:
    """``["n_boot=50"]`` -> ``{"n_boot": 50}`` (values read as YAML scalars).

    With ``notebooks``, each name must be a parameter of one of them (a typo would otherwise be ignored without a
    word) and each value of the type of that parameter's default, finite, and not below :data:`PARAM_MINIMUMS`.
    Numbers written without a dot (``9e12``, which YAML 1.1 reads as text) are numbers where one is expected; the
    lists of :data:`NUMBER_LISTS` hold positive numbers only, and the folders of :data:`FOLDER_PARAMS` are made
    absolute and must hold a ``runs.csv``."""
    from aunet.analysis.notebooks import notebook_parameters
    from aunet.yaml_loader import parse_yaml

    declared: dict[str, Any] = {}
    for notebook in notebooks or []:
        declared.update(notebook_parameters(notebook))
    params = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise UserError(f"--param {excerpt(item, 60, quote=False)}: expected NAME=VALUE with NAME a Python "
                            "identifier, e.g. n_boot=50")
        if name in ("results_dir", "output_dir"):
            raise UserError(f"--param {name}: set by aunet analyze itself; pass RESULTS_DIR instead")
        parsed = parse_yaml(value, source=f"--param {name}")
        if name in NUMBER_LISTS:
            parsed = _number_list(name, parsed)
        elif name in FOLDER_PARAMS:
            parsed = _folder(name, parsed)
        elif isinstance(declared.get(name), float):
            parsed = _as_number(parsed)
        if notebooks is not None:
            _check_param(name, parsed, declared, notebooks)
        params[name] = parsed
    return params


def _check_param(name: str, value: Any, declared: dict[str, Any], notebooks: list[str]) -> None:
    if name not in declared:
        known = sorted(set(declared) - {"results_dir", "output_dir"})
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise UserError(f"--param {name}: no parameter of the notebooks {', '.join(notebooks)}; {hint}their "
                        f"parameters: {', '.join(known) or 'none'}")
    default = declared[name]
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif isinstance(default, str):
        ok = isinstance(value, str)
    else:
        ok = True
    if not ok:
        raise UserError(f"--param {name}={excerpt(value)}: expected {type(default).__name__} like its default "
                        f"{default!r}" + (" (finite)" if isinstance(default, float) else ""))
    minimum, maximum = PARAM_MINIMUMS.get(name), PARAM_MAXIMUMS.get(name)
    if minimum is not None and value < minimum:
        raise UserError(f"--param {name}={value}: must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise UserError(f"--param {name}={value}: must be at most {maximum:g}")


def _fmt(value: Any, spec: str = ".3g") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def family_summary(runs: Any, fits: dict[str, Any]) -> tuple[list[list[str]], list[str]]:
    """Rows of the summary table (one per series) from the runs table and ``fits.json``; returns rows and header.

    runs: finished and total; alpha with its interval from ``fits["scaling"]``; the best validation bpb among the
    finished runs at the series' largest budget; the held-out prediction of that budget from the others, with its
    interval and whether the measured envelope point lies in it.
    """
    from aunet.analysis import tables

    families = fits.get("scaling", {}).get("families", {})
    held_out = fits.get("scaling", {}).get("held_out", {})
    budget_col = tables.first_with_values(runs, "budget_flops", "planned_flops", "flops_spent")
    done = tables.finished(runs)
    rows = []
    for s in tables.series_order(runs["series"]):
        mine = runs[runs["series"] == s]
        fin = done[(done["series"] == s) & done["val_bpb"].notna()]
        fit = families.get(s)
        alpha = "-"
        if fit:
            lo, hi = (fit.get("intervals", {}).get("alpha") or [None, None])[:2]
            alpha = f"{_fmt(fit.get('alpha'))} [{_fmt(lo)}, {_fmt(hi)}]"
        budget, loss = "-", "-"
        if budget_col is not None and fin[budget_col].notna().any():
            top = fin[fin[budget_col] == fin[budget_col].max()]
            budget, loss = f"{top[budget_col].iloc[0]:.3g}", f"{top['val_bpb'].min():.4f}"
        predicted = "-"
        h = held_out.get(s)
        if h and h.get("prediction") is not None:
            lo, hi = (h.get("interval") or [None, None])[:2]
            predicted = (f"{_fmt(h['prediction'], '.3f')} [{_fmt(lo, '.3f')}, {_fmt(hi, '.3f')}]: "
                         f"{'holds' if h.get('contains') else 'misses'} {_fmt(h.get('measured'), '.3f')}")
        rows.append([s, f"{len(done[done['series'] == s])}/{len(mine)}", alpha, budget, loss, predicted])
    return rows, ["family", "finished/runs", "alpha [95%]", "largest budget (FLOPs)", "val bpb there",
                  "envelope there, from the others [95%]: measured"]


def excluded_rows(runs: Any, shown: int = 5) -> str:
    """A line naming the rows of ``runs.csv`` that claim a result but cannot be one (a NaN or negative
    ``val_bpb``, no compute: :func:`aunet.analysis.tables.invalid_results`); the notebooks leave them out, and this
    says so instead of dropping them without a word. Empty when there are none."""
    from aunet.analysis import tables

    reasons = tables.invalid_results(runs)
    bad = reasons[reasons != ""]
    if bad.empty:
        return ""
    listed = "; ".join(f"{runs.loc[i, 'run_id'] or f'row {i + 2}'} ({reason})" for i, reason in bad.head(shown).items())
    more = f"; and {len(bad) - shown} more" if len(bad) > shown else ""
    return (f"excluded {len(bad)} row(s) marked finished whose numbers cannot be results: {listed}{more}; rebuild "
            "runs.csv with aunet sweep run (or aunet sweep eval)")


def reference_levels(results_dir: Path, runs: Any, max_order: int) -> str:
    """Compute (or take from the cache) the sweep's reference levels into ``fits.json``; returns the one line to
    print. Without the data (no AUNET_DATA_DIR, no run configs) the line says why they were skipped; levels stored
    earlier are kept when they were fitted for the same largest run, and removed as stale otherwise."""
    from aunet.analysis import reference
    from aunet.analysis.store import drop_fits_key, read_fits, update_fits

    try:
        record, cached = reference.sweep_reference_levels(results_dir, runs, max_order=max_order)
    except UserError as exc:
        reason = " ".join(str(exc).split())  # one line, whatever the message
        stored = read_fits(results_dir).get(reference.FITS_KEY)
        if stored and reference.matches_runs(stored, runs):
            return f"reference levels: not recomputed ({reason}); kept those in fits.json, fitted for the same runs"
        if stored and drop_fits_key(results_dir, reference.FITS_KEY):
            return f"reference levels: skipped ({reason}); removed stale ones from fits.json"
        return f"reference levels: skipped ({reason})"
    update_fits(results_dir, reference.FITS_KEY, record)
    took = "cached" if cached else f"{record['seconds']:.1f} s"
    return f"reference levels ({took}): {reference.summary_line(record)}"


def run(args: argparse.Namespace) -> int:
    from aunet.analysis import tables
    from aunet.analysis.notebooks import execute_notebook
    from aunet.analysis.store import FITS_FILE, read_fits
    from aunet.formatting import table

    results_dir = Path(args.results_dir)
    # Flags first, then the results: a bad flag is reported before any file is read or any kernel starts.
    names = parse_notebooks(args.notebooks)
    params = parse_params(args.param, names)
    if not args.timeout > 0 or not math.isfinite(args.timeout):
        raise UserError(f"--timeout {args.timeout:g}: must be a positive number of seconds")
    from aunet.analysis.ngram import MAX_ORDER as DEFAULT_MAX_ORDER
    from aunet.analysis.ngram import MIN_ORDER

    if not MIN_ORDER <= args.reference_order <= DEFAULT_MAX_ORDER:
        raise UserError(f"--reference-order {args.reference_order}: must lie in {MIN_ORDER}..{DEFAULT_MAX_ORDER}")
    runs = tables.read_runs(results_dir)  # a missing folder or runs.csv fails here, before any kernel starts
    tables.check_columns(results_dir)
    print(f"analyzing {results_dir}: {len(runs)} runs, notebooks {', '.join(names)}")
    excluded = excluded_rows(runs)
    if excluded:
        print(excluded)
    if not args.no_reference:
        print(reference_levels(results_dir, runs, args.reference_order))
    failed = []
    for name in names:
        outcome = execute_notebook(name, results_dir, results_dir, timeout=args.timeout,
                                   save_to=results_dir / "notebooks" / f"{name}.ipynb", extra_parameters=params)
        status = "ok" if outcome.error is None else f"FAILED: {outcome.error}"
        print(f"  {name:<16} {outcome.seconds:6.1f} s  {status}")
        if outcome.error is not None:
            failed.append(name)
    # The fits shown are this analysis's only: a fits.json left by an earlier one, printed after the scaling notebook
    # failed (or did not run), read as if current.
    fresh = "scaling" in names and "scaling" not in failed
    rows, header = family_summary(runs, read_fits(results_dir) if fresh else {})
    print()
    print(table(rows, header))
    if not fresh:
        print("alpha: not fitted by this analysis (the scaling notebook " + ("failed" if "scaling" in names else
                                                                              "was not run") + "); fits.json is not "
              "current")
    plots_dir = results_dir / "plots"
    n_plots = len(list(plots_dir.glob("*.png"))) if plots_dir.is_dir() else 0
    print()
    print(f"plots: {n_plots} PNG (+ SVG) in {plots_dir}")
    print(f"fits: {results_dir / FITS_FILE}" if (results_dir / FITS_FILE).is_file() else "fits: none written")
    print(f"notebooks: {results_dir / 'notebooks'}")
    if failed:
        print(f"{len(failed)} notebook(s) failed: {', '.join(failed)}; open the executed copies to see the error")
        return 1
    return 0
