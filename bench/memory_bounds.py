"""The replay guard and the idempotency store stay bounded whatever the load.

Both are driven with a simulated clock (they take ``now_ms`` as an argument), so a load far
above what the machine could deliver is replayed in seconds: ``--messages`` distinct ids at
``--rate`` per second of simulated time. Reported, per scenario: the largest size seen, the
bound it must stay under and whether it did.

- replay guard, window-bound: ``max_entries`` far above rate x window; its size must stay
  within the ids whose time is in ``[now - window, now]``.
- replay guard, flood: ``max_entries`` below the ids in the window; its size must never pass
  ``max_entries`` (the horizon moves up instead, refusing stragglers).
- idempotency store (``MemoryIdempotencyStore``, as a worker uses it: every key claimed,
  then completed, kept ``keep_ms``): size at most ``max_entries``, and its expiry index at
  most ``2 * size + 64``; with a short ``keep_ms`` it stays within rate x (keep + 1 s),
  expiry being kept in whole seconds.

Also printed: this process's RSS before and after (MiB). One JSON line at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
from dataclasses import asdict, dataclass
from typing import Any

from bench import rss
from bus.delivery.idempotency import MemoryIdempotencyStore
from bus.security.replay import ReplayGuard

LEASE_MS = 5_000  # bus.runtime.worker.DEFAULT_LEASE_MS
KEEP_RESULTS_MS = 24 * 3600 * 1000  # bus.runtime.worker.KEEP_RESULTS_MS


@dataclass(frozen=True)
class Bounded:
    name: str
    messages: int
    max_size: int
    bound: int
    ok: bool


def step_ms(rate_per_s: float) -> float:
    return 1000.0 / rate_per_s


def replay_guard(messages: int, rate_per_s: float, window_ms: int, max_entries: int,
                 name: str) -> Bounded:
    guard = ReplayGuard(window_ms, max_entries)
    step = step_ms(rate_per_s)
    largest = 0
    for i in range(messages):
        now = int(i * step)
        guard.check_and_remember(f"id-{i}", now, now)
        largest = max(largest, len(guard))
    fits_in_window = math.ceil(rate_per_s * (window_ms + 1) / 1000)  # [now - window, now]
    bound = min(max_entries, fits_in_window)
    return Bounded(name, messages, largest, bound, largest <= bound)


async def _store(messages: int, rate_per_s: float, keep_ms: int, max_entries: int,
                 name: str) -> tuple[Bounded, Bounded]:
    store = MemoryIdempotencyStore(max_entries)
    step = step_ms(rate_per_s)
    largest = largest_index = 0
    for i in range(messages):
        now = int(i * step)
        key = f"caller:corr-{i}"
        claim = await store.begin(key, now_ms=now, lease_ms=LEASE_MS)
        assert claim.token is not None, f"{key} was not claimed: {claim.status}"
        await store.complete(key, b"R{}", token=claim.token, now_ms=now, keep_ms=keep_ms)
        largest = max(largest, len(store))
        largest_index = max(largest_index, store.index_entries)
    # Expiry is kept in whole seconds, rounded up (DynamoDB's TTL): a record lives up to
    # keep + 1 s.
    bound = min(max_entries, math.ceil(rate_per_s * (keep_ms + 1000) / 1000))
    index_bound = 2 * bound + 64
    return (Bounded(name, messages, largest, bound, largest <= bound),
            Bounded(f"{name}, expiry index", messages, largest_index, index_bound,
                    largest_index <= index_bound))


def run(messages: int, rate_per_s: float) -> dict[str, Any]:
    before = rss.rss_mb()
    window_ms = 300_000  # BusSettings.freshness_window_ms
    in_window = int(rate_per_s * window_ms / 1000)
    results = [
        replay_guard(messages, rate_per_s, 2_000, 200_000, "replay guard, 2 s window"),
        replay_guard(messages, rate_per_s, window_ms, max(1, min(in_window, messages) // 10),
                     "replay guard, 300 s window, flood (max_entries = messages/10)"),
        *asyncio.run(_store(messages, rate_per_s, KEEP_RESULTS_MS, max(1, messages // 10),
                            "idempotency store, 24 h keep, max_entries = messages/10")),
        *asyncio.run(_store(messages, rate_per_s, 1_000, messages,
                            "idempotency store, 1 s keep")),
    ]
    return {
        "messages": messages,
        "rate_per_s": rate_per_s,
        "caches": [asdict(r) for r in results],
        "all_bounded": all(r.ok for r in results),
        "rss_before_mb": round(before, 1),
        "rss_after_mb": round(rss.rss_mb(), 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Replay guard and idempotency store bounds.")
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=50_000.0, help="simulated msg/s")
    args = parser.parse_args(argv)
    if args.messages < 10 or args.rate <= 0:
        parser.error("--messages must be >= 10 and --rate positive")
    result = run(args.messages, args.rate)
    for cache in result["caches"]:
        print(f"{cache['name']:<60} max {cache['max_size']:>8} bound {cache['bound']:>8} "
              + ("OK" if cache["ok"] else "EXCEEDED"))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
