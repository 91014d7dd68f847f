import math

import pytest

from aunet.training.schedule import warmup_cosine


def test_warmup_then_cosine_to_the_floor():
    total, warmup, floor = 100, 10, 0.01
    values = [warmup_cosine(s, total, warmup, floor) for s in range(total)]
    assert values[0] == pytest.approx(1 / 11) and values[9] == pytest.approx(10 / 11)
    assert values[10] == pytest.approx(1.0)
    assert values[-1] == pytest.approx(floor)
    assert all(a >= b for a, b in zip(values[10:], values[11:]))  # monotone decay
    mid = warmup_cosine(10 + 89 // 2, total, warmup, floor)
    assert mid == pytest.approx(floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * (89 // 2) / 89)))


def test_no_warmup_and_single_step():
    assert warmup_cosine(0, 1, 0, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(5, 3, 0, 0.1) == pytest.approx(0.1)
