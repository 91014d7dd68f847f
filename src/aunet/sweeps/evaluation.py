"""``aunet sweep eval``: evaluate every finished run of a sweep that lacks the asked-for scores, then rebuild its table.

Runs come from the sweep's saved plan (so a run shared by several rows is evaluated once); tasks that share an item
limit go to lm-eval together, one call per limit and run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aunet.errors import ConfigError, StateError
from aunet.evaluation.evaluate import evaluate_run, read_scores
from aunet.io import read_json
from aunet.sweeps.spec import SweepSpec
from aunet.sweeps.table import PLAN_FILE, refresh_table
from aunet.training.records import RunPaths


def saved_plan(spec: SweepSpec, source: str) -> dict[str, Any]:
    """The plan ``aunet sweep run`` saved for ``spec`` (``source``: the sweep file, named in the errors)."""
    sweep_dir = Path(spec.results_dir) / spec.name
    plan_file = sweep_dir / PLAN_FILE
    if not plan_file.is_file():
        raise ConfigError("", f"{sweep_dir} has no plan yet; run 'aunet sweep run {source}' first", source)
    plan = read_json(plan_file, f"rerun 'aunet sweep run {source}' to write it again")
    if not isinstance(plan, dict) or not isinstance(plan.get("runs"), list) or "runs_dir" not in plan:
        raise StateError(f"{plan_file}: not a sweep plan; rerun 'aunet sweep run {source}' to write it again")
    return plan


def runs_to_evaluate(plan: dict[str, Any], tasks: list[str], force: bool = False) -> list[Path]:
    """Folders of the plan's finished runs that lack a score of some task (all of them with ``force``), once each."""
    runs_dir = Path(plan["runs_dir"])
    todo = []
    for row in plan["runs"]:
        run_dir = runs_dir / row["run_id"]
        if not RunPaths(run_dir).summary.is_file():
            continue
        have = read_scores(run_dir)
        if force or not all(any(k.startswith(f"{t}.") for k in have) for t in tasks):
            todo.append(run_dir)
    return list(dict.fromkeys(todo))


def task_groups(limits: dict[str, int | None]) -> dict[int | None, list[str]]:
    """Tasks grouped by their item limit (each group is one lm-eval call)."""
    groups: dict[int | None, list[str]] = {}
    for task, limit in limits.items():
        groups.setdefault(limit, []).append(task)
    return groups


def evaluate_sweep(spec: SweepSpec, plan: dict[str, Any], limits: dict[str, int | None], num_fewshot: int | None,
                   force: bool = False,
                   on_run: Callable[[int, int, Path, dict[str, float], float], None] | None = None,
                   on_start: Callable[[int], None] | None = None) -> Path | None:
    """Evaluate the runs that need it on ``limits`` (task -> items, None for all); ``on_start(n)`` is called with
    the number of runs, ``on_run(i, n, run_dir, scores, seconds)`` after each; ``plan``: :func:`saved_plan`.
    Returns the rebuilt table."""
    todo = runs_to_evaluate(plan, list(limits), force)
    groups = task_groups(limits)
    if on_start is not None:
        on_start(len(todo))
    for i, run_dir in enumerate(todo, 1):
        start = time.perf_counter()
        scores: dict[str, float] = {}
        for limit, group in groups.items():
            scores.update(evaluate_run(run_dir, group, limit=limit, num_fewshot=num_fewshot)["scores"])
        if on_run is not None:
            on_run(i, len(todo), run_dir, scores, time.perf_counter() - start)
    return refresh_table(Path(spec.results_dir) / spec.name)
