"""Token buckets in this process's memory: for tests, benchmarks and single-instance runs.
Every Lambda instance would have its own, so a deployment uses the DynamoDB store."""

from __future__ import annotations

import time

from functions.gateway.ratelimit.bucket import BucketState, Decision, Limit, take


class InMemoryRateLimitStore:
    """Same ``take`` as ``DynamoDBRateLimitStore``; one event loop, so no lock is needed
    (``take`` never awaits between reading and writing a bucket)."""

    def __init__(self, max_buckets: int = 100_000) -> None:
        self._buckets: dict[str, BucketState] = {}
        self._max_buckets = max_buckets

    async def take(self, key: str, limit: Limit, *, now_ms: int | None = None,
                   cost: int = 1) -> Decision:
        at = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        decision = take(self._buckets.get(key), limit, at, cost)
        if decision.allowed:
            if key not in self._buckets and len(self._buckets) >= self._max_buckets:
                self._buckets.pop(next(iter(self._buckets)))  # oldest first: stay bounded
            self._buckets[key] = decision.state
        return decision
