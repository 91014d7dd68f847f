"""Kneser-Ney byte n-grams and the token unigram: exact on texts counted by hand, distributions everywhere."""

from __future__ import annotations

import math
from fractions import Fraction as F

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aunet.analysis.ngram import (
    FALLBACK_DISCOUNT,
    NgramError,
    fit_kneser_ney,
    kneser_ney_bpb,
    kneser_ney_discounts,
    kneser_ney_models,
    token_counts,
    unigram_bits,
)

# The hand-counted example. Training text (19 bytes, one document; "_" is the space below):
#
#     b a _ a _ d a b _ a b c _ c a b _ a b
#
# Order 2 (the top order of a bigram model: raw counts) -- the 18 bigrams:
#     ab 4 | _a 3 | a_ 2, b_ 2 | ba, _d, da, bc, c_, _c, ca 1 each
#     counts-of-counts n1..n4 = 7, 2, 1, 1;  Y = 7 / (7 + 2*2) = 7/11
#     D(1) = 1 - 2*Y*2/7 = 7/11;  D(2) = 2 - 3*Y*1/2 = 23/22;  D(3+) = 3 - 4*Y*1/1 = 5/11
#     per context h: total a(h.), and gamma(h) = D1*N1(h) + D2*N2(h) + D3*N3+(h)
#       "a": ab 4, a_ 2          total 6  gamma = 23/22 + 5/11    = 3/2
#       "b": ba 1, b_ 2, bc 1    total 4  gamma = 2*7/11 + 23/22  = 51/22
#       "_": _a 3, _d 1, _c 1    total 5  gamma = 2*7/11 + 5/11   = 19/11
#       "c": c_ 1, ca 1          total 2  gamma = 2*7/11          = 14/11
#       "d": da 1                total 1  gamma = 7/11
# Order 1 below it (continuation counts: distinct bytes seen before w, over the 11 bigram types):
#     a <- {b, _, d, c} 4 | _ <- {a, b, c} 3 | c <- {b, _} 2 | b <- {a} 1 | d <- {_} 1      total 11
#     n1..n4 = 2, 1, 1, 1;  Y = 2 / (2 + 2) = 1/2;  D(1) = 1/2, D(2) = 2 - 3/2 = 1/2, D(3+) = 3 - 4/2 = 1
#     gamma = 1/2*2 + 1/2*1 + 1*2 = 7/2;  P1(w) = (max(a(w) - D, 0) + 7/2 * 1/256) / 11
#       P1(a) = (3 + 7/512)/11   P1(_) = (2 + 7/512)/11   P1(c) = (3/2 + 7/512)/11
#       P1(b) = P1(d) = (1/2 + 7/512)/11   P1(unseen) = (7/512)/11          (sum: (7.5 + 3.5)/11 = 1)
TRAIN = b"ba a dab abc cab ab"
# Scored: two documents. "c" opens the first (no history: P1), "e" is a byte never seen (all of its mass comes
# from the uniform base), the "a" after it has an unseen context (P2 = P1), and "b" opens the second document, so
# it is predicted without the "a" before it.
VALIDATION = [b"cabea", b"b"]

P1 = {w: (F(c) + F(7, 512)) / 11 for w, c in {"a": 3, " ": 2, "c": F(3, 2), "b": F(1, 2), "d": F(1, 2)}.items()}
P1_UNSEEN = F(7, 512) / 11
BIGRAM_PROBABILITIES = [
    P1["c"],                                             # c, document start
    (1 - F(7, 11) + F(14, 11) * P1["a"]) / 2,            # a | c: count(ca) = 1, D(1) = 7/11
    (4 - F(5, 11) + F(3, 2) * P1["b"]) / 6,              # b | a: count(ab) = 4, D(3+) = 5/11
    F(51, 22) * P1_UNSEEN / 4,                           # e | b: count(be) = 0
    P1["a"],                                             # a | e: context never seen
    P1["b"],                                             # b, document start
]
# The unigram model (order 1 is its top order: raw counts a 6, b 5, _ 5, c 2, d 1 of 19): n1..n4 = 1, 1, 0, 0, so
# the modified discounts cannot be estimated and one discount Y = 1 / (1 + 2) = 1/3 serves every count;
# gamma = 5 * 1/3; P(w) = (count(w) - 1/3 + 5/3 * 1/256) / 19.
UNIGRAM = {w: (F(c) - F(1, 3) + F(5, 3) / 256) / 19 for w, c in {"a": 6, "b": 5, " ": 5, "c": 2, "d": 1}.items()}
UNIGRAM_PROBABILITIES = [UNIGRAM["c"], UNIGRAM["a"], UNIGRAM["b"], F(5, 3) / 256 / 19, UNIGRAM["a"], UNIGRAM["b"]]


def _bits(probabilities: list[F]) -> float:
    return sum(-math.log2(float(p)) for p in probabilities)


