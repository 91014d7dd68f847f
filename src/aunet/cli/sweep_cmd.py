"""``aunet sweep``: plan, run, and distribute compute-matched sweeps."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="plan and run compute-matched sweeps (families x budgets x seeds)",
                       description="Plan, run and distribute sweeps defined in sweeps/*.yaml.")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    plan = actions.add_parser("plan", help="resolve every run and print the plan",
                              description="Resolve every run of a sweep (model, bytes, steps, batch, LR, FLOPs) and "
                                          "print it with warnings; nothing is trained.")
    plan.add_argument("sweep", metavar="SWEEP.yaml")
    plan.add_argument("--json", action="store_true", help="one JSON object per run")
    plan.add_argument("--plot", nargs="?", const="", metavar="PNG", help="draw budget vs size per family "
                      "(default: results/<sweep>/plan.png)")
    plan.add_argument("--no-probe", action="store_true", help="skip the throughput probe (no time estimates)")
    plan.add_argument("--throughput", metavar="JSON",
                      help="estimate run times from a recorded GPU check (benchmarks/bench-gpu-check-cuda.json) "
                           "instead of probing this machine")
    plan.add_argument("--suggest-caps", action="store_true",
                      help="print each AU-Net family's measured boundary counts and caps at their 99th percentile")
    _add_results(plan)
    plan.set_defaults(run=run_plan)

    run = actions.add_parser("run", help="run what is missing (nothing twice), then write runs.csv",
                             description="Run every run of the sweep that is not finished: finished runs are "
                                         "skipped, interrupted ones resume, failed ones are recorded and skipped "
                                         "unless --retry-failed. Runs are handed out through an Optuna study.")
    run.add_argument("sweep", metavar="SWEEP.yaml")
    run.add_argument("--workers", type=int, default=1, help="worker processes on this machine (default 1)")
    run.add_argument("--storage", help="Optuna storage URL (default: journal:results/<sweep>/optuna.journal)")
    run.add_argument("--retry-failed", action="store_true", help="run failed runs again")
    _add_results(run)
    run.set_defaults(run=run_run)

    worker = actions.add_parser("worker", help="train waiting runs of a sweep from shared storage",
                                description="Train waiting runs of a sweep study until none is left; start any "
                                            "number of these on any machine that sees the storage.")
    worker.add_argument("--storage", required=True, help="Optuna storage URL")
    worker.add_argument("--study", required=True, help="the sweep's name")
    worker.set_defaults(run=run_worker_cmd)

    tune = actions.add_parser("tune", help="search LR and batch at small budgets and fit power laws",
                              description="For every family and budget of a sweep with a 'tune:' section, search "
                                          "learning rate and batch size with Optuna (quasi-random by default, "
                                          "pruning lagging runs), then fit LR(C) and batch(C) on the runs within "
                                          "the tolerance of each budget's best, as the paper did. Writes "
                                          "results/<sweep>/runs.csv and laws.json (usable as hparams: {aunet: "
                                          "{law: results/<sweep>/laws.json}}). Resumable.")
    tune.add_argument("sweep", metavar="SWEEP.yaml")
    tune.add_argument("--storage", help="Optuna storage URL (default: journal:results/<sweep>/optuna.journal)")
    _add_results(tune)
    tune.set_defaults(run=run_tune)

    evaluate = actions.add_parser("eval", help="evaluate every finished run that lacks scores",
                                  description="Run lm-eval tasks (offline, from the data directory) on every "
                                              "finished run of the sweep that lacks their scores, then refresh "
                                              "runs.csv. Tasks, limit and few-shot default to the sweep's eval "
                                              "section.")
    evaluate.add_argument("sweep", metavar="SWEEP.yaml")
    evaluate.add_argument("--tasks", help="comma-separated tasks (default: the sweep's eval.tasks)")
    evaluate.add_argument("--limit", type=int, help="items per task (default: the sweep's eval.limit)")
    evaluate.add_argument("--num-fewshot", type=int, help="few-shot examples (default: the sweep's, else 0)")
    evaluate.add_argument("--force", action="store_true", help="evaluate runs that already have scores again")
    _add_results(evaluate)
    evaluate.set_defaults(run=run_eval)

    slurm = actions.add_parser("slurm", help="enqueue a sweep and write an sbatch array of workers",
                               description="Enqueue the missing runs in a storage every node can reach and write an "
                                           "sbatch array script whose tasks are workers. Submit it with sbatch.")
    slurm.add_argument("sweep", metavar="SWEEP.yaml")
    slurm.add_argument("--storage", help="storage URL on a shared filesystem or a database (default: the journal "
                                         "file in results/<sweep>/)")
    slurm.add_argument("--array", type=int, default=4, help="workers (array tasks) at once (default 4)")
    slurm.add_argument("--gpus", type=int, help="GPUs per worker (default 1, or what a node of the partition has)")
    slurm.add_argument("--cpus", type=int, help="CPUs per worker (default 8, or what a node of the partition has); "
                                                "checked against sinfo where it answers")
    slurm.add_argument("--hours", type=float, default=24.0, help="time limit per task in hours (default 24)")
    slurm.add_argument("--partition", help="SLURM partition")
    slurm.add_argument("--output", type=Path, help="script path (default: results/<sweep>/sweep.sbatch)")
    slurm.add_argument("--retry-failed", action="store_true", help="enqueue failed runs again")
    _add_results(slurm)
    slurm.set_defaults(run=run_slurm)


def _add_results(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", metavar="DIR", help="results root instead of the sweep's results_dir "
                        "(tables in DIR/<sweep>/, runs in DIR/runs/)")


def _spec(args: argparse.Namespace):
    import dataclasses

    from aunet.sweeps.spec import load_sweep

    spec = load_sweep(args.sweep)
    return dataclasses.replace(spec, results_dir=str(args.results)) if getattr(args, "results", None) else spec


def _plan(args: argparse.Namespace, measure: bool = True):
    spec = _spec(args)  # read, and refused if bad, before the planner loads torch
    from aunet.sweeps.plan import plan_sweep

    return plan_sweep(spec, measure=measure)


def _fmt_time(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.0f}d"


def run_plan(args: argparse.Namespace) -> int:
    spec = _spec(args)  # read, and refused if bad, before the planner loads torch
    from aunet.formatting import si, table
    from aunet.sweeps.plan import estimate_times, gpu_check_rates, plan_sweep

    measure = spec.bytes_per_token is None or _corpus_readable(spec)
    plan = plan_sweep(spec, measure=measure)
    if args.throughput:
        rates, label = gpu_check_rates(args.throughput)
        estimate_times(plan, measured=rates, measured_label=label)
    elif not args.no_probe:
        estimate_times(plan)
    fairness = {row["run_id"] + f"/{row['seed']}": row for row in plan.fairness()}
    if args.json:
        for run in plan.runs:
            row = run.row()
            row.pop("run_config")
            fair = fairness[f"{run.run_id}/{run.seed}"]
            extra = {k: fair[k] for k in ("stages", "truncated", "padding", "padding_flops_share") if k in fair}
            print(json.dumps({**row, "budget_flops": run.budget_flops, "bytes": run.bytes, **extra}))
    else:
        rows = [[r.run_id, r.family + (f"/{r.variant}" if r.variant else ""), f"{r.budget_flops:.2g}", si(r.params),
                 f"{r.flops_per_byte:.3g}", si(r.bytes), "-" if r.epochs is None else f"{r.epochs:.2f}", str(r.steps),
                 str(r.batch_size), f"{r.lr:.2g}", f"{r.head_share:.0%}", f"{r.planned_flops / r.budget_flops:.3f}",
                 _fmt_time(r.est_time_s), "; ".join(r.warnings)] for r in plan.runs]
        print(table(rows, ["run", "family", "budget", "params", "FLOPs/byte", "bytes", "epochs", "steps", "batch",
                           "LR", "head", "spent/budget", "est. time", "warnings"]))
        total = sum(r.est_time_s or 0 for r in plan.runs)
        k = ", ".join(f"{f} {v:.2f}" for f, v in plan.bytes_per_token.items() if v != 1.0)
        print(f"\n{len(plan.runs)} runs, {sum(r.planned_flops for r in plan.runs):.3g} FLOPs"
              + (f", about {_fmt_time(total)} " + ("here" if not args.throughput else
                                                       f"at the {plan.runs[0].est_time_source}") if total else "")
              + (f"; bytes per token: {k}" if k else ""))
        print("\n" + _fairness_table(plan, fairness))
        if measure:
            _print_packs(plan, args.sweep)
    if args.suggest_caps:
        _print_caps(plan)
    if args.plot is not None:
        from aunet.sweeps.plot import plot_plan

        out = Path(args.plot) if args.plot else plan.results_dir / "plan.png"
        print(f"plan drawn in {plot_plan(plan, out)}")
    return 0


def _print_packs(plan, sweep: str) -> None:
    """The packs the sweep's packed runs read, and whether each is built."""
    from aunet.formatting import plural, table
    from aunet.sweeps.packs import sweep_packs

    needs = sweep_packs(plan)
    if not needs:
        return
    rows = []
    for need in needs:
        pack = need.pipeline.find_pack()
        rows.append([need.label, str(len(need.run_ids)),
                     f"built ({pack.n_units:,} units): {pack.folder}" if pack is not None else "missing"])
    missing = sum(1 for r in rows if r[2] == "missing")
    print(f"\npacks: {plural(len(needs), 'pack')} read by the packed runs" + (
        f"; {missing} missing: `aunet data pack --sweep {sweep}` builds them ahead (a run builds its own on first "
        "use otherwise)" if missing else ", all built"))
    print(table(rows, ["data", "runs", "status"]))


