"""lm-eval's stock tasks on local files: HellaSwag, ARC-Easy, ARC-Challenge, MMLU, and any stock task pointed at a file;
plus CUTE, which lm-eval lacks, as tasks of our own (:mod:`aunet.evaluation.cute`).

Each local task is a generated YAML file that ``include``s the stock task file of the installed lm-eval (absolute
path) and overrides only where the data comes from: ``dataset_path: json`` with absolute ``data_files``, splits we
do not ship set to null. Preprocessing (``process_docs``), prompts, targets and metrics stay lm-eval's; the one
addition is the ``acc_bytes`` metric (and ``acc_norm`` where the stock list lacks it) on multiple-choice tasks, so
that byte and BPE models are compared by the same per-byte normalisation. Task and group names are the stock names
(``hellaswag``, ``mmlu``, ``mmlu_anatomy``...), so local and ``--online`` results have the same keys.

MMLU: the data directory holds all 57 subjects in one file with a ``subject`` field, while each stock subject task
selects its subject through the hub's config name. We split the file by subject once (cached under
``AUNET_CACHE_DIR``, keyed by the source's size and mtime) and give each subject task its own file; the stock
group files (``mmlu`` -> ``mmlu_stem``... -> subject tags) are copied unchanged, so the ``mmlu`` score is lm-eval's
own size-weighted aggregation.

Everything generated goes to a temporary folder (removed on :meth:`LocalTasks.close`); Arrow caches of ``datasets``
go under ``AUNET_CACHE_DIR`` (``cache_dir`` of ``load_dataset``), never into the data directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aunet.errors import UserError
from aunet.evaluation.cute import is_cute, write_cute_tasks
from aunet.evaluation.errors import EvalError
from aunet.evaluation.task_files import check_task_data
from aunet.paths import cache_dir, data_dir

BENCHMARKS = "benchmarks"
MC_METRICS = ("acc", "acc_norm", "acc_bytes")
LOCAL_TYPES = ("multiple_choice", "loglikelihood", "loglikelihood_rolling")


@dataclass(frozen=True)
class BuiltinTask:
    """A stock task with local data: its stock YAML (relative to ``lm_eval/tasks``) and files per split, relative to
    the data directory. ``eval_split`` is the split ``--task-data`` replaces."""

    stock: str
    files: dict[str, str]
    eval_split: str


BUILTIN_TASKS: dict[str, BuiltinTask] = {
    "hellaswag": BuiltinTask("hellaswag/hellaswag.yaml",
                             {"validation": "benchmarks/hellaswag/validation.jsonl"}, "validation"),
    "arc_easy": BuiltinTask("arc/arc_easy.yaml", {"test": "benchmarks/arc_easy/test.jsonl",
                                                  "validation": "benchmarks/arc_easy/validation_first100.jsonl"},
                            "test"),
    "arc_challenge": BuiltinTask("arc/arc_challenge.yaml",
                                 {"test": "benchmarks/arc_challenge/test.jsonl",
                                  "validation": "benchmarks/arc_challenge/validation_first100.jsonl"}, "test"),
}
MMLU_FILES = {"test": "benchmarks/mmlu/test.jsonl", "dev": "benchmarks/mmlu/dev.jsonl"}
MMLU_GROUP_FILES = ("_mmlu.yaml", "_mmlu_humanities.yaml", "_mmlu_other.yaml", "_mmlu_social_sciences.yaml",
                    "_mmlu_stem.yaml")
DEFAULT_TASKS = ("hellaswag", "arc_easy", "arc_challenge", "mmlu")


def stock_dir() -> Path:
    """The installed lm-eval's task folder."""
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).parent


MMLU_CATEGORIES = ("mmlu", "mmlu_stem", "mmlu_other", "mmlu_social_sciences", "mmlu_humanities")


def is_mmlu(name: str) -> bool:
    """The MMLU group, one of its categories or a stock subject task (``mmlu_anatomy``)."""
    if name in MMLU_CATEGORIES:
        return True
    return name.startswith("mmlu_") and (stock_dir() / "mmlu" / "default" / f"{name}.yaml").is_file()


