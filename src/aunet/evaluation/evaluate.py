"""Evaluate a run: lm-eval tasks and bits per byte, written into ``<run_dir>/eval/``.

Files written:

``eval/lm_eval-<UTC time>.json``
    lm-eval's results of one invocation (results, groups, configs, versions, n-shot, ...), without per-sample logs
    unless asked for.
``eval/scores.json``
    flat ``{"<task>.<metric>": value}`` merged over invocations, later values replacing earlier ones:
    ``hellaswag.acc_norm``, ``arc_easy.acc``, ``mmlu.acc``, ``<task>.acc_bytes``, ``<task>.<metric>_stderr`` and
    ``bpb.<name>`` for bits-per-byte files, ``multilingual.bpb.<lang>`` for the multilingual suite
    (:mod:`aunet.evaluation.suites`). Only the names asked for (tasks and groups) are flattened; MMLU subjects stay
    in the lm-eval file, CUTE subtasks are flattened with their group.
``eval/scores_provenance.json``
    for each score: the checkpoint, limit, few-shot count, results file and time it came from (a score computed
    with ``--limit`` is not comparable with a full one).

The callers (``aunet eval``, ``aunet sweep eval``) then rebuild the sweep tables that list the run
(``aunet.sweeps.table``, a layer above this one).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

from aunet.evaluation.checkpoint import LoadedModel, load_checkpoint
from aunet.evaluation.cute import members
from aunet.evaluation.errors import EvalError
from aunet.evaluation.scoring import bits_per_byte_of_texts
from aunet.evaluation.suites import SUITES, run_suite
from aunet.evaluation.tasks import DEFAULT_TASKS, build_local_tasks
from aunet.io import atomic_write_json, atomic_write_text, read_json
from aunet.memory import logits_bytes
from aunet.training.hardware import device_memory
from aunet.training.records import RunPaths

log = logging.getLogger(__name__)

SCORES_FILE = RunPaths(Path()).scores.name
PROVENANCE_FILE = "scores_provenance.json"
SKIP_KEYS = {"alias", "name", "sample_len", "sample_count", " "}


def set_offline_environment(online: bool = False) -> None:
    """Keep ``datasets`` / ``huggingface_hub`` off the network (read when they are imported: call this first)."""
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_UPDATE_DOWNLOAD_COUNTS", "0")
    if not online:
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")


def eval_dir(loaded: LoadedModel, output_dir: Path | None = None) -> Path:
    """Where results go: ``output_dir``, else ``<run_dir>/eval``, else ``eval/`` next to the checkpoint's folder."""
    if output_dir is not None:
        return Path(output_dir)
    if loaded.run_dir is not None:
        return RunPaths(loaded.run_dir).eval_dir
    if loaded.checkpoint is not None:
        return loaded.checkpoint.parent / RunPaths(Path()).eval_dir.name
    raise EvalError("no run folder to write results into; pass an output directory")


def read_scores(run_dir: Path) -> dict[str, float]:
    """The run's merged ``eval/scores.json`` (empty when it was never evaluated)."""
    return _read_json_object(RunPaths(Path(run_dir)).scores)


