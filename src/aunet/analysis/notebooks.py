"""Finding and executing the analysis notebooks headlessly, with parameters injected as papermill does.

The notebooks are the jupytext percent scripts ``analysis/<name>.py`` of the repository (paired with ``.ipynb``
files for Jupyter); the ``.py`` file is the source of truth and is what gets executed. They are found in one place
only: ``$AUNET_ANALYSIS_DIR`` when set, else the ``analysis/`` folder next to ``src/`` of the checkout this package
is installed from (the project installs itself editable, ``pip install -e .``). There is no second copy inside the
package to drift out of date; a non-editable install sets ``AUNET_ANALYSIS_DIR`` to a checkout's ``analysis/``.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aunet.errors import UserError
from aunet.io import atomic_write_text

NOTEBOOKS = ("scaling", "downstream", "hyperparameters", "throughput", "multilingual", "chunking")
ANALYSIS_DIR_ENV = "AUNET_ANALYSIS_DIR"
KERNEL = "python3"


class NotebookError(UserError):
    """A notebook that cannot be found or run; the message names it and the fix."""


def notebooks_dir() -> Path:
    """The folder holding the notebooks (see the module docstring for where it is looked for)."""
    env = os.environ.get(ANALYSIS_DIR_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise NotebookError(f"{ANALYSIS_DIR_ENV}={env} is not a directory; point it at the repository's analysis/")
        return path
    # src/aunet/analysis/notebooks.py -> parents[3] is the checkout root (parents[2] is src/).
    root = Path(__file__).resolve().parents[3]
    path = root / "analysis"
    if not (path / f"{NOTEBOOKS[0]}.py").is_file():
        raise NotebookError(f"analysis notebooks not found next to {root / 'src'}; install aunet editable from a "
                            f"checkout (pip install -e .) or set {ANALYSIS_DIR_ENV} to its analysis/ folder")
    return path


def notebook_parameters(name: str) -> dict[str, Any]:
    """The parameters notebook ``name`` declares (its cell tagged ``parameters``) with their default values.

    Read from the source without running it: each ``NAME = literal`` line of the cell."""
    import ast

    lines = notebook_path(name).read_text(encoding="utf-8").splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("# %%") and '"parameters"' in line), None)
    if start is None:
        return {}
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("# %%")), len(lines))
    out: dict[str, Any] = {}
    for node in ast.parse("\n".join(lines[start + 1:end])).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return out


def notebook_path(name: str) -> Path:
    """The percent script of notebook ``name`` (one of :data:`NOTEBOOKS`)."""
    path = notebooks_dir() / f"{name}.py"
    if not path.is_file():
        raise NotebookError(f"{path}: missing; the analysis notebooks are {', '.join(NOTEBOOKS)}")
    return path


def inject_parameters(nb: Any, parameters: dict[str, Any]) -> Any:
    """Insert a cell tagged ``injected-parameters`` that assigns ``parameters`` right after the cell tagged
    ``parameters`` (at the top when there is none), so the notebook's defaults are overridden; returns ``nb``."""
    import nbformat

    source = "# Parameters injected by aunet analyze\n" + "\n".join(f"{k} = {v!r}" for k, v in parameters.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    nb.cells.insert(tagged[0] + 1 if tagged else 0, cell)
    return nb


@dataclass(frozen=True)
class NotebookRun:
    """The outcome of one notebook: where the executed copy was saved, seconds taken, and the error (None if ok)."""

    name: str
    saved_to: Path | None
    seconds: float
    error: str | None


def execute_notebook(name: str, results_dir: str | Path, output_dir: str | Path | None = None, *, timeout: float = 600,
                     save_to: str | Path | None = None, extra_parameters: dict[str, Any] | None = None) -> NotebookRun:
    """Execute notebook ``name`` on ``results_dir`` with kernel ``python3`` and a headless matplotlib backend.

    ``results_dir`` and ``output_dir`` (default: ``results_dir``) are injected as absolute paths, plus any
    ``extra_parameters``. ``timeout`` is per cell, in seconds. The executed notebook (outputs included, also when a
    cell failed) is written to ``save_to`` when given. A failing cell does not raise: its error is returned as one
    line in :attr:`NotebookRun.error`.
    """
    import jupytext
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    path = notebook_path(name)
    nb = jupytext.read(path)
    params = {"results_dir": str(Path(results_dir).resolve()),
              "output_dir": str(Path(output_dir or results_dir).resolve()), **(extra_parameters or {})}
    inject_parameters(nb, params)
    client = NotebookClient(nb, timeout=timeout, kernel_name=KERNEL,
                            resources={"metadata": {"path": str(path.parent)}})
    started = time.perf_counter()
    error = None
    try:
        # The kernel process's own stderr carries only start-up chatter (cell output travels over the kernel
        # protocol), so it is silenced to keep the command's output readable.
        client.execute(env={**os.environ, "MPLBACKEND": "Agg"}, stderr=subprocess.DEVNULL)
    except CellExecutionError as exc:
        error = _one_line(exc)
    except (CellTimeoutError, TimeoutError):
        error = f"a cell ran longer than {timeout:g} s (raise --timeout)"
    except DeadKernelError as exc:
        error = f"the kernel died: {exc}"
    seconds = time.perf_counter() - started
    saved = None
    if save_to is not None:
        saved = Path(save_to)
        saved.parent.mkdir(parents=True, exist_ok=True)

        atomic_write_text(saved, nbformat.writes(nb))
    return NotebookRun(name=name, saved_to=saved, seconds=seconds, error=error)


def _one_line(exc: Exception) -> str:
    """The exception line of a cell error (``ValueError: ...``) rather than nbclient's multi-line report."""
    ename, evalue = getattr(exc, "ename", ""), getattr(exc, "evalue", "")
    if ename:
        return f"{ename}: {evalue}".strip().splitlines()[0]
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
