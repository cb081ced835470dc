"""Latency of the walking-skeleton call through the emulated API Gateway.

Compares, in one run and through the same HTTP API and Lambda: (a) GET /healthz, answered by
the gateway itself, and (b) POST /v1/orders, which adds the Kafka round trip to the orders
worker. Prints percentiles and the ratio; the last line is one JSON object.
Run with ``make bench-skeleton`` (it brings the stack up first).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import httpx

from bench.machine import describe, percentile
from infra.local import lifecycle
from infra.local.smoke import DEMO_ORDER
from infra.settings import Settings


def measure(call: Callable[[], httpx.Response], count: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        call().raise_for_status()
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        response = call()
        latencies.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return sorted(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    endpoint = lifecycle.status(Settings.resolve())["endpoint"]
    if endpoint is None:
        raise SystemExit("bench: error: the stack is not deployed; run 'make up' first")
    print(f"machine: {describe()}")
    with httpx.Client(timeout=30) as http:
        health = measure(lambda: http.get(f"{endpoint}/healthz"), args.count, args.warmup)
        orders = measure(lambda: http.post(f"{endpoint}/v1/orders", json=DEMO_ORDER),
                         args.count, args.warmup)
    result = {"calls": args.count}
    for name, values in (("healthz", health), ("orders", orders)):
        for label, fraction in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
            result[f"{name}_{label}_ms"] = round(percentile(values, fraction), 2)
    result["orders_over_healthz_p50"] = round(
        result["orders_p50_ms"] / result["healthz_p50_ms"], 2)
    for name, values in (("GET /healthz (no bus)", health), ("POST /v1/orders", orders)):
        print(f"{name:>22}: p50 {percentile(values, 0.5):7.2f} ms  "
              f"p90 {percentile(values, 0.9):7.2f} ms  p99 {percentile(values, 0.99):7.2f} ms")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
