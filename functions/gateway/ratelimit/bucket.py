"""Token-bucket arithmetic, pure: no clock, no I/O.

A bucket holds at most ``burst`` tokens and gains ``rate`` tokens per second. A request
costs ``cost`` tokens (1 by default) and is allowed when the bucket holds that many.

All arithmetic is in integers so that every store and every test computes exactly the same
state: time in epoch milliseconds, tokens in milli-tokens (1 token = 1000). By epoch millisecond
``t`` the bucket has been credited ``floor(t * rate)`` milli-tokens in all (exact rational
arithmetic), so a refill from ``a`` to ``b`` is the difference of the two floors: no rounding
error accumulates over requests, and rounding can only grant less, never more.

The stored state is ``(tokens_milli, updated_ms)``. A bucket that has no state yet is full.
Clocks of different Lambda instances disagree a little: a ``now_ms`` before ``updated_ms``
refills nothing and never moves ``updated_ms`` backwards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from typing import NamedTuple

MILLI = 1000

HEADER_LIMIT = "RateLimit-Limit"
HEADER_REMAINING = "RateLimit-Remaining"
HEADER_RESET = "RateLimit-Reset"
HEADER_RETRY_AFTER = "Retry-After"


@dataclass(frozen=True)
class Limit:
    """``rate`` tokens per second, at most ``burst`` tokens at once."""

    rate: float
    burst: int

    def __post_init__(self) -> None:
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError(f"rate must be a positive finite number, not {self.rate!r}")
        if self.burst < 1:
            raise ValueError(f"burst must be at least 1, not {self.burst!r}")

    @cached_property
    def exact_rate(self) -> Fraction:
        """The rate as an exact fraction, computed once per limit (not per request)."""
        return Fraction(self.rate)

    @cached_property
    def _ratio(self) -> tuple[int, int]:
        """The exact rate as (numerator, denominator): the hot path's integer arithmetic
        (``Fraction`` arithmetic allocated several objects per request)."""
        return self.exact_rate.numerator, self.exact_rate.denominator

    @property
    def capacity_milli(self) -> int:
        return self.burst * MILLI

    def refill_milli(self, from_ms: int, to_ms: int) -> int:
        """Milli-tokens gained from ``from_ms`` to ``to_ms`` (0 when ``to_ms`` is earlier).

        Counted on the absolute time line, ``floor(to * rate) - floor(from * rate)``, so
        consecutive intervals add up exactly: many small refills gain what one long one does,
        even for a fractional rate (no remainder lost at every request)."""
        if to_ms <= from_ms:
            return 0
        num, den = self._ratio
        return (to_ms * num) // den - (from_ms * num) // den

    def ms_to_gain(self, from_ms: int, milli: int) -> int:
        """The fewest whole milliseconds after ``from_ms`` in which ``milli`` are gained."""
        if milli <= 0:
            return 0
        num, den = self._ratio
        return -(-((from_ms * num) // den + milli) * den // num) - from_ms


class BucketState(NamedTuple):
    tokens_milli: int
    updated_ms: int


class Decision(NamedTuple):
    """The answer for one request.

    ``state`` is what the store must hold afterwards (for a denial it equals the refilled
    state, which a store need not write: refilling is a function of time alone).
    ``retry_after_ms`` is 0 when allowed. ``reset_ms`` is how long until the bucket is full.
    """

    allowed: bool
    state: BucketState
    limit: Limit
    remaining: int
    retry_after_ms: int
    reset_ms: int

    @property
    def retry_after_s(self) -> int:
        """Whole seconds to wait before retrying (rounded up; 0 when allowed)."""
        return _ceil_s(self.retry_after_ms)

    def headers(self) -> dict[str, str]:
        """``RateLimit-Limit``, ``RateLimit-Remaining``, ``RateLimit-Reset`` (seconds until
        full, rounded up), and ``Retry-After`` (seconds, rounded up) on a denial."""
        headers = {
            HEADER_LIMIT: str(self.limit.burst),
            HEADER_REMAINING: str(self.remaining),
            HEADER_RESET: str(_ceil_s(self.reset_ms)),
        }
        if not self.allowed:
            headers[HEADER_RETRY_AFTER] = str(max(1, self.retry_after_s))
        return headers


def _ceil_s(ms: int) -> int:
    return -(-ms // 1000)


def refill(state: BucketState | None, limit: Limit, now_ms: int) -> BucketState:
    """The state at ``now_ms``: ``state`` plus what time added, capped at ``burst``."""
    if state is None:
        return BucketState(limit.capacity_milli, now_ms)
    gained = limit.refill_milli(state.updated_ms, now_ms)
    tokens = min(limit.capacity_milli, max(0, state.tokens_milli) + gained)
    return BucketState(tokens, max(state.updated_ms, now_ms))


def take(state: BucketState | None, limit: Limit, now_ms: int, cost: int = 1) -> Decision:
    """Try to take ``cost`` tokens from the bucket in ``state`` (None: a new, full bucket)."""
    if cost < 1:
        raise ValueError(f"cost must be at least 1, not {cost!r}")
    current = refill(state, limit, now_ms)
    need = cost * MILLI
    if current.tokens_milli >= need:
        after = BucketState(current.tokens_milli - need, current.updated_ms)
        return Decision(
            allowed=True, state=after, limit=limit, remaining=after.tokens_milli // MILLI,
            retry_after_ms=0, reset_ms=limit.ms_to_gain(after.updated_ms,
                                     limit.capacity_milli - after.tokens_milli),
        )
    if need > limit.capacity_milli:
        raise ValueError(f"cost {cost} exceeds the burst {limit.burst}: it can never be allowed")
    # A clock behind ``updated_ms`` waits for the bucket's own time as well.
    lag = current.updated_ms - now_ms
    return Decision(
        allowed=False, state=current, limit=limit, remaining=current.tokens_milli // MILLI,
        retry_after_ms=lag + limit.ms_to_gain(current.updated_ms, need - current.tokens_milli),
        reset_ms=lag + limit.ms_to_gain(current.updated_ms,
                                          limit.capacity_milli - current.tokens_milli),
    )


def lease(state: BucketState | None, limit: Limit, now_ms: int,
          want: int) -> tuple[int, Decision]:
    """Take up to ``want`` whole tokens at once (a lease for one instance): as many as the
    bucket holds, at least one, or a denial (0 granted) when it holds none."""
    if want < 1:
        raise ValueError(f"want must be at least 1, not {want!r}")
    current = refill(state, limit, now_ms)
    granted = min(want, current.tokens_milli // MILLI)
    if granted < 1:
        return 0, take(current, limit, now_ms, 1)
    return granted, take(current, limit, now_ms, granted)


def bucket_key(*, route: str | None = None, key: str | None = None,
               user: str | None = None) -> str:
    """The store key of one bucket, e.g. ``route:POST /v1/orders|key:abc``: the parts given,
    in a fixed order, so a per-route-and-key bucket is shared by every instance."""
    parts = [f"{name}:{value}" for name, value in (("route", route), ("key", key),
                                                   ("user", user)) if value is not None]
    if not parts:
        raise ValueError("a bucket key needs at least one of route, key, user")
    for part in parts:
        if "|" in part:
            raise ValueError(f"'|' separates bucket key parts; it may not appear in {part!r}")
    return "|".join(parts)
