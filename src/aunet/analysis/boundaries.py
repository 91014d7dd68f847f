"""Where learned chunk boundaries fall, against what a router blind to the text would give.

Pure functions for the ``chunking`` notebook: bytes in, shares out; values in, a mean and its interval out.

A learned-chunking run logs, per chunking step, ``word_start_share`` (the share of its learned chunk starts on a byte
a split rule selects, AU-Net-2's ``word@1`` byte: the space or punctuation that ends a word's run) and
``word_next_share`` (on the byte right after one: a chunk that begins with a word's first letter). A router that
placed its starts without looking at the text would land on such bytes as often as they occur: :func:`word_rates`
measures those chance levels on the same kind of text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from aunet.splitting.levels import compute_levels


@dataclass(frozen=True)
class WordRates:
    """Shares of the bytes of a text. ``start``: the bytes ``rule`` selects (what ``word_start_share`` counts);
    ``next``: the bytes right after one, within a document (what ``word_next_share`` counts); ``n_bytes``: how many
    bytes were read; ``rule``: the split rule."""

    start: float
    next: float
    n_bytes: int
    rule: str

    @property
    def bytes_per_unit(self) -> float:
        """Bytes per selected byte (for ``word@1``: bytes per word, its trailing space or punctuation included)."""
        return 1.0 / self.start if self.start > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "bytes_per_unit": self.bytes_per_unit}


def word_rates(documents: Sequence[bytes], rule: str = "word@1") -> WordRates:
    """The chance levels of ``word_start_share`` and ``word_next_share`` on ``documents``.

    Args:
        documents: texts as UTF-8 bytes (invalid bytes allowed: the rule never selects them); empty ones are skipped.
        rule: the split rule whose selected bytes count as word starts (``word@1``, as the runs log).

    Returns:
        :class:`WordRates`. Raises ``ValueError`` when the documents hold no byte.
    """
    selected = after = total = 0
    for data in documents:
        if not data:
            continue
        chosen = compute_levels(data, [rule]) > 0  # [n_bytes] bool
        selected += int(chosen.sum())
        after += int(chosen[:-1].sum())  # byte t+1 follows a selected byte t inside the same document
        total += len(data)
    if total == 0:
        raise ValueError("word_rates: the documents hold no byte")
    return WordRates(start=selected / total, next=after / total, n_bytes=total, rule=rule)


@dataclass(frozen=True)
class MeanInterval:
    """The mean of ``n`` values and its two-sided ``level`` Student-t interval (NaN bounds below 2 values)."""

    mean: float
    lo: float
    hi: float
    sd: float
    n: int
    level: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mean_interval(values: ArrayLike, level: float = 0.95) -> MeanInterval:
    """Mean, standard deviation and ``level`` t-interval of the mean of the finite ``values``.

    Treats the values as independent draws of one quantity (runs of one family across budgets, sizes and seeds):
    the interval says where that family's average lies, not where one run will fall (``sd`` says that).
    Raises ``ValueError`` on no finite value or a level outside (0, 1).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"mean_interval: level {level} is not inside (0, 1)")
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        raise ValueError("mean_interval: no finite value")
    mean = float(x.mean())
    if x.size < 2:
        return MeanInterval(mean, float("nan"), float("nan"), float("nan"), 1, level)
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1)) * sd / np.sqrt(x.size)
    return MeanInterval(mean, mean - half, mean + half, sd, int(x.size), level)
