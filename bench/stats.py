"""Pure helpers of the mesh-vs-raw bench: schedules, payloads, summaries, ratios, targets.

Nothing here touches a broker or the clock, so it is unit-tested (tests/unit/test_bench_stats.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bench.machine import percentile

# Targets printed next to the results (the mesh's overhead budget).
TARGET_ADDED_P50_MS = 0.5
TARGET_PUBLISH_RATIO = 0.70

_EMPTY_PAYLOAD = b'{"data":""}'


def schedule(rate_per_s: float, duration_s: float) -> list[float]:
    """Send offsets in seconds from the start of an open-loop run: ``rate * duration`` of
    them, evenly spaced (the count is bounded by the two flags, never by the responses)."""
    if rate_per_s <= 0 or duration_s <= 0:
        raise ValueError("rate and duration must be positive")
    count = round(rate_per_s * duration_s)
    return [i / rate_per_s for i in range(count)]


def windows(total: int, size: int) -> list[int]:
    """Split ``total`` sends into windows of at most ``size`` in-flight sends each."""
    if total < 0 or size <= 0:
        raise ValueError("total must be >= 0 and size > 0")
    full, rest = divmod(total, size)
    return [size] * full + ([rest] if rest else [])


def payload_of_size(size: int) -> dict[str, Any]:
    """A JSON object whose compact encoding (what ``bus.codec`` sends) is ``size`` bytes."""
    if size < len(_EMPTY_PAYLOAD):
        raise ValueError(f"payload size must be at least {len(_EMPTY_PAYLOAD)} bytes")
    return {"data": "x" * (size - len(_EMPTY_PAYLOAD))}


def encoded(payload: dict[str, Any]) -> bytes:
    """The bytes ``bus.codec.encode`` produces for a plain dict (compact JSON)."""
    return json.dumps(payload, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Summary:
    count: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float


def summarize(latencies_ms: Iterable[float]) -> Summary:
    values = sorted(latencies_ms)
    if not values:
        raise ValueError("no latencies to summarize (every request failed?)")
    return Summary(
        count=len(values),
        p50_ms=percentile(values, 0.50),
        p90_ms=percentile(values, 0.90),
        p99_ms=percentile(values, 0.99),
        max_ms=values[-1],
        mean_ms=sum(values) / len(values),
    )


def ratio(mesh: float, raw: float) -> float | None:
    """mesh/raw, or None when the raw figure is zero (nothing to compare against)."""
    return None if raw == 0 else mesh / raw


def targets(raw_p50_ms: float, mesh_p50_ms: float, raw_publish: float,
            mesh_publish: float) -> dict[str, bool]:
    """Whether the mesh meets its overhead budget: added p50 and relative publish rate."""
    publish_ratio = ratio(mesh_publish, raw_publish)
    return {
        "added_p50_ok": mesh_p50_ms - raw_p50_ms < TARGET_ADDED_P50_MS,
        "publish_ratio_ok": publish_ratio is not None and publish_ratio >= TARGET_PUBLISH_RATIO,
    }


def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def split(total: int, parts: int) -> list[int]:
    """``total`` as ``parts`` near-equal non-negative counts (the first ones larger)."""
    if total < 0 or parts <= 0:
        raise ValueError("total must be >= 0 and parts > 0")
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def round_order(names: tuple[str, str], round_index: int) -> tuple[str, str]:
    """ABBA: which side goes first in round ``round_index``, so a slow spell of a shared
    machine hits both sides alike instead of whichever happened to run then."""
    return names if round_index % 2 == 0 else (names[1], names[0])
