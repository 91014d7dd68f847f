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

import numpy as np
import torch
from torch import Tensor

from aunet.evaluation.checkpoint import LoadedModel
from aunet.evaluation.errors import EvalError
from aunet.models import AUNetConfig
from aunet.splitting import compute_levels

log = logging.getLogger(__name__)

BOS_BYTE = 256


@dataclass(frozen=True)
class Row:
    """One scoring sequence: ``units`` (bytes or token ids, BOS excluded), scored from index ``score_from``."""

    units: tuple[int, ...]
    score_from: int


def is_continuation_byte(b: int) -> bool:
    """A UTF-8 continuation byte (``10xxxxxx``): never the first byte of a character."""
    return 0x80 <= b < 0xC0


def char_start_at_or_after(data: bytes | Sequence[int], index: int, limit: int | None = None) -> int:
    """The first index ``>= index`` (and ``< limit``) that is not a UTF-8 continuation byte; ``limit`` if none."""
    end = len(data) if limit is None else limit
    while index < end and is_continuation_byte(data[index]):
        index += 1
    return index


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
        self.is_aunet = isinstance(self.config, AUNetConfig)
        if not self.is_aunet and loaded.tokenizer is None:
            raise EvalError("a BPE model needs its tokenizer to be scored")
        self.batch_size = max(1, int(batch_size))
        default_length = self.config.caps[0] if self.is_aunet else self.config.seq_len
        self.max_length = int(max_length or default_length)
        if self.max_length < 2:
            raise EvalError(f"max_length={self.max_length}: need at least 2 positions (BOS and one unit)")
        stride = int(rolling_stride or max(1, self.max_length // 2))
        # A window may move its start up to 3 bytes right to reach a character boundary; keep that room.
        room = 4 if self.is_aunet and self.max_length > 8 else 0
        self.rolling_stride = max(1, min(stride, self.max_length - room))
        self.truncated_continuations = 0
        if self.is_aunet:
            self.splits = list(self.config.splits)
            self.top_level = self.config.n_stages - 1
            self.bos_id = BOS_BYTE
        else:
            self.splits, self.top_level = [], 0
            self.bos_id = int(loaded.tokenizer.bos_id)  # type: ignore[union-attr]

    @property
    def device(self) -> torch.device:
        return self.loaded.device

    @property
    def unit(self) -> str:
        return "byte" if self.is_aunet else "token"

    # --- encoding ------------------------------------------------------------------------------------------------

    def encode(self, text: str | bytes) -> list[int]:
        """Units of ``text``: its UTF-8 bytes (AU-Net) or BPE ids."""
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        if self.is_aunet:
            return list(data)
        return [int(t) for t in self.loaded.tokenizer.encode(data)]  # type: ignore[union-attr]

    def pair_row(self, context: str, continuation: str) -> Row:
        """The scoring row of one ``(context, continuation)`` request (truncated from the left if needed)."""
        if self.is_aunet:
            ctx = context.encode("utf-8")
            seq = ctx + continuation.encode("utf-8")
            n_ctx = len(ctx)
        else:
            # lm-eval's _encode_pair: trailing whitespace of the context joins the continuation.
            stripped = context.rstrip()
            moved = len(context) - len(stripped)
            if moved:
                context, continuation = stripped, context[len(stripped):] + continuation
            ctx_ids = self.encode(context) if context else []
            seq = self.encode(context + continuation)
            n_ctx = len(ctx_ids)
        cut = max(0, len(seq) - self.max_length)
        if cut and self.is_aunet:
            cut = char_start_at_or_after(seq, cut)
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
            start = max(0, end - length)
            if self.is_aunet:
                start = char_start_at_or_after(units, start, limit=pos)
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
            from tqdm import tqdm

            iterator = tqdm(batches, desc="scoring", unit="batch")
        for batch in iterator:
            for i, result in zip(batch, self._score_batch([rows[i] for i in batch])):
                out[i] = result
        return out  # type: ignore[return-value]

    def inputs(self, rows: Sequence[Row]) -> tuple[Tensor, Tensor | None]:
        """Right-padded model inputs ``[B, S]`` (``[BOS] + units[:-1]``) and AU-Net levels ``[B, S]`` (None for BPE
        and one-stage AU-Nets); padding is byte 0 / token 0 at level 0."""
        width = max(len(r.units) for r in rows)
        tokens = np.zeros((len(rows), width), dtype=np.int64)
        levels = np.zeros((len(rows), width), dtype=np.int64) if self.is_aunet and self.splits else None
        for b, row in enumerate(rows):
            n = len(row.units)
            tokens[b, 0] = self.bos_id
            tokens[b, 1:n] = row.units[:-1]
            if levels is not None:
                levels[b, 0] = self.top_level
                levels[b, 1:n] = compute_levels(bytes(row.units[:-1]), self.splits)
        tok = torch.from_numpy(tokens).to(self.device)
        lv = torch.from_numpy(levels).to(self.device) if levels is not None else None
        return tok, lv

    def logits(self, tokens: Tensor, levels: Tensor | None) -> Tensor:
        """``[B, S, V]`` logits of the model for inputs built by :meth:`inputs`."""
        if self.is_aunet:
            return self.model(tokens, levels, use_caps=False)
        return self.model(tokens)

    @torch.no_grad()
    def _score_batch(self, rows: Sequence[Row]) -> list[tuple[float, bool]]:
        tokens, levels = self.inputs(rows)
        logits = self.logits(tokens, levels)
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
