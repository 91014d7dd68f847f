"""The lm-eval model ``aunet``: any checkpoint of this project (AU-Net or BPE) behind lm-eval's ``LM`` interface.

    lm_eval --model aunet --model_args checkpoint=results/runs/<run-id> --tasks hellaswag
    lm_eval.simple_evaluate(model=AUNetLM(checkpoint=...), tasks=[...])

Model arguments (``--model_args key=value,...``): ``checkpoint`` (run folder or ``.ckpt``), ``batch_size``,
``device`` (cpu, cuda, auto), ``dtype`` (float32, bfloat16, float64), ``max_length`` (input positions, BOS
included; default the training length), ``rolling_stride`` (see :mod:`aunet.evaluation.scoring`), ``seed``
(sampling). Scoring semantics are those of :class:`~aunet.evaluation.scoring.Scorer`; generation is
:func:`~aunet.evaluation.generation.generate` (cascaded for AU-Net), one request at a time, longest prompt first.
``max_gen_toks`` counts the model's units: bytes for AU-Net, tokens for BPE.
"""

from __future__ import annotations

from typing import Any

from lm_eval.api.model import LM

from aunet.evaluation.checkpoint import LoadedModel, load_checkpoint
from aunet.evaluation.errors import EvalError
from aunet.evaluation.generation import generate
from aunet.evaluation.scoring import Scorer

DEFAULT_BATCH_SIZE = 16
DEFAULT_MAX_GEN = 256


def _int_or_none(value: Any, key: str) -> int | None:
    if value is None or value == "" or str(value).startswith("auto"):  # lm-eval's "auto" / "auto:N"
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise EvalError(f"model_args {key}={value!r}: expected an integer") from None


class AUNetLM(LM):
    """lm-eval adapter for AU-Net and BPE checkpoints.

    Args:
        checkpoint: run folder or ``.ckpt`` file (ignored when ``loaded`` is given).
        loaded: an already loaded model (the ``aunet eval`` command and tests pass one).
        batch_size: rows per forward pass (``auto`` means the default, 16).
        max_batch_size: accepted for lm-eval's CLI, unused.
        device, dtype: where and in which precision to run.
        max_length, rolling_stride: see :class:`~aunet.evaluation.scoring.Scorer`.
        seed: seed of sampled generation.
    """

    def __init__(self, checkpoint: str | None = None, *, loaded: LoadedModel | None = None,
                 batch_size: int | str | None = DEFAULT_BATCH_SIZE, max_batch_size: int | None = None,
                 device: str | None = "cpu", dtype: str | None = None, max_length: int | str | None = None,
                 rolling_stride: int | str | None = None, seed: int = 1234, progress: bool = True,
                 **unused: Any) -> None:
        super().__init__()
        self.progress = progress  # False: no bars even where lm-eval asks for them (sweep evaluations)
        if unused:
            raise EvalError(f"unknown model_args for aunet: {', '.join(sorted(unused))}; known: checkpoint, "
                            "batch_size, device, dtype, max_length, rolling_stride, seed")
        if loaded is None:
            if not checkpoint:
                raise EvalError("the aunet model needs checkpoint=RUN_DIR_OR_CKPT in --model_args")
            loaded = load_checkpoint(checkpoint, device=device or "cpu", dtype=dtype, device_fallback=True)
        self.loaded = loaded
        self.scorer = Scorer(loaded, batch_size=_int_or_none(batch_size, "batch_size") or DEFAULT_BATCH_SIZE,
                             max_length=_int_or_none(max_length, "max_length"),
                             rolling_stride=_int_or_none(rolling_stride, "rolling_stride"))
        self.seed = int(seed)
        self._device = loaded.device

    # --- metadata lm-eval records -------------------------------------------------------------------------------

    @property
    def tokenizer_name(self) -> str:
        return self.loaded.family.tokenizer_label()

    def get_model_info(self) -> dict[str, Any]:
        return {"aunet_checkpoint": str(self.loaded.checkpoint) if self.loaded.checkpoint else None,
                "aunet_family": self.loaded.config.family, "aunet_max_length": self.scorer.max_length,
                "aunet_unit": self.scorer.unit}

    # --- the three request types --------------------------------------------------------------------------------

    def loglikelihood(self, requests: list, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """``(sum of log-probs of the continuation, is_greedy)`` per ``(context, continuation)`` request."""
        pairs = [tuple(r.args) for r in requests]
        results = self.scorer.loglikelihood(pairs, progress=self.progress and not disable_tqdm)
        for pair, result in zip(pairs, results):
            self.cache_hook.add_partial("loglikelihood", pair, result)
        return results

    def loglikelihood_rolling(self, requests: list, disable_tqdm: bool = False) -> list[float]:
        """Log-likelihood of each whole document (every unit scored once, overlapping windows)."""
        texts = [r.args[0] for r in requests]
        results = self.scorer.loglikelihood_rolling(texts, progress=self.progress and not disable_tqdm)
        for text, result in zip(texts, results):
            self.cache_hook.add_partial("loglikelihood_rolling", (text,), result)
        return results

    def generate_until(self, requests: list, disable_tqdm: bool = False) -> list[str]:
        """Continuation of each context until a stop string, EOS or ``max_gen_toks`` units."""
        order = sorted(range(len(requests)), key=lambda i: -len(requests[i].args[0]))
        out: list[str] = [""] * len(requests)
        iterator = order
        if self.progress and not disable_tqdm:
            from tqdm import tqdm

            iterator = tqdm(order, desc="generating", unit="request")
        for i in iterator:
            context, kwargs = requests[i].args
            kwargs = dict(kwargs or {})
            until = kwargs.pop("until", None) or []
            if isinstance(until, str):
                until = [until]
            max_gen = int(kwargs.pop("max_gen_toks", DEFAULT_MAX_GEN))
            do_sample = bool(kwargs.pop("do_sample", False))
            temperature = float(kwargs.pop("temperature", 0.0) or 0.0) if do_sample else 0.0
            result = generate(self.loaded, context, max_new_units=max_gen, temperature=temperature, until=until,
                              seed=self.seed + i, max_prompt=self.scorer.max_length)
            out[i] = result.text
            self.cache_hook.add_partial("generate_until", (context, requests[i].args[1]), result.text)
        return out
