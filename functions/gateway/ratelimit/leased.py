"""Token buckets leased to an instance in small batches (issue 15): one conditional write to
the shared bucket per lease of a few tokens, not one per request.

The shared bucket (``DynamoDBRateLimitStore.lease``) stays the only source of tokens: an
instance asks for ``lease_size(limit)`` tokens at once, is granted as many as the bucket holds
(one compare-and-swap, so no two instances ever hold the same token), and spends them on its
next requests without asking again. So, across every instance:

- **never more** than the bucket allows in total: every admitted request spent a token taken
  from the shared bucket, whose count is ``burst + rate * elapsed`` at most;
- **over a short window**, at most ``instances * lease`` more than ``burst + rate * window``
  (tokens leased before the window, spent inside it); a lease is spent within
  ``lease_ttl_s`` or dropped, never carried further;
- **less only by what is held unspent**: at most ``lease`` per instance (dropped at expiry).

``lease_size`` keeps that slack small: at most 1/20 of the burst and 100 ms of the rate
(``MAX_LEASE`` at most), and 1 for small limits, which are then taken one token per request
exactly as before. Leases start at one token and double only while each one is spent within
``lease_ttl_s``: an instance that serves a caller now and then takes one token per request,
so many instances each serving a trickle of one caller waste nothing (with fixed leases they
would drop most of every lease and refuse the caller below its limit). A denial is
remembered until the bucket can hold a whole lease again:
only time adds tokens, so asking sooner could only be denied again (or win a smaller lease);
each instance then waits up to one lease's time more, at random, so that the instances denied
together do not all race for the same tokens at the same instant (tokens wait in the bucket
meanwhile, nothing is lost unless it is full).
Store faults raise the store's own errors (the guard answers 503); tokens already leased are
still spent, as they were granted.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from functions.gateway.ratelimit.bucket import MILLI, Decision, Limit
from functions.gateway.ratelimit.dynamodb import RateLimitError

MAX_LEASE = 50
BURST_SHARE = 20  # a lease is at most 1/20 of the burst
RATE_WINDOW_S = 0.1  # and at most 100 ms of the rate
DEFAULT_LEASE_TTL_S = 1.0
DEFAULT_MAX_KEYS = 10_000
DEFAULT_WAIT_S = 10.0


V = TypeVar("V")


def _trim(entries: dict[str, V], max_keys: int,
          keep: Callable[[V], bool] = lambda _: False) -> None:
    """Forget the oldest entries beyond ``max_keys`` (never one ``keep`` says to keep)."""
    while len(entries) > max_keys:
        oldest = next(iter(entries))
        if keep(entries[oldest]):
            return
        del entries[oldest]


def lease_size(limit: Limit) -> int:
    """Tokens one instance takes at a time from a bucket of ``limit`` (pure; at least 1)."""
    return max(1, min(MAX_LEASE, limit.burst // BURST_SHARE, int(limit.rate * RATE_WINDOW_S)))


def ms_until_tokens(decision: Decision, tokens: int, now_ms: int) -> int:
    """After a denial at ``now_ms``: how long until the bucket holds ``tokens`` (pure)."""
    state, limit = decision.state, decision.limit
    lag = max(0, state.updated_ms - now_ms)
    need = min(tokens, limit.burst) * MILLI - state.tokens_milli
    return lag + limit.ms_to_gain(state.updated_ms, need)


class LeaseSource(Protocol):
    async def lease(self, key: str, limit: Limit, want: int) -> tuple[int, Decision]: ...


@dataclass
class _Held:
    limit: Limit
    tokens: int
    expires_at: float  # this process's monotonic seconds
    decision: Decision  # the shared bucket's answer to the lease (remaining, reset)


@dataclass(frozen=True)
class _Last:
    size: int  # tokens the last lease granted
    at: float  # monotonic seconds


@dataclass(frozen=True)
class _Denied:
    limit: Limit
    until: float  # monotonic seconds
    decision: Decision


class LeasedRateLimitStore:
    """``take`` from local leases of a shared bucket store (see the module notes)."""

    def __init__(self, shared: LeaseSource, *, lease_ttl_s: float = DEFAULT_LEASE_TTL_S,
                 max_keys: int = DEFAULT_MAX_KEYS, wait_s: float = DEFAULT_WAIT_S,
                 clock: Callable[[], float] = time.monotonic,
                 wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
                 jitter: Callable[[], float] = random.random) -> None:
        if lease_ttl_s <= 0 or max_keys < 1 or wait_s <= 0:
            raise ValueError("lease_ttl_s and wait_s must be positive, max_keys at least 1")
        self.shared = shared
        self.lease_ttl_s = lease_ttl_s
        self.max_keys = max_keys
        self.wait_s = wait_s
        self._clock = clock
        self._wall_ms = wall_ms
        self._jitter = jitter
        self._held: dict[str, _Held] = {}
        self._denied: dict[str, _Denied] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._last: dict[str, _Last] = {}
        self.leases = 0  # calls to the shared store, for the bench and tests

    async def take(self, key: str, limit: Limit) -> Decision:
        decision = self._local(key, limit)
        if decision is not None:
            return decision
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
            _trim(self._locks, self.max_keys, keep=asyncio.Lock.locked)
        try:
            async with asyncio.timeout(self.wait_s):
                await lock.acquire()
        except TimeoutError:
            raise RateLimitError(f"bucket {key!r}: no lease within {self.wait_s:g} s") from None
        try:
            decision = self._local(key, limit)  # another request may have leased meanwhile
            if decision is not None:
                return decision
            return await self._lease(key, limit)
        finally:
            lock.release()

    def _local(self, key: str, limit: Limit) -> Decision | None:
        """A decision from what this instance holds or knows, or None: ask the bucket."""
        now = self._clock()
        held = self._held.get(key)
        if held is not None and held.limit == limit:
            if held.tokens > 0 and now < held.expires_at:
                held.tokens -= 1
                shared = held.decision
                return shared._replace(remaining=shared.remaining + held.tokens)
            del self._held[key]  # spent or expired: unspent tokens are dropped
        denied = self._denied.get(key)
        if denied is not None and denied.limit == limit:
            if now < denied.until:
                wait_ms = max(1, math.ceil((denied.until - now) * 1000 - 1e-6))
                return denied.decision._replace(
                    retry_after_ms=wait_ms, reset_ms=max(denied.decision.reset_ms, wait_ms))
            del self._denied[key]
        return None

    def _want(self, key: str, limit: Limit) -> int:
        """The next lease's size: 1, doubled (up to ``lease_size``) while each lease was
        spent within ``lease_ttl_s`` of being taken (a whole one after a denial: demand
        outruns the bucket). An instance that sees a caller now and
        then takes one token per request, as without leases, so instances that each serve a
        trickle never waste tokens and refuse a caller below its limit."""
        last = self._last.get(key)
        if last is None or self._clock() - last.at >= self.lease_ttl_s:
            return 1
        return min(lease_size(limit), 2 * last.size)

    async def _lease(self, key: str, limit: Limit) -> Decision:
        want = self._want(key, limit)
        asked_ms = self._wall_ms()
        self.leases += 1
        granted, decision = await self.shared.lease(key, limit, want)
        now = self._clock()
        if granted < 1:
            # Denied: demand outruns the bucket, so the next lease is a whole one, asked for
            # once the bucket can hold it. Every instance denied at once would ask again at the
            # same instant and collide: each waits up to one lease's time more, at random.
            full = lease_size(limit)
            self._last[key] = _Last(full, now)
            spread_ms = full * 1000 / limit.rate * self._jitter()
            wait_s = (ms_until_tokens(decision, full, asked_ms) + spread_ms) / 1000
            self._denied[key] = _Denied(limit, now + wait_s, decision)
            _trim(self._denied, self.max_keys)
            return decision
        self._denied.pop(key, None)
        self._last[key] = _Last(granted, now)
        _trim(self._last, self.max_keys)
        if granted > 1:
            self._held[key] = _Held(limit, granted - 1, now + self.lease_ttl_s, decision)
            _trim(self._held, self.max_keys)
        return decision._replace(remaining=decision.remaining + granted - 1)

