"""Reference language models for bits per byte: Kneser-Ney smoothed byte n-grams and a token unigram.

Pure functions of bytes and token ids (numpy only): no files, no corpus, no tokenizer. What text they are fitted
and scored on is decided by :mod:`aunet.analysis.reference`.

Byte n-gram model (interpolated, modified Kneser-Ney; Chen & Goodman 1998, section 3)
--------------------------------------------------------------------------------------------------
A model of order ``K`` predicts byte ``w`` from the ``K - 1`` bytes before it, ``h``. Writing ``h'`` for ``h``
without its oldest byte, ``a_k`` for the counts used at order ``k`` and ``D_k(c)`` for its discounts::

    P_0(w)      = 1 / 256
    P_k(w | h)  = ( max(a_k(hw) - D_k(a_k(hw)), 0) + gamma_k(h) * P_{k-1}(w | h') ) / a_k(h.)
    gamma_k(h)  = D_k(1) N1_k(h) + D_k(2) N2_k(h) + D_k(3+) N3+_k(h)

``a_k(h.)`` sums ``a_k(hw)`` over ``w`` and ``Nc_k(h)`` counts the bytes ``w`` with ``a_k(hw) = c`` (``>= 3`` for
``N3+``). A context never seen at order ``k`` (``a_k(h.) = 0``) passes ``P_{k-1}`` through unchanged.

* Counts: the top order ``K`` uses raw counts ``c(hw)``; every lower order uses continuation counts
  ``N1+(. hw)``, the number of distinct bytes seen right before ``hw`` (how many contexts ``hw`` completes),
  which is what makes the lower orders Kneser-Ney rather than plain backoff.
* Discounts, per order, from the counts-of-counts ``n_c`` (how many ``k``-grams have ``a_k = c``)::

      Y = n1 / (n1 + 2 n2);  D(1) = 1 - 2 Y n2/n1;  D(2) = 2 - 3 Y n3/n2;  D(3+) = 3 - 4 Y n4/n3

  When some ``n_c`` (c = 1..4) is 0 or an estimate leaves ``(0, c]`` (toy texts; never seen on real corpora), all
  three fall back to the single Kneser-Ney discount ``Y`` (Ney, Essen & Kneser 1994), and to
  :data:`FALLBACK_DISCOUNT` when there is no singleton (``Y = 0``). Keeping every ``D(c)`` in ``(0, c]`` is what
  makes each ``P_k(. | h)`` a distribution with mass left for unseen bytes.
* Documents: n-grams are counted within documents only, and a byte ``j`` bytes into a document is predicted from
  the ``min(j, K - 1)`` bytes it has (the interpolation stops at order ``j + 1``); there is no boundary symbol,
  matching the models, whose scored targets are text bytes (BOS/EOS carry no bytes and are not counted).

Counting works on packed integers: a ``k``-gram is one ``uint64`` (its most recent byte in the low 8 bits, so
orders up to 8 fit), counted with sorting (``np.unique``), and looked up with ``np.searchsorted``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

MAX_ORDER = 8  # eight bytes fill a uint64 code
MIN_ORDER = 6  # the least order a reference level may use: low orders alone flatter every model
VOCAB = 256
# Discount used at an order whose counts have no singleton (then Y = n1 / (n1 + 2 n2) = 0 would leave no mass for
# unseen bytes): the customary absolute-discounting default. Only toy texts ever reach it.
FALLBACK_DISCOUNT = 0.5


class NgramError(ValueError):
    """Bad input to an n-gram function; the message says what and how to fix it."""


@dataclass(frozen=True)
class OrderTable:
    """The counts of one order ``k`` (raw at the top order, continuation counts below), sorted for lookup.

    Attributes:
        order: ``k``, bytes per gram (the predicted byte and ``k - 1`` bytes of context).
        grams: ``[G]`` uint64 codes of the ``k``-grams with a positive count, ascending.
        counts: ``[G]`` int64, ``a_k`` of each gram.
        contexts: ``[H]`` uint64 codes of the ``(k-1)``-byte contexts, ascending (``[0]`` for ``k = 1``).
        totals: ``[H]`` int64, ``a_k(h.)``.
        backoff_mass: ``[H]`` float64, ``gamma_k(h)`` (the numerator of the weight of the lower order).
        discounts: ``(D(1), D(2), D(3+))``.
        count_of_counts: ``(n1, n2, n3, n4)`` the discounts were estimated from.
        modified: whether the three modified discounts were used (False: the single-discount fallback).
    """

    order: int
    grams: np.ndarray
    counts: np.ndarray
    contexts: np.ndarray
    totals: np.ndarray
    backoff_mass: np.ndarray
    discounts: tuple[float, float, float]
    count_of_counts: tuple[int, int, int, int]
    modified: bool

    def discount(self, counts: np.ndarray) -> np.ndarray:
        """``D(a)`` for counts ``a`` of any shape (0 where ``a = 0``)."""
        d1, d2, d3 = self.discounts
        return np.select([counts == 1, counts == 2, counts >= 3], [d1, d2, d3], 0.0)


def kneser_ney_discounts(count_of_counts: Sequence[int]) -> tuple[tuple[float, float, float], bool]:
    """Modified Kneser-Ney discounts ``(D(1), D(2), D(3+))`` from ``(n1, n2, n3, n4)``, and whether they are the
    modified ones (True) or the single-discount fallback (False); see the module docstring."""
    if len(count_of_counts) != 4 or any(int(n) < 0 for n in count_of_counts):
        raise NgramError(f"count_of_counts must be four counts n1..n4 >= 0, got {list(count_of_counts)}")
    n1, n2, n3, n4 = (int(n) for n in count_of_counts)
    y = n1 / (n1 + 2 * n2) if n1 + 2 * n2 > 0 else 0.0
    if min(n1, n2, n3, n4) > 0:
        d = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
        if all(0 < dc <= c for c, dc in zip((1, 2, 3), d)):
            return d, True
    single = y if y > 0 else FALLBACK_DISCOUNT
    return (single, single, single), False


def _order_table(order: int, grams: np.ndarray, counts: np.ndarray) -> OrderTable:
    """Build an :class:`OrderTable` from sorted unique ``grams`` ``[G]`` and their positive ``counts`` ``[G]``."""
    n_c = tuple(int(np.count_nonzero(counts == c)) for c in (1, 2, 3, 4))
    discounts, modified = kneser_ney_discounts(n_c)
    # The context is the code without its low byte; grams are sorted by code, hence grouped by context.
    ctx = grams >> np.uint64(8)
    if len(ctx):
        starts = np.flatnonzero(np.r_[True, ctx[1:] != ctx[:-1]])
    else:
        starts = np.zeros(0, dtype=np.int64)
    contexts = ctx[starts]
    totals = np.add.reduceat(counts, starts) if len(starts) else np.zeros(0, dtype=np.int64)
    d1, d2, d3 = discounts
    per_gram = np.where(counts == 1, d1, np.where(counts == 2, d2, d3))
    mass = np.add.reduceat(per_gram, starts) if len(starts) else np.zeros(0)
    return OrderTable(order, grams, counts.astype(np.int64), contexts, totals.astype(np.int64),
                      mass.astype(np.float64), discounts, n_c, modified)  # type: ignore[arg-type]


@dataclass(frozen=True)
class _Text:
    """Documents concatenated: ``data`` ``[N]`` uint8, and ``offset`` ``[N]`` int64, each byte's index in its
    document."""

    data: np.ndarray
    offset: np.ndarray

    @classmethod
    def of(cls, documents: Sequence[bytes]) -> "_Text":
        if isinstance(documents, (bytes, bytearray, memoryview)):
            documents = [bytes(documents)]
        lengths = np.array([len(d) for d in documents], dtype=np.int64)
        data = np.frombuffer(b"".join(documents), dtype=np.uint8)
        starts = np.cumsum(lengths) - lengths
        offset = np.arange(len(data), dtype=np.int64) - np.repeat(starts, lengths)
        return cls(data, offset)

    def codes(self, max_order: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """``(k, codes [N] uint64, valid [N] bool)`` for k = 1 .. max_order: the code of the k bytes ending at each
        position (zero bytes standing in before the first), valid where they lie inside one document. The low
        bytes of a code are right even where it is not valid: a history of ``j`` bytes is read from its low ``8j``
        bits. Each order is built from the previous in one pass."""
        codes = self.data.astype(np.uint64)
        for k in range(1, max_order + 1):
            if k > 1:
                shifted = np.empty_like(codes)
                shifted[0] = codes[0] if len(codes) else 0  # data[0] = code of "zeros, then data[0]"
                shifted[1:] = (codes[:-1] << np.uint64(8)) | self.data[1:].astype(np.uint64)
                codes = shifted
            yield k, codes, self.offset >= k - 1


def _check_order(max_order: int) -> None:
    if not isinstance(max_order, (int, np.integer)) or not 1 <= max_order <= MAX_ORDER:
        raise NgramError(f"n-gram order {max_order!r} is outside 1..{MAX_ORDER} (a k-gram is packed into 64 bits)")


@dataclass(frozen=True)
class KneserNeyModel:
    """An interpolated modified Kneser-Ney byte model of order ``order`` (see the module docstring).

    ``tables[k - 1]`` holds order ``k``: continuation counts for ``k < order``, raw counts for ``k = order``.
    """

    order: int
    tables: tuple[OrderTable, ...]
    training_bytes: int

    def probabilities(self, histories: np.ndarray, history_lengths: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """``P(target | history)`` for ``M`` queries.

        Args:
            histories: ``[M]`` uint64, the history bytes packed most recent in the low 8 bits (only the low
                ``8 * (order - 1)`` bits are read).
            history_lengths: ``[M]`` int, bytes of history available (clipped to ``order - 1``).
            targets: ``[M]`` int in 0..255, the predicted bytes.
        Returns:
            ``[M]`` float64 probabilities.
        """
        histories = np.asarray(histories, dtype=np.uint64)
        targets = np.asarray(targets, dtype=np.uint64)
        lengths = np.asarray(history_lengths)
        p = np.full(len(targets), 1.0 / VOCAB)
        for table in self.tables:
            k = table.order
            ctx_mask = np.uint64((1 << (8 * (k - 1))) - 1)
            ctx = histories & ctx_mask
            gram = (ctx << np.uint64(8)) | targets
            usable = lengths >= k - 1
            count = _lookup(table.grams, table.counts, gram)
            h = np.searchsorted(table.contexts, ctx)
            h_ok = usable & (h < len(table.contexts))
            h_ok[h_ok] = table.contexts[h[h_ok]] == ctx[h_ok]
            hi = h[h_ok]
            c = count[h_ok]
            p[h_ok] = (np.maximum(c - table.discount(c), 0.0) + table.backoff_mass[hi] * p[h_ok]) / table.totals[hi]
        return p

    def distribution(self, context: bytes) -> np.ndarray:
        """``[256]`` float64: ``P(w | context)`` for every byte ``w`` (the last ``order - 1`` bytes are used)."""
        history = 0
        used = bytes(context)[-(self.order - 1):] if self.order > 1 else b""
        for b in used:
            history = (history << 8) | b
        return self.probabilities(np.full(VOCAB, history, dtype=np.uint64), np.full(VOCAB, len(used)),
                                  np.arange(VOCAB))

    def bits(self, documents: Sequence[bytes]) -> float:
        """Total ``-log2 P`` of every byte of ``documents``, each predicted from the bytes before it in its document."""
        text = _Text.of(documents)
        if len(text.data) == 0:
            return 0.0
        history = np.zeros(len(text.data), dtype=np.uint64)
        if self.order > 1:
            for _, codes, _ in text.codes(self.order - 1):
                pass
            history[1:] = codes[:-1]  # the order - 1 bytes ending right before each byte
        p = self.probabilities(history, np.minimum(text.offset, self.order - 1), text.data)
        return float(-np.log2(p).sum())


def _lookup(keys: np.ndarray, values: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """``values`` at ``queries`` in the sorted ``keys``, 0 where absent; shapes ``[G]``, ``[G]``, ``[M]`` -> ``[M]``."""
    i = np.searchsorted(keys, queries)
    ok = i < len(keys)
    ok[ok] = keys[i[ok]] == queries[ok]
    out = np.zeros(len(queries), dtype=values.dtype)
    out[ok] = values[i[ok]]
    return out


def kneser_ney_models(documents: Sequence[bytes], max_order: int) -> Iterator[KneserNeyModel]:
    """The Kneser-Ney byte models of orders 1 .. ``max_order`` fitted on ``documents``, yielded in order.

    Built incrementally, sharing their continuation tables: each order costs one sort of the ``N`` training
    positions and one of its distinct grams. Measured on 24 MB of English books, orders 1..8 took 10 s on one core
    and peaked at 1.6 GB (about 65 bytes per training byte: the ``[N]`` code arrays and the tables).
    """
    _check_order(max_order)
    text = _Text.of(documents)
    if len(text.data) == 0:
        raise NgramError("no training bytes: an n-gram model needs a non-empty training text")
    lower: list[OrderTable] = []  # continuation tables of orders 1 .. k-1
    previous: tuple[np.ndarray, np.ndarray] | None = None  # raw (grams, counts) of order k-1
    for k, codes, valid in text.codes(max_order):
        grams, counts = np.unique(codes[valid], return_counts=True)
        if previous is not None:
            # Continuation count of a (k-1)-gram: how many distinct k-grams end with it (distinct left bytes).
            cont_grams, cont_counts = np.unique(grams & np.uint64((1 << (8 * (k - 1))) - 1), return_counts=True)
            lower.append(_order_table(k - 1, cont_grams, cont_counts))
        previous = (grams, counts)
        yield KneserNeyModel(k, (*lower, _order_table(k, grams, counts)), len(text.data))


def fit_kneser_ney(documents: Sequence[bytes], order: int) -> KneserNeyModel:
    """The interpolated modified Kneser-Ney byte model of ``order`` (1..8) fitted on ``documents``."""
    _check_order(order)
    model = None
    for model in kneser_ney_models(documents, order):
        pass
    assert model is not None
    return model


def kneser_ney_bpb(train: Sequence[bytes], validation: Sequence[bytes], max_order: int) -> dict[int, float]:
    """``{order: bits per byte on validation}`` of the Kneser-Ney byte models of orders 1 .. ``max_order``."""
    n_val = sum(len(d) for d in validation)
    if n_val == 0:
        raise NgramError("no validation bytes to score")
    return {m.order: m.bits(validation) / n_val for m in kneser_ney_models(train, max_order)}


def token_counts(ids: np.ndarray, vocab_size: int) -> np.ndarray:
    """``[vocab_size]`` int64: how often each id occurs in ``ids`` (``[T]`` ints in 0..vocab_size-1)."""
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise NgramError(f"token ids must lie in 0..{vocab_size - 1}")
    return np.bincount(ids, minlength=vocab_size).astype(np.int64)


def unigram_bits(train_counts: np.ndarray, validation_ids: np.ndarray, text_tokens: np.ndarray) -> float:
    """Total ``-log2 p(token)`` of ``validation_ids`` under an add-one (Laplace) unigram of the training counts.

    Args:
        train_counts: ``[vocab]`` int, how often each id occurs in the training text (:func:`token_counts`).
        validation_ids: ``[V]`` int token ids of the validation text.
        text_tokens: ``[vocab]`` bool, the ids that stand for text (True) rather than specials such as BOS/EOS.
            The unigram is over these: ``p(t) = (count(t) + 1) / (T + |text tokens|)`` with ``T`` the training
            tokens, so a token never seen in training still costs a finite ``log2(T + |text tokens|)`` bits.
    Returns:
        Bits (not per byte: divide by the validation text's bytes).
    """
    text_tokens = np.asarray(text_tokens, dtype=bool)
    counts = np.asarray(train_counts)
    validation_ids = np.asarray(validation_ids)
    if counts.shape != text_tokens.shape:
        raise NgramError(f"train_counts has {counts.shape[0]} entries but text_tokens {text_tokens.shape[0]}; "
                         "both are indexed by token id")
    if (counts < 0).any() or counts[~text_tokens].any():
        raise NgramError("train_counts must be >= 0 and 0 for special tokens; count the ids of the text only")
    if validation_ids.size and (validation_ids.min() < 0 or validation_ids.max() >= len(text_tokens)):
        raise NgramError(f"validation ids must lie in 0..{len(text_tokens) - 1}")
    if validation_ids.size and not text_tokens[validation_ids].all():
        raise NgramError("validation ids include special tokens; pass the ids of the text only")
    p = (counts.astype(np.float64) + 1.0) / (float(counts.sum()) + int(text_tokens.sum()))
    return float(-np.log2(p[validation_ids]).sum())
