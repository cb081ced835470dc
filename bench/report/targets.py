"""Every target the issue sets, read from the suites' results: met, missed, or not measured
(pure). Why a missed one is missed: ``bench.report.reasons``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from bench.report.reasons import why
from bench.report.results import Result, fmt, get, pct, suite_result, sweep_point


@dataclass(frozen=True)
class Target:
    suite: str
    name: str
    value: str
    target: str
    met: bool | None  # None: not measured (the suite failed or did not report it)
    why: str = ""  # when missed: the measured reason (docs/decisions.md has the figures)


def _sweep_ratio(result: Result | None, sweep: str, x: float, key: str,
                 below: float) -> tuple[str, bool | None]:
    """The mesh/raw ``key`` ratio of a sweep's point at ``x`` (or the largest it ran, named
    in the value)."""
    chosen, exact = sweep_point(result, sweep, x)
    if chosen is None:
        return "n/a", None
    ratio = get(chosen, "ratio", key)
    where = f" at {chosen['x']:g}" + ("" if exact else f" (not {x:g}: the fast plan)")
    return fmt(ratio, "x") + where, None if ratio is None else ratio < below


Check = tuple[str, str, str, Callable[[Result | None], tuple[str, bool | None]]]

CHECKS: tuple[Check, ...] = (
    ("mesh_vs_raw", "mesh added p50 (request/reply)", "< 0.5 ms",
     lambda r: (fmt(get(r, "added_p50_ms"), " ms", 3), get(r, "added_p50_ok"))),
    ("mesh_vs_raw", "request/reply p99 / raw p99", "< 1.3x",
     lambda r: (fmt(get(r, "p99_ratio"), "x"),
                None if get(r, "p99_ratio") is None else get(r, "p99_ratio") < 1.3)),
    ("sweeps", "p50 at 1,000 concurrent callers / raw", "< 2x",
     lambda r: _sweep_ratio(r, "callers", 1000, "p50", 2.0)),
    ("sweeps", "p99 at 1,000 req/s offered / raw", "< 2x",
     lambda r: _sweep_ratio(r, "load", 1000, "p99", 2.0)),
    ("mesh_vs_raw", "mesh publish rate / raw", ">= 0.70x",
     lambda r: (fmt(get(r, "publish_ratio"), "x"), get(r, "publish_ratio_ok"))),
    ("worker_procs", "answered/s at 100 callers, one worker process / raw", ">= 0.5x",
     lambda r: (fmt(get(r, "by_processes", "1", "per_s_ratio"), "x"),
                None if get(r, "by_processes", "1", "per_s_ratio") is None
                else get(r, "by_processes", "1", "per_s_ratio") >= 0.5)),
    ("worker_procs", "answered/s at 100 callers, 2 worker processes / 1", "> 1.0x",
     lambda r: (fmt(get(r, "by_processes", "2", "mesh_per_s_over_one_process"), "x"),
                None if get(r, "by_processes", "2", "mesh_per_s_over_one_process") is None
                else get(r, "by_processes", "2", "mesh_per_s_over_one_process") > 1.0)),
    ("mesh_vs_raw_pair", "pair-mac: mesh added p50 (request/reply)", "< 0.5 ms",
     lambda r: (fmt(get(r, "added_p50_ms"), " ms", 3), get(r, "added_p50_ok"))),
    ("mesh_vs_raw_pair", "pair-mac: request/reply p99 / raw p99", "< 1.3x",
     lambda r: (fmt(get(r, "p99_ratio"), "x"),
                None if get(r, "p99_ratio") is None else get(r, "p99_ratio") < 1.3)),
    ("worker_procs_pair", "pair-mac: answered/s at 100 callers, one worker process / raw",
     ">= 0.5x",
     lambda r: (fmt(get(r, "by_processes", "1", "per_s_ratio"), "x"),
                None if get(r, "by_processes", "1", "per_s_ratio") is None
                else get(r, "by_processes", "1", "per_s_ratio") >= 0.5)),
    ("gateway_overhead", "gateway p50 / bare FastAPI+Mangum p50", "< 1.5x",
     lambda r: (fmt(get(r, "request_ratio"), "x"), get(r, "request_ratio_ok"))),
    ("gateway_overhead", "gateway p50 / bare (issue 15)", "<= 2.5x",
     lambda r: (fmt(get(r, "request_ratio"), "x"), get(r, "gateway_ratio_15_ok"))),
    ("gateway_overhead", "the edge alone (auth, bucket, validation) / bare", "<= 1.5x",
     lambda r: (fmt(get(r, "edge_ratio"), "x"), get(r, "edge_ratio_15_ok"))),
    ("gateway_overhead", "JWT route / bare", "<= 3x",
     lambda r: (fmt(get(r, "jwt_ratio"), "x"), get(r, "jwt_ratio_15_ok"))),
    ("e2e_echo", "POST /v1/orders p50 - echo Lambda p50, same HTTP API", "< +5 ms",
     lambda r: (fmt(get(r, "added_p50_ms"), " ms"),
                None if get(r, "added_p50_ms") is None else get(r, "added_p50_ms") < 5.0)),
    ("ratelimit_overload", "rate limiter at 10x overload: admitted vs burst + rate x time",
     "within 5 %",
     lambda r: (f"{pct(get(r, 'leased', 'worst_error'))} (worst round; "
                f"{fmt(get(r, 'leased', 'writes_per_admitted'))} writes/admitted)",
                get(r, "leased_error_ok"))),
    ("gateway_overhead", "gateway cold start / bare cold start", "< 1.3x",
     lambda r: (fmt(get(r, "cold_ratio"), "x"), get(r, "cold_ratio_ok"))),
    ("memory", "gateway RSS after the requests", "< 128 MiB",
     lambda r: (f"{fmt(get(r, 'gateway', 'after_requests_mb'), ' MiB', 1)} after "
                f"{get(r, 'gateway', 'requests')}", get(r, "gateway", "rss_ok"))),
    ("memory", "worker RSS growth between checkpoints", "< +10%",
     lambda r: (f"{pct(get(r, 'worker', 'growth'))} "
                f"({'→'.join(map(str, get(r, 'worker', 'checkpoints') or []))} messages)",
                get(r, "worker", "growth_ok"))),
    ("memory", "replay guard and idempotency store within their bound", "always",
     lambda r: (f"{len(get(r, 'bounds', 'caches') or [])} scenarios + the worker's",
                get(r, "targets_met", "caches_bounded"))),
)


def targets(suites: Mapping[str, Mapping[str, Any]]) -> list[Target]:
    found = []
    for suite, name, target, read in CHECKS:
        result = suite_result(suites, suite)
        value, met = read(result)
        judged = None if result is None or met is None else bool(met)
        found.append(Target(suite, name, value, target, judged,
                            why(name, result, suites) if judged is False else ""))
    return found


def as_json(found: list[Target]) -> list[dict[str, Any]]:
    return [asdict(t) for t in found]
