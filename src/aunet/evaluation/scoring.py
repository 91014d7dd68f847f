"""Log-likelihood scoring of text under an AU-Net (bytes) or a BPE transformer (tokens), batched.

Every request becomes one *row*: a list of units (bytes or BPE ids) and the index from which they are scored. The
model reads ``[BOS] + units[:-1]`` (one sequence per request, never packed with another document: equivalent to
the per-document masks of the paper's evaluation, P12) and unit ``k`` is scored by the logits at input position
``k``. Rows are sorted by length, longest first, and run in right-padded batches; padding lies after every real
position of every stage, so causal attention keeps it out of real outputs (for AU-Net, padded bytes get level 0
and pooled padding sits after the real coarse entries, P5).

Lengths (P14). ``max_length`` is the number of input positions, BOS included: by default the training length
(``caps[0]`` bytes for AU-Net, ``seq_len`` tokens for BPE), so evaluation never runs a model at positions it was not
trained on. A longer request is cut from the left: BOS stays at position 0, the kept bytes start on a UTF-8
character boundary and AU-Net levels are computed on the kept bytes only (append stability makes the levels of a
prefix the prefix of the levels, so context levels never depend on the continuation). AU-Net runs without caps
(``use_caps=False``): every boundary is kept, as in the paper's evaluation.

* ``loglikelihood(context, continuation)``: sum of log-probabilities of exactly the continuation's units. Bytes:
  the continuation starts at byte ``len(context.encode())``. BPE: context and continuation are encoded jointly and
  the continuation is the tokens after ``len(encode(context))``, trailing whitespace of the context moved into the
  continuation first (as lm-eval's ``TemplateLM._encode_pair``), so the seam tokenizes as running text does.
  Returns ``(sum, is_greedy)``. If even the continuation does not fit, its first units are dropped and only the
  kept ones are scored (as lm-eval's HF model does); a warning says how often.
* ``loglikelihood_rolling(text)``: the whole document in overlapping windows, every unit scored exactly once. The
  first window scores its ``max_length`` units from BOS; each later window ends ``stride`` units further and scores
  only those new units, with the ``max_length - stride`` units before them as context.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch import Tensor
from tqdm import tqdm

from aunet.evaluation.checkpoint import LoadedModel
from aunet.evaluation.errors import EvalError
from aunet.models import family_of
from aunet.models.family import BOS_BYTE, char_start_at_or_after, is_continuation_byte

__all__ = ["BOS_BYTE", "Row", "Scorer", "bits_per_byte", "bits_per_byte_of_texts", "char_start_at_or_after",
           "is_continuation_byte"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Row:
    """One scoring sequence: ``units`` (bytes or token ids, BOS excluded), scored from index ``score_from``."""

    units: tuple[int, ...]
    score_from: int


class Scorer:
    """Batched log-likelihoods of one loaded model; see the module docstring for the exact semantics.

    Args:
        loaded: the model (eval mode) and, for BPE, its tokenizer.
        batch_size: rows per forward pass.
        max_length: input positions per row, BOS included; default: the training length.
        rolling_stride: new units per window after the first in rolling scoring; default ``max_length // 2``.
    """

    def __init__(self, loaded: LoadedModel, *, batch_size: int = 16, max_length: int | None = None,
                 rolling_stride: int | None = None) -> None:
        self.loaded = loaded
        self.model = loaded.model
        self.config = loaded.config
        self.family = family_of(self.config)
        self.tokenizer = loaded.tokenizer
        if self.family.needs_tokenizer and loaded.tokenizer is None:
            raise EvalError(f"a {self.family.name} model needs its tokenizer to be scored")
        self.batch_size = max(1, int(batch_size))
        self.max_length = int(max_length or self.config.seq_len)
        if self.max_length < 2:
            raise EvalError(f"max_length={self.max_length}: need at least 2 positions (BOS and one unit)")
        stride = int(rolling_stride or max(1, self.max_length // 2))
        # A window may move its start right to reach a unit boundary (a character's first byte); keep that room.
        room = self.family.start_slack if self.max_length > 8 else 0
        self.rolling_stride = max(1, min(stride, self.max_length - room))
        self.truncated_continuations = 0
        self.bos_id = self.family.bos_id(self.tokenizer)

    @property
    def device(self) -> torch.device:
        return self.loaded.device

    @property
    def unit(self) -> str:
        return self.family.unit

    # --- encoding ------------------------------------------------------------------------------------------------

    def encode(self, text: str | bytes) -> list[int]:
        """Units of ``text``: its UTF-8 bytes (AU-Net) or BPE ids."""
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        return self.family.units(data, self.tokenizer)

    def pair_row(self, context: str, continuation: str) -> Row:
        """The scoring row of one ``(context, continuation)`` request (truncated from the left if needed)."""
        seq, n_ctx = self.family.pair_units(context, continuation, self.tokenizer)
        cut = max(0, len(seq) - self.max_length)
        if cut:
            cut = self.family.sequence_start(seq, cut)
        if cut > n_ctx:
            self.truncated_continuations += 1
        return Row(tuple(seq[cut:]), max(0, n_ctx - cut))

    def rolling_rows(self, text: str | bytes) -> list[Row]:
        """Windows covering every unit of ``text`` exactly once (see the module docstring)."""
        units = self.encode(text)
        n, length, stride = len(units), self.max_length, self.rolling_stride
        if n == 0:
            return []
        rows = [Row(tuple(units[: min(length, n)]), 0)]
        pos = rows[0].score_from + len(rows[0].units)
        while pos < n:
            end = min(pos + stride, n)
            start = self.family.sequence_start(units, max(0, end - length), limit=pos)
            rows.append(Row(tuple(units[start:end]), pos - start))
            pos = end
        return rows

    # --- scoring -------------------------------------------------------------------------------------------------

    def loglikelihood(self, pairs: Sequence[tuple[str, str]], progress: bool = False) -> list[tuple[float, bool]]:
        """``(sum of log-probs of the continuation, is_greedy)`` for each ``(context, continuation)``."""
        before = self.truncated_continuations
        rows = [self.pair_row(c, x) for c, x in pairs]
        if self.truncated_continuations > before:
            log.warning("%d continuation(s) longer than max_length=%d: only their last units were scored",
                        self.truncated_continuations - before, self.max_length)
        return self.score_rows(rows, progress=progress)

    def loglikelihood_rolling(self, texts: Sequence[str | bytes], progress: bool = False) -> list[float]:
        """Sum of log-probs of every unit of each text (windows as in :meth:`rolling_rows`)."""
        rows: list[Row] = []
        owner: list[int] = []
        for i, text in enumerate(texts):
            for row in self.rolling_rows(text):
                rows.append(row)
                owner.append(i)
        totals = [0.0] * len(texts)
        for i, (ll, _) in zip(owner, self.score_rows(rows, progress=progress)):
            totals[i] += ll
        return totals

    def score_rows(self, rows: Sequence[Row], progress: bool = False) -> list[tuple[float, bool]]:
        """Score rows in batches sorted by length (longest first); results in the order of ``rows``."""
        out: list[tuple[float, bool] | None] = [None] * len(rows)
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i].units))
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        iterator: Iterable[list[int]] = batches
        if progress:
            iterator = tqdm(batches, desc="scoring", unit="batch")
        for batch in iterator:
            for i, result in zip(batch, self._score_batch([rows[i] for i in batch])):
                out[i] = result
        return out  # type: ignore[return-value]

    def inputs(self, rows: Sequence[Row]) -> tuple[Tensor, Tensor | None]:
        """Right-padded model inputs ``[B, S]`` (``[BOS] + units[:-1]``) and AU-Net levels ``[B, S]`` (None for BPE
        and one-stage AU-Nets); padding is unit 0 at level 0."""
        return self.family.padded_inputs([r.units for r in rows], self.bos_id, self.device)

    def logits(self, tokens: Tensor, levels: Tensor | None) -> Tensor:
        """``[B, S, V]`` logits of the model for inputs built by :meth:`inputs`."""
        return self.family.full_logits(self.model, tokens, levels)

    @torch.no_grad()
    def _score_batch(self, rows: Sequence[Row]) -> list[tuple[float, bool]]:
        tokens, levels = self.inputs(rows)
        logits = self.logits(tokens, levels)
        if not bool(torch.isfinite(logits).all()):
            # A NaN would flow into every score (lm-eval's argmax of NaN still picks an answer): stop instead.
            where = self.loaded.checkpoint or "the model"
            raise EvalError(f"{where}: the model's outputs are not finite (NaN or infinity: its weights diverged, "
                            "or the dtype overflows); no score is written; evaluate a checkpoint of a run that "
                            "finished, or use --dtype float32")
        # At least float32 for the softmax (bf16 logits lose digits); a float64 model keeps float64.
        logprobs = logits.to(torch.promote_types(logits.dtype, torch.float32)).log_softmax(dim=-1)  # [B, S, V]
        results = []
        for b, row in enumerate(rows):
            n = len(row.units)
            if row.score_from >= n:
                results.append((0.0, True))
                continue
            target = torch.tensor(row.units[row.score_from:], device=logprobs.device)
            lp = logprobs[b, row.score_from : n]  # [k, V]: position k predicts units[k]
            picked = lp.gather(1, target[:, None])[:, 0]
            greedy = bool((lp.argmax(dim=-1) == target).all())
            results.append((float(picked.double().sum()), greedy))
        return results


def bits_per_byte(total_logprob: float, n_bytes: int) -> float:
    """``-sum(log p) / (bytes * ln 2)``: the tokenizer-independent metric (P14)."""
    return -total_logprob / (n_bytes * math.log(2)) if n_bytes else float("nan")


def bits_per_byte_of_texts(loaded: LoadedModel, texts: dict[str, list[str]], *, batch_size: int = 16,
                           max_length: int | None = None, progress: bool = False) -> dict[str, float]:
    """``{name: bits per byte}`` of each list of documents: ``-sum(log p) / (UTF-8 bytes * ln 2)`` over all of
    them, each document scored on its own from BOS, every byte once in overlapping windows (identical text for
    both families, P14)."""
    scorer = Scorer(loaded, batch_size=batch_size, max_length=max_length)
    out = {}
    for name, docs in texts.items():
        if not docs:
            raise EvalError(f"bits per byte of {name!r}: no text")
        total = sum(scorer.loglikelihood_rolling(docs, progress=progress))
        out[name] = bits_per_byte(total, sum(len(d.encode("utf-8")) for d in docs))
    return out