def _fairness_table(plan, fairness: dict) -> str:
    """Per run (first seed only): each stage as width x layers with its share of the FLOPs and units seen per
    parameter, the LR and its source, epochs, and the caps' truncation and padding."""
    from aunet.formatting import table

    rows = []
    for run in plan.runs:
        if run.seed != plan.spec.seeds[0]:
            continue
        fair = fairness[f"{run.run_id}/{run.seed}"]
        stages = " | ".join(f"{s['width']}x{s['layers']} {s['flops_share']:.0%} {s['units_per_param']:.3g}/p"
                            for s in fair["stages"])
        caps = ("-" if "truncated" not in fair else
                " ".join(f"{t:.1%}/{p:.0%}" for t, p in zip(fair["truncated"], fair["padding"])))
        rows.append([run.family, f"{run.budget_flops:.2g}", f"x{run.multiplier * run.grid_shift:.2g}", stages,
                     f"{run.lr:.2g} ({run.hparams_source})", "-" if run.epochs is None else f"{run.epochs:.2f}",
                     caps, f"{fair.get('padding_flops_share', 0):.0%}"])
    return ("fairness: each stage as width x layers (each side), its share of FLOPs per byte and units seen per "
            "parameter; caps as truncated sequences / padded positions per deeper stage\n"
            + table(rows, ["family", "budget", "size", "stages", "LR (source)", "epochs", "caps trunc/pad",
                           "FLOPs on padding"]))