def test_bigram_counts_discounts_and_bits_match_the_hand_computation():
    model = fit_kneser_ney([TRAIN], 2)
    lower, top = model.tables
    assert lower.count_of_counts == (2, 1, 1, 1) and lower.modified
    assert lower.discounts == pytest.approx((0.5, 0.5, 1.0), abs=1e-15)
    assert top.count_of_counts == (7, 2, 1, 1) and top.modified
    assert top.discounts == pytest.approx((7 / 11, 23 / 22, 5 / 11), abs=1e-15)
    contexts = dict(zip(bytes(top.contexts.astype(np.uint8).tolist()), zip(top.totals, top.backoff_mass)))
    assert {chr(k): int(v[0]) for k, v in contexts.items()} == {"a": 6, "b": 4, " ": 5, "c": 2, "d": 1}
    assert {chr(k): v[1] for k, v in contexts.items()} == pytest.approx(
        {"a": 3 / 2, "b": 51 / 22, " ": 19 / 11, "c": 14 / 11, "d": 7 / 11}, abs=1e-15)
    assert model.bits(VALIDATION) == pytest.approx(_bits(BIGRAM_PROBABILITIES), rel=1e-12, abs=1e-12)
    bpb = kneser_ney_bpb([TRAIN], VALIDATION, 2)
    assert bpb[2] == pytest.approx(_bits(BIGRAM_PROBABILITIES) / 6, rel=1e-12)
    assert bpb[1] == pytest.approx(_bits(UNIGRAM_PROBABILITIES) / 6, rel=1e-12)


def test_unigram_falls_back_to_one_discount_without_counts_of_three_and_four():
    (table,) = fit_kneser_ney([TRAIN], 1).tables
    assert table.count_of_counts == (1, 1, 0, 0) and not table.modified
    assert table.discounts == pytest.approx((1 / 3,) * 3, abs=1e-15)
    distribution = fit_kneser_ney([TRAIN], 1).distribution(b"")
    assert distribution[ord("a")] == pytest.approx(float(UNIGRAM["a"]), rel=1e-12)
    assert distribution[ord("z")] == pytest.approx(float(F(5, 3) / 256 / 19), rel=1e-12)


@pytest.mark.parametrize("n, expected, modified", [
    ((7, 2, 1, 1), (7 / 11, 23 / 22, 5 / 11), True),  # the bigram table above
    ((1, 10, 1, 1), (1 / 21, 2 - 3 / 21 / 10, 3 - 4 / 21), True),  # Y = 1/21
    ((0, 3, 2, 1), (FALLBACK_DISCOUNT,) * 3, False),  # no singleton: Y = 0 would leave unseen bytes no mass
    ((4, 0, 1, 1), (1.0,) * 3, False),  # n2 = 0: D(2) undefined; Y = 4/4 = 1 for all
    ((10, 1, 50, 1), (10 / 12,) * 3, False),  # n3 >> n2 pushes D(2) = 2 - 3 Y n3/n2 below 0: Y for all
])
def test_discounts_and_their_fallbacks(n, expected, modified):
    discounts, used = kneser_ney_discounts(n)
    assert used == modified and discounts == pytest.approx(expected, abs=1e-15)


documents = st.lists(st.binary(min_size=0, max_size=40).map(lambda b: bytes(x % 5 + 97 for x in b)),
                     min_size=1, max_size=6).filter(lambda docs: sum(map(len, docs)) > 0)


@given(documents, st.lists(st.binary(max_size=9), min_size=1, max_size=4))
def test_every_order_gives_a_distribution_over_the_256_bytes(train, contexts):
    # Texts over 5 letters repeat n-grams, so seen contexts, unseen bytes and fallback discounts all occur.
    for model in kneser_ney_models(train, 8):
        for context in [*contexts, train[0][:7], train[-1][-7:]]:
            p = model.distribution(context)
            assert p.shape == (256,) and (p > 0).all()
            assert abs(p.sum() - 1.0) < 1e-12


@given(documents, documents)
def test_bits_equal_the_per_byte_distributions(train, validation):
    # The vectorised scorer against one distribution per byte, from the bytes before it in its document.
    for model in kneser_ney_models(train, 4):
        expected = sum(-math.log2(model.distribution(doc[:i])[doc[i]]) for doc in validation for i in range(len(doc)))
        assert model.bits(validation) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_higher_orders_help_on_real_text(english_text):
    # Shakespeare: 180 KB to fit, 20 KB held out. Order 1 is the byte unigram (close to its add-one estimate),
    # and each further byte of context helps up to order 4 on this little text.
    train, val = english_text[:180_000], english_text[180_000:]
    bpb = kneser_ney_bpb([train], [val], 4)
    counts = np.bincount(np.frombuffer(train, np.uint8), minlength=256) + 1.0
    add_one = -np.log2(counts / counts.sum())[np.frombuffer(val, np.uint8)].mean()
    assert abs(bpb[1] - add_one) < 0.02
    assert bpb[1] > bpb[2] > bpb[3] > bpb[4] > 1.5


def test_unigram_bits_by_hand():
    # Ids 0..2 are text, 3 a special. Training counts 2, 1, 0 (+1 each over 3 + 3): p = 3/6, 2/6, 1/6.
    counts = token_counts(np.array([0, 1, 0]), 4)
    bits = unigram_bits(counts, np.array([0, 2, 2]), np.array([True, True, True, False]))
    assert bits == pytest.approx(1 + 2 * math.log2(6), rel=1e-15)


@pytest.mark.parametrize("call, message", [
    (lambda: fit_kneser_ney([b"abc"], 9), "outside 1..8"),
    (lambda: fit_kneser_ney([b""], 2), "no training bytes"),
    (lambda: kneser_ney_bpb([b"abc"], [b""], 2), "no validation bytes"),
    (lambda: unigram_bits(np.array([1, 1]), np.array([1]), np.array([True, False])), "0 for special tokens"),
    (lambda: unigram_bits(np.array([1, 0]), np.array([1]), np.array([True, False])), "include special tokens"),
    (lambda: token_counts(np.array([5]), 4), "must lie in 0..3"),
])
def test_bad_input_is_one_clear_error(call, message):
    with pytest.raises(NgramError, match=message):
        call()
