"""Checks of user task files (``--task-data TASK=PATH``) before an evaluation starts.

A stock lm-eval task reads fixed fields of its rows (``question`` and ``answerKey`` for ARC, ``ctx_a`` for HellaSwag,
``goal`` for PIQA...), through Jinja templates and Python functions of its own. Given a file with other fields,
lm-eval fails deep inside its template engine or a ``process_docs`` function, with a traceback that does not name the
file. Rather than keep a second copy of every task's schema, :func:`check_task_data` builds each task on its file
the way the evaluation will (which loads the rows and runs the task's own preprocessing), then renders the prompt,
target and choices of its first rows; any failure becomes one :class:`EvalError` line naming the file, the task and
the missing field. The dataset cache it fills is the one the evaluation then reads.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
from pathlib import Path

from aunet.evaluation.errors import EvalError

ROWS_CHECKED = 3


def _reason(exc: BaseException) -> str:
    """What went wrong, in a few words: ``missing field 'ctx_a'`` for the usual KeyError and undefined names."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    name = type(exc).__name__
    if name == "UndefinedError" and text.endswith(" is undefined"):  # jinja2: "'question' is undefined"
        return f"missing field {text[: -len(' is undefined')]}"
    if isinstance(exc, KeyError):
        return f"missing field {text}"
    cause = exc.__cause__ or exc.__context__
    if name == "DatasetGenerationError" and cause is not None:  # the json/csv/parquet reader's own complaint
        return _reason(cause)
    return f"{name}: {text[:160]}" if text else name


def _task_to_build(folder: Path, name: str) -> str:
    """The task to build for the file of ``name``: itself, or for MMLU one subject (all share one file and schema)."""
    if name != "mmlu":
        return name
    subjects = sorted(p.stem for p in folder.glob("mmlu_*.yaml"))
    if not subjects:  # pragma: no cover - build_local_tasks writes them before calling us
        raise EvalError("MMLU task files missing; regenerate the local tasks")
    return subjects[0]


def _check_json_lines(file: Path) -> None:
    """Every line of a ``.jsonl`` file is a JSON object (pyarrow's own message names neither file nor line)."""
    with open(file, "rb") as handle:
        for n, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
                raise EvalError(f"{file}:{n}: not valid JSON ({str(exc).splitlines()[0]}); fix or remove the line") \
                    from None
            if not isinstance(row, dict):
                raise EvalError(f"{file}:{n}: expected a JSON object (one row per line), got {type(row).__name__}")


@contextlib.contextmanager
def _quiet(*names: str):
    """Silence libraries that log their failures before raising them: the user gets our one line instead."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def check_task_data(folder: Path, task_data: dict[str, Path]) -> None:
    """Raise EvalError when a ``--task-data`` file does not have the fields its stock task reads.

    ``folder`` holds the generated task files (see :func:`aunet.evaluation.tasks.build_local_tasks`).
    """
    if not task_data:
        return
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(folder), include_defaults=False)
    for name, file in task_data.items():
        if file.name.lower().endswith(".jsonl"):
            _check_json_lines(file)
        fix = (f"give rows with the fields of lm-eval's {name} dataset (its hub schema), or evaluate the stock "
               "task with --online")
        try:
            with _quiet("datasets", "lm_eval", "lm-eval"):
                built = manager.load([_task_to_build(folder, name)])["tasks"]
        except EvalError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure to build the task on this file is the file's
            raise EvalError(f"{file}: not usable as the data of task {name!r} ({_reason(exc)}); {fix}") from None
        for task in built.values():
            try:
                docs = list(itertools.islice(iter(task.eval_docs), ROWS_CHECKED))
            except Exception as exc:  # noqa: BLE001
                raise EvalError(f"{file}: not usable as the data of task {name!r} ({_reason(exc)}); {fix}") from None
            if not docs:
                raise EvalError(f"{file}: no rows for task {name!r}; add rows (one JSON object per line)")
            for row, doc in enumerate(docs, 1):
                try:
                    task.doc_to_text(doc)
                    task.doc_to_target(doc)
                    if task.OUTPUT_TYPE == "multiple_choice":
                        task.doc_to_choice(doc)
                except Exception as exc:  # noqa: BLE001
                    raise EvalError(f"{file}: row {row} does not fit task {name!r} ({_reason(exc)}); {fix}") from None
