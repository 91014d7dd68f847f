"""Chance levels of learned boundaries and the mean-with-interval the chunking notebook reports."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from aunet.analysis.boundaries import mean_interval, word_rates


def test_word_rates_count_word_at_1_bytes_and_the_bytes_after_them():
    # The selection comes from the rule itself (the rule is tested in tests/splitting); this checks the counting,
    # and that no "next" byte is counted across a document boundary.
    from aunet.splitting.levels import compute_levels

    a, b = b"The cat sat, on the mat.", b"dog ran "
    sel_a, sel_b = compute_levels(a, ["word@1"]) > 0, compute_levels(b, ["word@1"]) > 0
    rates = word_rates([a, b"", b])
    n = len(a) + len(b)
    assert rates.n_bytes == n and rates.rule == "word@1"
    assert rates.start == pytest.approx((sel_a.sum() + sel_b.sum()) / n)
    assert rates.next == pytest.approx((sel_a[:-1].sum() + sel_b[:-1].sum()) / n)
    assert sel_b[-1] and rates.next < rates.start  # b's last space has no byte after it in b
    assert rates.bytes_per_unit == pytest.approx(1 / rates.start)
    assert rates.to_dict()["bytes_per_unit"] == pytest.approx(rates.bytes_per_unit)


def test_word_rates_of_evenly_spaced_words():
    # 1000 words of 4 letters and a space: one word@1 byte in five.
    rates = word_rates([b"abcd " * 1000])
    assert rates.start == pytest.approx(0.2) and rates.bytes_per_unit == pytest.approx(5.0)
    assert rates.next == pytest.approx(999 / 5000)


def test_word_rates_refuse_an_empty_text():
    with pytest.raises(ValueError, match="no byte"):
        word_rates([b"", b""])


def test_mean_interval_is_the_student_t_interval():
    rng = np.random.default_rng(0)
    x = rng.normal(0.5, 0.2, size=12)
    got = mean_interval(np.append(x, np.nan), level=0.9)  # the NaN is ignored
    lo, hi = stats.t.interval(0.9, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert got.n == 12 and got.mean == pytest.approx(x.mean()) and got.sd == pytest.approx(x.std(ddof=1))
    assert (got.lo, got.hi) == pytest.approx((lo, hi))


def test_mean_interval_covers_the_mean_about_as_often_as_it_says():
    rng = np.random.default_rng(1)
    draws = [mean_interval(rng.normal(1.0, 1.0, size=5)) for _ in range(2000)]
    hits = sum(d.lo < 1.0 < d.hi for d in draws)
    assert 0.93 < hits / len(draws) < 0.97


def test_mean_interval_edge_cases():
    one = mean_interval([0.3])
    assert one.mean == 0.3 and one.n == 1 and np.isnan(one.lo) and np.isnan(one.hi)
    with pytest.raises(ValueError, match="no finite value"):
        mean_interval([np.nan, np.inf])
    with pytest.raises(ValueError, match="level"):
        mean_interval([1.0, 2.0], level=1.0)