def parse_task_data(items: list[str] | None) -> dict[str, Path]:
    """``["arc_easy=/x.jsonl"]`` -> ``{"arc_easy": Path("/x.jsonl")}``; every file must exist."""
    out: dict[str, Path] = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise EvalError(f"--task-data {item!r}: expected TASK=PATH")
        file = Path(path.strip()).expanduser().resolve()
        if not file.is_file():
            raise EvalError(f"--task-data {name}: {file} is not a file")
        out[name.strip()] = file
    return out


def _dataset_path(file: Path) -> str:
    suffixes = "".join(file.suffixes[-2:]).lower()
    for ext, builder in ((".jsonl", "json"), (".json", "json"), (".jsonl.gz", "json"), (".csv", "csv"),
                         (".parquet", "parquet")):
        if suffixes.endswith(ext):
            return builder
    raise EvalError(f"{file}: unsupported data file; use .jsonl, .json, .csv or .parquet")


def _with_mc_metrics(metric_list: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The stock metric list plus acc, acc_norm and acc_bytes where missing (multiple choice)."""
    metrics = [dict(m) for m in (metric_list or [])]
    present = {m.get("metric") for m in metrics}
    for name in MC_METRICS:
        if name not in present:
            metrics.append({"metric": name, "aggregation": "mean", "higher_is_better": True})
    return metrics


@dataclass
class LocalTasks:
    """Generated task files for one evaluation; use as a context manager (the folder is removed on exit).

    Attributes:
        names: what to pass to ``simple_evaluate(tasks=...)`` (task and group names).
        folder: the temporary folder holding the YAML files (the ``include_path`` of the task manager).
    """

    names: list[str]
    folder: Path
    _tmp: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    def task_manager(self) -> Any:
        """An lm-eval TaskManager over the generated files only (no 6-second index of every stock task)."""
        from lm_eval.tasks import TaskManager

        return TaskManager(include_path=str(self.folder), include_defaults=False)

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "LocalTasks":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build_local_tasks(tasks: list[str], task_data: dict[str, Path] | None = None,
                      folder: Path | None = None) -> LocalTasks:
    """Generate the task files for ``tasks`` (stock names) from the data directory and ``task_data`` overrides.

    Built-in tasks read ``$AUNET_DATA_DIR/benchmarks``; any other stock task needs ``task_data[name]`` (a local
    file for its evaluation split). Raises EvalError for an unknown task, a missing file or an unsupported kind.
    The files go to a temporary folder removed on close, or to ``folder`` (kept) when given.
    """
    task_data = dict(task_data or {})
    unknown_data = set(task_data) - set(tasks)
    if unknown_data:
        raise EvalError(f"--task-data for {', '.join(sorted(unknown_data))}, which is not in --tasks")
    tmp = tempfile.TemporaryDirectory(prefix="aunet-tasks-") if folder is None else None
    folder = Path(tmp.name) if tmp is not None else Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        hf_cache = str(cache_dir().resolve() / "hf_datasets")
        cute = [t for t in tasks if is_cute(t)]
        if cute:  # CUTE is not a stock task: its files are ours (aunet.evaluation.cute)
            for name in cute:
                if name in task_data:
                    raise EvalError(f"--task-data {name}: CUTE tasks read $AUNET_DATA_DIR/benchmarks/cute")
            write_cute_tasks(folder, cute, hf_cache)
        others = [t for t in tasks if t not in BUILTIN_TASKS and not is_mmlu(t) and not is_cute(t)]
        for name in others:
            if name not in task_data:
                known = ", ".join([*BUILTIN_TASKS, "mmlu", "cute"])
                raise EvalError(f"task {name!r} has no local data; built-in: {known}; point another stock task "
                                f"at a file with --task-data {name}=PATH, or use --online")
        index = _stock_index(others) if others else {}
        mmlu = [t for t in tasks if is_mmlu(t)]
        if mmlu:  # every MMLU name (group, category, subject) is served by one set of generated files
            _write_mmlu(folder, task_data.get("mmlu"), hf_cache)
        for name in tasks:
            if is_cute(name):
                continue
            if is_mmlu(name):
                if name in task_data and name != "mmlu":
                    raise EvalError(f"--task-data {name}: give the MMLU file as --task-data mmlu=PATH")
            elif name in BUILTIN_TASKS:
                _write_builtin(folder, name, BUILTIN_TASKS[name], task_data.get(name), hf_cache)
            else:
                _write_other(folder, name, index, task_data[name], hf_cache)
        check_task_data(folder, task_data)  # a wrong schema fails here, naming the file
    except BaseException:
        if tmp is not None:
            tmp.cleanup()
        raise
    return LocalTasks(names=list(tasks), folder=folder, _tmp=tmp)


def _dump(path: Path, cfg: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")


def _data_file(relative: str) -> Path:
    file = data_dir() / relative  # type: ignore[operator]
    if not file.is_file():
        raise EvalError(f"{file}: benchmark file missing from the data directory (AUNET_DATA_DIR)")
    return file


def _write_builtin(folder: Path, name: str, task: BuiltinTask, override: Path | None, hf_cache: str) -> None:
    from lm_eval.tasks._yaml_loader import load_yaml

    stock_file = stock_dir() / task.stock
    stock = load_yaml(stock_file, resolve_func=False)
    if override is not None:  # a user file replaces the evaluation split; few-shot examples come from it too
        files = {task.eval_split: override}
    else:
        files = {split: _data_file(rel) for split, rel in task.files.items()}
    cfg: dict[str, Any] = {
        "include": str(stock_file), "task": name, "tag": [], "dataset_path": _dataset_path(files[task.eval_split]),
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {k: str(v) for k, v in files.items()}, "cache_dir": hf_cache},
        "training_split": None, "validation_split": "validation" if "validation" in files else None,
        "test_split": "test" if "test" in files else None, "metric_list": _with_mc_metrics(stock.get("metric_list")),
    }
    _dump(folder / f"{name}.yaml", cfg)


def _write_other(folder: Path, name: str, index: dict[str, Path], file: Path, hf_cache: str) -> None:
    from lm_eval.tasks._yaml_loader import load_yaml

    if name not in index:
        raise EvalError(f"task {name!r}: not a stock lm-eval task (groups and tags cannot take --task-data)")
    stock_file = index[name]
    stock = load_yaml(stock_file, resolve_func=False, recursive=True)
    kind = stock.get("output_type", "generate_until")
    if kind not in LOCAL_TYPES:
        raise EvalError(f"task {name!r} is a {kind} task; --task-data supports {', '.join(LOCAL_TYPES)} tasks")
    split = "test" if stock.get("test_split") else "validation"
    cfg: dict[str, Any] = {
        "include": str(stock_file), "task": name, "tag": [], "dataset_path": _dataset_path(file), "dataset_name": None,
        "dataset_kwargs": {"data_files": {split: str(file)}, "cache_dir": hf_cache}, "training_split": None,
        "validation_split": split if split == "validation" else None, "test_split": split if split == "test" else None,
        "fewshot_split": None,
    }
    if kind == "multiple_choice":
        cfg["metric_list"] = _with_mc_metrics(stock.get("metric_list"))
    _dump(folder / f"{name}.yaml", cfg)


def _stock_index(names: list[str]) -> dict[str, Path]:
    """Stock YAML file of each task name.

    Most stock tasks live in ``<name>.yaml``: those files are found by name and checked. Only the others need
    lm-eval's full index of every task, which parses some 15,000 files (several seconds to tens of seconds).
    """
    from lm_eval.tasks._yaml_loader import load_yaml

    found: dict[str, Path] = {}
    for name in names:
        for path in sorted(stock_dir().rglob(f"{name}.yaml")):
            try:
                cfg = load_yaml(path, resolve_func=False, recursive=True)
            except Exception:  # noqa: BLE001 - a stock file we cannot read is simply not a match
                continue
            if cfg.get("task") == name:
                found[name] = path
                break
    missing = [n for n in names if n not in found]
    if missing:
        from lm_eval.tasks import TaskManager

        index = TaskManager().task_index
        found.update({n: index[n].yaml_path for n in missing if n in index and index[n].yaml_path is not None})
    return found


def _write_mmlu(folder: Path, override: Path | None, hf_cache: str) -> None:
    """Subject tasks including the stock ones, each on its own split file, plus the stock group files."""
    from lm_eval.tasks._yaml_loader import load_yaml

    stock = stock_dir() / "mmlu" / "default"
    sources = {"test": override or _data_file(MMLU_FILES["test"])}
    if override is None:
        sources["dev"] = _data_file(MMLU_FILES["dev"])
    split_dir = _split_by_subject(sources)
    for stock_file in sorted(stock.glob("mmlu_*.yaml")):
        cfg_stock = load_yaml(stock_file, resolve_func=False, recursive=False)
        subject, task = cfg_stock["dataset_name"], cfg_stock["task"]
        files = {split: split_dir / f"{subject}.{split}.jsonl" for split in sources}
        files = {split: path for split, path in files.items() if path.is_file()}
        if "test" not in files:
            raise EvalError(f"MMLU data has no rows for subject {subject!r}; every stock subject needs its rows")
        cfg = {"include": str(stock_file), "dataset_path": "json", "dataset_name": None,
               "dataset_kwargs": {"data_files": {k: str(v) for k, v in files.items()}, "cache_dir": hf_cache},
               "test_split": "test", "fewshot_split": "dev" if "dev" in files else None,
               "metric_list": _with_mc_metrics(None)}
        _dump(folder / f"{task}.yaml", cfg)
    for name in MMLU_GROUP_FILES:
        shutil.copyfile(stock / name, folder / f"group{name}")


def _split_by_subject(sources: dict[str, Path]) -> Path:
    """Write ``<subject>.<split>.jsonl`` for every subject; cached by the sources' paths, sizes and mtimes."""
    key = hashlib.sha256(json.dumps(
        {split: [str(p), p.stat().st_size, p.stat().st_mtime_ns] for split, p in sorted(sources.items())}
    ).encode()).hexdigest()[:16]
    out = cache_dir().resolve() / "mmlu_by_subject" / key
    done = out / ".complete"
    if done.is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    for split, path in sources.items():
        rows: dict[str, list[str]] = {}
        with path.open(encoding="utf-8") as handle:
            for n, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    subject = json.loads(line)["subject"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise EvalError(f"{path}:{n}: not an MMLU row with a 'subject' field") from None
                rows.setdefault(subject, []).append(line if line.endswith("\n") else line + "\n")
        for subject, lines in rows.items():
            target = out / f"{subject}.{split}.jsonl"
            tmp = target.with_suffix(".tmp")
            tmp.write_text("".join(lines), encoding="utf-8")
            os.replace(tmp, target)
    done.write_text("ok\n")
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m aunet.evaluation.tasks DIR``: write the local task files for lm-eval's own CLI.

    Then ``lm_eval --model aunet --model_args checkpoint=RUN --include_path DIR --tasks hellaswag,mmlu`` runs the
    same tasks offline (with HF_DATASETS_OFFLINE=1): files in ``--include_path`` override the stock tasks of the
    same name. The files hold absolute paths into the data directory and the cache; regenerate them when those move.
    """
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m aunet.evaluation.tasks", description=main.__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="where to write the YAML files (created)")
    parser.add_argument("--tasks", default=",".join(DEFAULT_TASKS), help="comma-separated task names")
    parser.add_argument("--task-data", action="append", default=[], metavar="TASK=PATH")
    args = parser.parse_args(argv)
    try:
        names = [t.strip() for t in args.tasks.split(",") if t.strip()]
        build_local_tasks(names, parse_task_data(args.task_data), folder=args.folder)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.folder}; run: lm_eval --model aunet --model_args checkpoint=RUN "
          f"--include_path {args.folder} --tasks {','.join(names)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
