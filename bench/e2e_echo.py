"""End to end through the emulator: the gateway's ``POST /v1/orders`` (API Gateway, gateway
Lambda, Kafka, orders worker and back) vs ``POST /bench/echo``, an echo Lambda with no
dependencies routed in the same HTTP API (``infra/stack/parts/bench_echo.py``). Both cross the
same emulated API Gateway and Lambda runtime, so the difference is the gateway and the mesh.

``python -m bench.e2e_echo [--count 200 --warmup 20 --rounds 4]``: sequential requests on
one keep-alive HTTP client, ABBA rounds (echo, orders, orders, echo...), every answer
checked (201 with the order's total; 200 with the same body). Needs the stack deployed
(``meshgate up --no-demo``). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import httpx

from bench import stats
from bench.machine import describe
from infra.local import lifecycle
from infra.local.smoke import DEMO_ORDER
from infra.settings import Settings

HTTP_TIMEOUT_S = 30.0


def timed(call: Callable[[], httpx.Response], check: Callable[[httpx.Response], None],
          count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        response = call()
        latencies.append((time.perf_counter() - started) * 1000)
        check(response)
    return latencies


def check_orders(response: httpx.Response) -> None:
    if response.status_code != 201 or response.json().get("total") != "24.98":
        raise RuntimeError(f"POST /v1/orders answered {response.status_code}: "
                           f"{response.text[:300]}")


def check_echo(body: bytes) -> Callable[[httpx.Response], None]:
    def check(response: httpx.Response) -> None:
        if response.status_code != 200 or response.content != body:
            raise RuntimeError(f"POST /bench/echo answered {response.status_code}: "
                               f"{response.text[:300]}")
    return check


def run(endpoint: str, count: int, warmup: int, rounds: int) -> dict[str, object]:
    body = json.dumps(DEMO_ORDER, separators=(",", ":")).encode()
    headers = {"content-type": "application/json"}
    samples: dict[str, list[float]] = {"echo": [], "orders": []}
    with httpx.Client(timeout=HTTP_TIMEOUT_S) as http:
        calls = {
            "echo": (lambda: http.post(f"{endpoint}/bench/echo", content=body,
                                       headers=headers), check_echo(body)),
            "orders": (lambda: http.post(f"{endpoint}/v1/orders", content=body,
                                         headers=headers), check_orders),
        }
        for call, check in calls.values():
            timed(call, check, warmup)
        for index, part in enumerate(stats.split(count, rounds)):
            for name in stats.round_order(("echo", "orders"), index):
                call, check = calls[name]
                samples[name] += timed(call, check, part)
    result: dict[str, object] = {"count": count, "warmup": warmup, "rounds": rounds}
    summaries = {name: stats.summarize(values) for name, values in samples.items()}
    for name, s in summaries.items():
        result[f"{name}_p50_ms"] = round(s.p50_ms, 2)
        result[f"{name}_p90_ms"] = round(s.p90_ms, 2)
        result[f"{name}_p99_ms"] = round(s.p99_ms, 2)
    echo, orders = summaries["echo"], summaries["orders"]
    for label in ("p50", "p99"):
        ratio = stats.ratio(getattr(orders, f"{label}_ms"), getattr(echo, f"{label}_ms"))
        result[f"{label}_ratio"] = None if ratio is None else round(ratio, 3)
    result["added_p50_ms"] = round(orders.p50_ms - echo.p50_ms, 2)
    result["machine"] = describe()
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="POST /v1/orders vs an echo Lambda.")
    parser.add_argument("--count", type=int, default=200, help="measured, per route")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured, per route")
    parser.add_argument("--rounds", type=int, default=4, help="ABBA rounds")
    args = parser.parse_args(argv)
    if args.count < args.rounds or args.rounds < 1 or args.warmup < 0:
        parser.error("--count must be at least --rounds >= 1, --warmup >= 0")
    endpoint = lifecycle.status(Settings.resolve())["endpoint"]
    if endpoint is None:
        raise SystemExit("bench: error: the stack is not deployed; run 'make up' first")
    result = run(endpoint, args.count, args.warmup, args.rounds)
    for name in ("echo", "orders"):
        print(f"POST {'/bench/echo' if name == 'echo' else '/v1/orders':<14} p50 "
              f"{result[f'{name}_p50_ms']:>8} ms  p90 {result[f'{name}_p90_ms']:>8} ms  "
              f"p99 {result[f'{name}_p99_ms']:>8} ms")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