def _print_caps(plan) -> None:
    from aunet.sweeps.fairness import suggest_caps

    if not plan.cap_stats:
        print("no AU-Net with several stages, or the corpus could not be read: nothing to measure")
        return
    for key, stats in plan.cap_stats.items():
        splits, caps = key.split("|")
        p = {k: [round(x, 1) for x in v] for k, v in stats.to_dict()["count_percentiles"].items()}
        print(f"splits {splits}, caps {caps}: boundaries per window p50 {p['50']}, p90 {p['90']}, p99 {p['99']}; "
              f"truncated {[f'{t:.1%}' for t in stats.truncated]}, padding {[f'{x:.0%}' for x in stats.padding]}; "
              f"suggested caps {suggest_caps(stats.counts, stats.caps[0])}")


def _corpus_readable(spec) -> bool:
    from aunet.errors import UserError
    from aunet.sweeps.plan import training_bytes

    try:
        return training_bytes(spec) is not None
    except UserError:
        return False


def _check_workers(workers: int) -> None:
    """``--workers``: at least one, at most one per core (each worker trains with its share of the cores; more only
    slows them all, and 1e6 of them would exhaust the machine)."""
    from aunet.errors import UserError

    cores = os.cpu_count() or 1
    if not 1 <= workers <= cores:
        raise UserError(f"--workers {workers}: must lie in 1..{cores} (one worker per core of this machine at most)")


def run_run(args: argparse.Namespace) -> int:
    _check_workers(args.workers)  # before the plan: nothing is read or written for a bad flag
    plan = _plan(args)
    from aunet.sweeps.driver import run_sweep

    result = run_sweep(plan, args.storage, workers=args.workers, retry_failed=args.retry_failed)
    _print_status(result["table"])
    _print_stopped(result["stopped"])
    return 0


def _print_stopped(stopped: list[str]) -> None:
    """A worker pre-empted by SIGTERM: its run's checkpoint is saved and the run is back in the queue."""
    for line in stopped:
        print(f"stopped {line}; the run is back in the queue: rerun the sweep (or a worker) to continue it",
              file=sys.stderr)


