"""What the broker sweeps measure (``bench.sweeps``), for the full and the fast mode: pure
data and the pure helpers that turn latencies into one point of a sweep."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench import stats

# Topics of the sweeps accept values up to 2 MiB (the broker's default is ~1 MiB), and both
# sides' producers and the mesh's size checks are raised to match.
MAX_MESSAGE_BYTES = 2 * 1024 * 1024
SWEEPS = ("load", "callers", "payload", "partitions")


@dataclass(frozen=True)
class Plan:
    partitions: tuple[int, ...]  # one topic set (and responder pair) per value
    base_partitions: int  # the load, callers and payload sweeps run on this one
    rates: tuple[float, ...]  # open-loop requests per second
    callers: tuple[int, ...]  # closed-loop concurrent callers
    sizes: tuple[int, ...]  # value bytes
    point_s: float  # measured seconds per side per point (split over two ABBA rounds)
    warmup_s: float  # unmeasured open-loop seconds per side, once per topic set
    partitions_rate: float  # the partitions sweep's open-loop rate
    size_callers: int  # closed-loop callers of the payload sweep
    timeout_s: float  # per request

    def __post_init__(self) -> None:
        if self.base_partitions not in self.partitions:
            raise ValueError("base_partitions must be one of partitions")


FULL = Plan(partitions=(1, 6, 24), base_partitions=6, rates=(50, 200, 500, 1000, 2000),
            callers=(1, 10, 100, 1000),
            sizes=(100, 1_000, 10_000, 100_000, 1_000_000), point_s=6.0, warmup_s=3.0,
            partitions_rate=200, size_callers=1, timeout_s=10.0)
FAST = Plan(partitions=(1,), base_partitions=1, rates=(50, 200), callers=(1, 10),
            sizes=(100, 10_000), point_s=0.5, warmup_s=0.5, partitions_rate=100,
            size_callers=1, timeout_s=5.0)


def side_summary(latencies_ms: list[float], sent: int, errors: int,
                 seconds: float) -> dict[str, Any]:
    """Percentiles (ms), answered/sent, and answered per second over ``seconds``."""
    summary: dict[str, Any] = {"sent": sent, "answered": len(latencies_ms), "errors": errors,
                               "per_s": round(len(latencies_ms) / seconds, 1) if seconds else 0}
    if latencies_ms:
        s = stats.summarize(latencies_ms)
        summary.update(p50_ms=round(s.p50_ms, 3), p90_ms=round(s.p90_ms, 3),
                       p99_ms=round(s.p99_ms, 3), max_ms=round(s.max_ms, 3))
    return summary


def point(sweep: str, x: float, raw: dict[str, Any], mesh: dict[str, Any],
          memory: dict[str, float]) -> dict[str, Any]:
    """One point of a sweep: both sides, mesh/raw ratios where both answered, memory."""
    ratios: dict[str, float | None] = {}
    for key in ("p50_ms", "p99_ms", "per_s"):
        a, b = mesh.get(key), raw.get(key)
        ratios[key.removesuffix("_ms")] = (None if a is None or b is None
                                           else (None if (r := stats.ratio(a, b)) is None
                                                 else round(r, 3)))
    return {"sweep": sweep, "x": x, "raw": raw, "mesh": mesh, "ratio": ratios,
            "rss_mb": memory}