def _read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object file, ``{}`` when absent; a truncated or garbled file is an error naming it."""
    if not path.is_file():
        return {}
    value = read_json(path, "delete it and evaluate again")
    if not isinstance(value, dict):
        raise EvalError(f"{path}: expected a JSON object, got {type(value).__name__}; delete it and evaluate again")
    return value


def flatten_results(results: dict[str, Any], names: Iterable[str]) -> dict[str, float]:
    """``{"<name>.<metric>": value}`` from lm-eval's ``results["results"]`` for the requested ``names``.

    lm-eval keys metrics as ``"acc,none"`` (metric, filter): the ``none`` filter is dropped, any other is kept as
    ``<name>.<metric>.<filter>``. Non-numeric values (``"N/A"`` stderr) are skipped.
    """
    out: dict[str, float] = {}
    table = results.get("results", {})
    for name in names:
        for key, value in (table.get(name) or {}).items():
            if key in SKIP_KEYS:
                continue
            metric, _, filt = key.partition(",")
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            if math.isnan(number) and metric.endswith("_stderr"):
                continue  # lm-eval reports no standard error for some metrics (NaN); a NaN score is checked later
            out[f"{name}.{metric}" if filt in ("", "none") else f"{name}.{metric}.{filt}"] = number
    return out


def read_documents(path: Path, text_field: str = "text", max_bytes: int | None = None) -> list[str]:
    """Documents of a text file (the whole file is one document) or of a jsonl file (``text_field`` per line)."""
    path = Path(path)
    if not path.is_file():  # a pipe is not "no such file": it exists, and reading it would wait for a writer
        what = "not a regular file (a folder, pipe or device)" if path.exists() else "no such file"
        raise EvalError(f"--bpb {path}: {what}; give a .txt or .jsonl file")
    docs: list[str] = []
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as handle:
            for n, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)[text_field]
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise EvalError(f"{path}:{n}: expected a JSON object with a {text_field!r} string") from None
                if not isinstance(value, str):
                    raise EvalError(f"{path}:{n}: field {text_field!r} is not a string")
                docs.append(value)
    else:
        docs.append(path.read_bytes().decode("utf-8", errors="replace"))
    if max_bytes is not None:
        kept, total = [], 0
        for doc in docs:
            data = doc.encode("utf-8")[: max(0, max_bytes - total)]
            if not data:
                break
            kept.append(data.decode("utf-8", errors="ignore"))  # drop a character cut at the limit
            total += len(data)
        docs = kept
    return [d for d in docs if d]


def parse_bpb_args(items: Iterable[str]) -> dict[str, Path]:
    """``["NAME=PATH", "PATH"]`` -> ``{name: path}``; the name defaults to the file's stem."""
    out: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or "/" in name or not name:
            name, path = Path(item).stem, item
        if name in out:
            raise EvalError(f"--bpb: two files named {name!r}; write NAME=PATH to tell them apart")
        out[name] = Path(path).expanduser()
    return out


def bits_per_byte_of(loaded: LoadedModel, files: dict[str, Path], *, batch_size: int = 16,
                     max_length: int | None = None, text_field: str = "text", max_bytes: int | None = None,
                     progress: bool = False) -> dict[str, float]:
    """``{"bpb.<name>": bits per byte}`` of each file (see :func:`bits_per_byte_of_texts`)."""
    texts = {}
    for name, path in files.items():
        texts[name] = read_documents(path, text_field, max_bytes)
        if not texts[name]:
            raise EvalError(f"--bpb {path}: no text")
    scores = bits_per_byte_of_texts(loaded, texts, batch_size=batch_size, max_length=max_length, progress=progress)
    return {f"bpb.{name}": value for name, value in scores.items()}


def run_tasks(loaded: LoadedModel, tasks: list[str], *, limit: int | None = None, num_fewshot: int | None = None,
              batch_size: int = 16, max_length: int | None = None, task_data: dict[str, Path] | None = None,
              online: bool = False, log_samples: bool = False, seed: int = 1234,
              bootstrap_iters: int = 1000, progress: bool = True) -> dict[str, Any]:
    """lm-eval's ``simple_evaluate`` on ``tasks`` with the ``aunet`` adapter; returns lm-eval's result dict.
    Without ``progress``, neither our scoring bar nor lm-eval's per-task request bars are drawn (a sweep prints
    one line per run instead)."""
    set_offline_environment(online)
    import lm_eval

    from aunet.evaluation.lm import AUNetLM

    lm = AUNetLM(loaded=loaded, batch_size=batch_size, max_length=max_length, seed=seed, progress=progress)
    kwargs = dict(model=lm, limit=limit, num_fewshot=num_fewshot, bootstrap_iters=bootstrap_iters,
                  log_samples=log_samples, random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed,
                  fewshot_random_seed=seed)
    if online:
        if task_data:
            raise EvalError("--task-data and --online exclude each other")
        from lm_eval.tasks import TaskManager

        with _request_bars(progress):
            return lm_eval.simple_evaluate(tasks=list(tasks), task_manager=TaskManager(), **kwargs)
    with build_local_tasks(list(tasks), task_data) as local, _request_bars(progress):
        return lm_eval.simple_evaluate(tasks=local.names, task_manager=local.task_manager(), **kwargs)


