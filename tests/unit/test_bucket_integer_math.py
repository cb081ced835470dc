"""functions.gateway.ratelimit.bucket: the refill arithmetic in plain integers (issue 15: the
hot path allocated ``Fraction`` objects per request) gives exactly what the exact rational
definition gives, for whole, fractional and awkward float rates."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import pytest

from functions.gateway.ratelimit.bucket import Limit

RATES = (1.0, 3.0, 1000.0, 0.1, 1 / 3, 7.7, 0.001, 2.5e-5, 123456.789)


@pytest.mark.parametrize("rate", RATES)
def test_integer_refill_is_the_exact_rational_one(rate: float) -> None:
    limit, exact = Limit(rate, 10), Fraction(rate)
    draw = random.Random(f"{rate}")
    for _ in range(2000):
        start = draw.randint(0, 2_000_000_000_000)
        end = start + draw.randint(0, 10_000_000)
        milli = draw.randint(1, 10_000_000)
        assert limit.refill_milli(start, end) == (
            math.floor(end * exact) - math.floor(start * exact))
        assert limit.ms_to_gain(start, milli) == (
            math.ceil((math.floor(start * exact) + milli) / exact) - start)