def _print_status(table_path: Path | None) -> None:
    import csv
    from collections import Counter

    if table_path is None:
        return
    with open(table_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    counts = Counter(r["status"] for r in rows)
    print(f"{table_path}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    for r in rows:
        if r["status"] in ("failed", "diverged"):
            print(f"  {r['status']} {r['run_id']}: {r['error']}")


def run_worker_cmd(args: argparse.Namespace) -> int:
    from aunet.sweeps.runner import open_storage, open_study, run_outcome, run_worker
    from aunet.sweeps.table import refresh_tables_for_run

    study = open_study(open_storage(args.storage), args.study, create=False)
    stopped: list[str] = []

    def after_run(run_dir: Path) -> None:
        refresh_tables_for_run(run_dir)
        print(run_outcome(run_dir), flush=True)

    taken = run_worker(study, after_run=after_run, stopped=stopped)
    print(f"worker done: {taken} run(s) taken")
    _print_stopped(stopped)
    return 0


def run_slurm(args: argparse.Namespace) -> int:
    from aunet.errors import UserError
    from aunet.io import atomic_write_text
    from aunet.sweeps.slurm import MAX_ARRAY, MAX_HOURS, check_partition, fit_resources, partition_offer, sbatch_script

    if not 1 <= args.array <= MAX_ARRAY or not 0 < args.hours <= MAX_HOURS:
        raise UserError(f"--array {args.array} --hours {args.hours}: expected 1..{MAX_ARRAY} tasks (SLURM's default "
                        f"MaxArraySize) and a time in (0, {MAX_HOURS}] hours")
    check_partition(args.partition)
    # Checked before anything is enqueued: a script whose tasks could never start is not written.
    cpus, gpus, notes = fit_resources(args.cpus, args.gpus, partition_offer(args.partition))
    for note in notes:
        print(note, file=sys.stderr)
    plan = _plan(args)
    from aunet.sweeps.driver import enqueue

    url, enqueued = enqueue(plan, args.storage, retry_failed=args.retry_failed)
    script = sbatch_script(plan.spec.name, url, array=args.array, gpus=gpus, cpus=cpus, hours=args.hours,
                           partition=args.partition, log_dir=(plan.results_dir / "slurm").resolve())
    out = args.output or plan.results_dir / "sweep.sbatch"
    (plan.results_dir / "slurm").mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, script)
    print(f"{len(enqueued)} run(s) enqueued in {url}\nsubmit with: sbatch {out}")
    return 0


def run_tune(args: argparse.Namespace) -> int:
    spec = _spec(args)  # read, and refused if bad, before torch is loaded
    from aunet.analysis.tuning import tuning_laws
    from aunet.errors import ConfigError
    from aunet.sweeps.hparams import paper_law
    from aunet.sweeps.tune import tune_sweep, write_laws

    if spec.tune is None:
        raise ConfigError("tune", f"{args.sweep} has no tune section (trials, lr, batch_bytes ranges)")
    table = tune_sweep(spec, storage_url=args.storage)
    laws = tuning_laws(table, spec.tune)
    errors = laws.pop("errors", {}) or {}
    for name, law in laws.items():
        lr, batch = law["lr"], law["batch_bytes"]
        paper = paper_law(name)["lr"]
        print(f"{name}: LR = {lr['coefficient']:.3g} C^{lr['exponent']:.3f} (paper {paper[0]} C^{paper[1]}), "
              f"batch = {batch['coefficient']:.3g} C^{batch['exponent']:.3f} bytes")
    for name, reason in errors.items():
        print(f"{name}: no law ({reason})", file=sys.stderr)
    out = write_laws(table.parent / "laws.json", {**laws, **({"errors": errors} if errors else {})})
    print(f"laws written to {out}; tuning table {table}")
    return 0 if laws else 2


def run_eval(args: argparse.Namespace) -> int:
    spec = _spec(args)  # read, and refused if bad, before torch is loaded
    from aunet.errors import ConfigError
    from aunet.sweeps.evaluation import evaluate_sweep, saved_plan

    plan = saved_plan(spec, args.sweep)
    if args.tasks is not None and not [t for t in args.tasks.split(",") if t.strip()]:
        raise ConfigError("--tasks", f"{args.tasks!r}: no task names; give comma-separated names, or leave --tasks out "
                                     "for the sweep's eval.tasks")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else list(spec.eval.tasks)
    if not tasks:
        raise ConfigError("eval.tasks", "no tasks: give --tasks or an eval section in the sweep", args.sweep)
    limits = {t: args.limit if args.limit is not None else spec.eval.limit_for(t) for t in tasks}
    fewshot = args.num_fewshot if args.num_fewshot is not None else spec.eval.num_fewshot
    shown_limits = ", ".join(f"{t}" + (f" (limit {n})" if n else "") for t, n in limits.items())

    def started(n: int) -> None:
        print(f"{n} finished run(s) to evaluate on {shown_limits}")

    def done(i: int, n: int, run_dir: Path, scores: dict, seconds: float) -> None:
        shown = ", ".join(f"{k} {v:.3f}" for k, v in sorted(scores.items()) if "stderr" not in k)
        print(f"[{i}/{n}] {run_dir.name} ({seconds:.0f}s): {shown}")

    table = evaluate_sweep(spec, plan, limits, fewshot, force=args.force, on_run=done, on_start=started)
    _print_status(table)
    return 0
