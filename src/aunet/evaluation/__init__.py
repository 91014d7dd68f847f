"""Evaluation: the lm-eval adapter (model ``aunet``), local benchmark tasks, bits per byte and cascaded generation.

Importing this package is cheap (no torch, no lm-eval): ``aunet-lm-eval.pth`` imports :mod:`.plugin` in every
Python process of the environment. The public API is loaded on first use:

* :func:`load_checkpoint` -> :class:`LoadedModel` (model in eval mode, config, tokenizer, run folder);
* :class:`Scorer` (log-likelihoods, batched), :class:`AUNetLM` (lm-eval ``LM``);
* :func:`generate` (cascaded AU-Net decoding, KV-cached BPE decoding);
* :func:`evaluate_run` / :func:`evaluate_loaded` (tasks and bits per byte into ``<run_dir>/eval/``),
  :func:`read_scores`, :func:`build_local_tasks`.
"""

from __future__ import annotations

from importlib import import_module

_EXPORTS = {
    "LoadedModel": "aunet.evaluation.checkpoint", "load_checkpoint": "aunet.evaluation.checkpoint",
    "Scorer": "aunet.evaluation.scoring", "AUNetLM": "aunet.evaluation.lm",
    "generate": "aunet.evaluation.generation", "Generation": "aunet.evaluation.generation",
    "evaluate_run": "aunet.evaluation.evaluate", "evaluate_loaded": "aunet.evaluation.evaluate",
    "read_scores": "aunet.evaluation.evaluate", "build_local_tasks": "aunet.evaluation.tasks",
    "EvalError": "aunet.evaluation.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'aunet.evaluation' has no attribute {name!r}")