@contextlib.contextmanager
def _request_bars(shown: bool) -> Iterator[None]:
    """lm-eval draws a progress bar per task while it builds the requests (57 for MMLU) and has no switch for it:
    without ``shown``, its ``tqdm`` name is replaced by a pass-through for the duration of the call, and the
    ``datasets`` bars (first read of a task file) are switched off."""
    if shown:
        yield
        return
    import datasets
    import lm_eval.api.task as task_module

    original, datasets_bars = task_module.tqdm, datasets.is_progress_bar_enabled()
    task_module.tqdm = lambda iterable=None, *args, **kwargs: iterable
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        task_module.tqdm = original
        if datasets_bars:
            datasets.enable_progress_bars()


def write_scores(directory: Path, scores: dict[str, float], provenance: dict[str, Any]) -> dict[str, float]:
    """Merge ``scores`` into ``directory/scores.json`` (atomically) and record where each came from."""
    path = directory / SCORES_FILE
    merged = _read_json_object(path)
    merged.update(scores)
    atomic_write_json(path, merged)
    prov_path = directory / PROVENANCE_FILE
    prov = _read_json_object(prov_path)
    prov.update({key: provenance for key in scores})
    atomic_write_json(prov_path, prov)
    return merged


def split_suites(tasks: Iterable[str] | None, suites: Iterable[str] | None = None) -> tuple[list[str], list[str]]:
    """``(lm-eval tasks, suites)``: names of :data:`~aunet.evaluation.suites.SUITES` given among the tasks (as
    ``aunet sweep eval`` passes a sweep's ``eval.tasks``) are suites; unknown suite names are an error."""

    task_list = [t for t in (tasks or []) if t not in SUITES]
    suite_list = list(dict.fromkeys([*(suites or []), *(t for t in (tasks or []) if t in SUITES)]))
    unknown = [s for s in suite_list if s not in SUITES]
    if unknown:
        raise EvalError(f"unknown suite {unknown[0]!r}; known: {', '.join(SUITES)}")
    return task_list, suite_list


def evaluate_loaded(loaded: LoadedModel, tasks: list[str] | None = None, *, limit: int | None = None,
                    num_fewshot: int | None = None, batch_size: int = 16, max_length: int | None = None,
                    task_data: dict[str, Path] | None = None, online: bool = False,
                    bpb: dict[str, Path] | None = None, bpb_text_field: str = "text",
                    bpb_max_bytes: int | None = None, suites: list[str] | None = None,
                    output_dir: Path | None = None, log_samples: bool = False,
                    seed: int = 1234, progress: bool = False) -> dict[str, Any]:
    """Run tasks, suites and/or bits-per-byte files on a loaded model and record the results (see the module
    docstring). ``suites`` (:mod:`aunet.evaluation.suites`) may also be named among ``tasks``; ``limit`` applies
    to them too (sentences or documents per text).

    Returns ``{"scores": new flat scores, "all_scores": merged scores.json, "results_file": path or None,
    "eval_dir": path, "seconds": wall time}``.
    """
    tasks, suites = split_suites(tasks, suites)
    started = time.time()
    out_dir = eval_dir(loaded, output_dir)
    _read_json_object(out_dir / SCORES_FILE)  # a damaged scores file fails before minutes of evaluation
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    scores: dict[str, float] = {}
    results_file = None
    if tasks:
        results = run_tasks(loaded, tasks, limit=limit, num_fewshot=num_fewshot, batch_size=batch_size,
                            max_length=max_length, task_data=task_data, online=online, log_samples=log_samples,
                            seed=seed, progress=progress)
        from lm_eval.utils import handle_non_serializable

        # A CUTE group is reported with each of its tasks (an MMLU group without its 57 subjects).
        scores.update(flatten_results(results, [n for t in tasks for n in (t, *members(t))]))
        _check_finite(scores, loaded, out_dir)  # before lm-eval's own file is written: no NaN result on disk
        out_dir.mkdir(parents=True, exist_ok=True)  # only once there is something to write
        results_file = out_dir / f"lm_eval-{stamp}.json"
        atomic_write_text(results_file, json.dumps(results, indent=2, default=handle_non_serializable,
                                                   ensure_ascii=False) + "\n")
    if bpb:
        scores.update(bits_per_byte_of(loaded, bpb, batch_size=batch_size, max_length=max_length,
                                       text_field=bpb_text_field, max_bytes=bpb_max_bytes, progress=progress))
    for suite in suites:
        scores.update(run_suite(loaded, suite, limit=limit, batch_size=batch_size, max_length=max_length,
                                progress=progress))
    _check_finite(scores, loaded, out_dir)
    provenance = {"checkpoint": str(loaded.checkpoint) if loaded.checkpoint else None, "limit": limit,
                  "num_fewshot": num_fewshot, "online": online,
                  "task_data": {k: str(v) for k, v in (task_data or {}).items()},
                  "bpb_files": {k: str(v) for k, v in (bpb or {}).items()}, "bpb_max_bytes": bpb_max_bytes,
                  "suites": suites, "max_length": max_length,
                  "results_file": results_file.name if results_file else None, "time": stamp}
    merged = write_scores(out_dir, scores, provenance)
    return {"scores": scores, "all_scores": merged, "results_file": results_file, "eval_dir": out_dir,
            "seconds": time.time() - started}


def check_eval_memory(loaded: LoadedModel, batch_size: int, max_length: int | None = None) -> None:
    """Refuse a ``--batch-size`` (with ``--max-length``) whose logits alone exceed the memory of the model's device
    (:func:`aunet.memory.logits_bytes`, a floor: activations come on top), before any text is read: a batch size
    with a few zeros too many would allocate until the machine gives up. The message gives the most that fit."""
    available = device_memory(loaded.device)
    if available is None:
        return
    weights = sum(p.numel() * p.element_size() for p in loaded.model.parameters())
    needed = logits_bytes(loaded.config, batch_size, max_length)
    if weights + needed > available:
        fits = max(0, (available - weights) // logits_bytes(loaded.config, 1, max_length))
        raise EvalError(f"--batch-size {batch_size}: needs about {needed / 2**30:.3g} GiB for the logits of one batch "
                        f"alone, more than the {available / 2**30:.3g} GiB of this {loaded.device.type}; at most "
                        f"{fits} fit (give --batch-size {max(1, min(fits, 16))}, or a smaller --max-length)")


def _check_finite(scores: dict[str, float], loaded: LoadedModel, out_dir: Path) -> None:
    """An EvalError naming the first score that is not a finite number: nothing of the evaluation is written."""
    bad = sorted(key for key, value in scores.items() if not math.isfinite(value))
    if bad:
        raise EvalError(f"{loaded.checkpoint or out_dir}: score {bad[0]} is {scores[bad[0]]} (not a finite number); "
                        "nothing is written: a NaN is never a result (diverged weights?)")


def evaluate_run(run_dir: str | Path, tasks: list[str] | tuple[str, ...] = DEFAULT_TASKS, limit: int | None = None,
                 num_fewshot: int | None = None, batch_size: int = 16, device: str = "cpu", *,
                 dtype: str | None = None, max_length: int | None = None, task_data: dict[str, Path] | None = None,
                 online: bool = False, bpb: dict[str, Path] | None = None) -> dict[str, Any]:
    """Evaluate a run folder (or checkpoint) on ``tasks`` and record the scores; for ``aunet sweep eval``.

    Loads ``checkpoints/final.ckpt`` (else ``last.ckpt``), runs the tasks offline from the data directory (see
    :mod:`aunet.evaluation.tasks`), writes ``<run_dir>/eval/``. A suite name among
    ``tasks`` (``multilingual``) runs that suite. Returns what :func:`evaluate_loaded` returns;
    ``result["scores"]`` holds the new ``"<task>.<metric>"`` values.
    """
    set_offline_environment(online)
    loaded = load_checkpoint(run_dir, device=device, dtype=dtype)
    return evaluate_loaded(loaded, list(tasks), limit=limit, num_fewshot=num_fewshot, batch_size=batch_size,
                           max_length=max_length, task_data=task_data, online=online, bpb=bpb)
