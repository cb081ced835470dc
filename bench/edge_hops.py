"""Where a warm ``POST /v1/orders`` spends its time, hop by hop, from its traces (issue 15):
the cost explained before it is cut.

``python -m bench.edge_hops [--count 40 --warmup 5]`` against the deployed local stack
(``meshgate up``): sequential calls on one keep-alive client, each starting its own trace
(a ``traceparent`` the gateway continues), interleaved with ``POST /bench/echo`` (the echo
Lambda in the same HTTP API); then the spans the gateway and the orders worker exported to
the local collector (``.local/telemetry/spans.jsonl``) are read back per trace. Medians:

- ``http``: the client's round trip; ``echo``: the echo Lambda's, same API;
- ``outside_span``: ``http`` minus the gateway's SERVER span: API Gateway (emulated), the
  Lambda runtime's invoke, Mangum's event translation and the span export before returning;
- ``edge_before_call``: SERVER span start to the mesh CLIENT span start (auth, rate limit,
  validation, the mesh client's lookup);
- ``edge_store``: the gateway's DynamoDB item calls (their CLIENT spans, summed: the rate
  limiter's lease, an API key's lookup; 0 when none was made);
- ``produce``: the request's producer span (signing, the broker's acknowledgement);
- ``to_worker``: producer span end to the worker's CONSUMER span start (Kafka delivery and
  the worker's poll);
- ``worker``: the worker's CONSUMER span, split into ``worker_before_reply`` (admission,
  the idempotency claim, the handler, the completion), ``reply_produce`` (the reply's
  PRODUCER span: signing and the broker's acknowledgement) and ``worker_after_reply``;
  ``worker_store`` is the time of its DynamoDB item calls in all (claim and completion);
- ``reply_back``: worker span end to CLIENT span end (Kafka delivery of the reply, the
  gateway's admission of it; negative when the gateway had the reply before the worker
  finished its span);
- ``edge_after_call``: CLIENT span end to SERVER span end (the answer's serialisation).

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench.machine import describe
from infra.local import lifecycle
from infra.local.smoke import DEMO_ORDER
from infra.local.span_log import read_rows
from infra.settings import Settings

HTTP_TIMEOUT_S = 30.0
SPANS_WAIT_S = 60.0
HOPS = ("http", "echo", "outside_span", "server_span", "edge_before_call", "edge_store",
        "client_span", "produce", "to_worker", "worker", "worker_before_reply", "worker_store",
        "reply_produce", "worker_after_reply", "reply_back", "edge_after_call")


def _ms(ns: int) -> float:
    return ns / 1e6


def hops_of(spans: list[dict[str, Any]], http_ms: float) -> dict[str, float] | None:
    """The hops of one trace (pure), or None while any of its spans is missing."""
    def one(kind: str, name_start: str, service: str) -> dict[str, Any] | None:
        found = [s for s in spans if s.get("kind") == kind and s.get("service.name") == service
                 and str(s.get("name", "")).startswith(name_start)]
        return found[0] if len(found) == 1 else None

    def store_ms(service: str) -> float:
        return sum(_ms(s["end_ns"] - s["start_ns"]) for s in spans
                   if s.get("kind") == "CLIENT" and s.get("service.name") == service
                   and str(s.get("name", "")).startswith("DynamoDB."))

    server = one("SERVER", "POST", "gateway")
    client = one("CLIENT", "orders.create", "gateway")
    produce = one("PRODUCER", "send orders.requests", "gateway")
    worker = one("CONSUMER", "process orders.requests", "orders")
    reply = one("PRODUCER", "send mesh.replies", "orders")
    if server is None or client is None or produce is None or worker is None or reply is None:
        return None
    return {
        "http": http_ms,
        "server_span": _ms(server["end_ns"] - server["start_ns"]),
        "outside_span": http_ms - _ms(server["end_ns"] - server["start_ns"]),
        "edge_before_call": _ms(client["start_ns"] - server["start_ns"]),
        "edge_store": store_ms("gateway"),
        "client_span": _ms(client["end_ns"] - client["start_ns"]),
        "produce": _ms(produce["end_ns"] - produce["start_ns"]),
        "to_worker": _ms(worker["start_ns"] - produce["end_ns"]),
        "worker": _ms(worker["end_ns"] - worker["start_ns"]),
        "worker_before_reply": _ms(reply["start_ns"] - worker["start_ns"]),
        "worker_store": store_ms("orders"),
        "reply_produce": _ms(reply["end_ns"] - reply["start_ns"]),
        "worker_after_reply": _ms(worker["end_ns"] - reply["end_ns"]),
        "reply_back": _ms(client["end_ns"] - worker["end_ns"]),
        "edge_after_call": _ms(server["end_ns"] - client["end_ns"]),
    }


def traced_calls(endpoint: str, count: int, warmup: int) -> tuple[dict[str, float], list[float]]:
    """``count`` traced orders (trace id -> client ms) and as many echo calls, interleaved."""
    body = json.dumps(DEMO_ORDER, separators=(",", ":")).encode()
    orders: dict[str, float] = {}
    echo: list[float] = []
    with httpx.Client(timeout=HTTP_TIMEOUT_S) as http:
        def timed(call: Callable[[], httpx.Response], want: int) -> float:
            started = time.perf_counter()
            answer = call()
            elapsed = (time.perf_counter() - started) * 1000
            if answer.status_code != want:
                raise RuntimeError(f"answered {answer.status_code}: {answer.text[:300]}")
            return elapsed

        for index in range(warmup + count):
            trace_id = secrets.token_hex(16)
            headers = {"content-type": "application/json",
                       "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
            order_ms = timed(lambda h=headers: http.post(  # type: ignore[misc]
                f"{endpoint}/v1/orders", content=body, headers=h), 201)
            echo_ms = timed(lambda: http.post(f"{endpoint}/bench/echo", content=body,
                                              headers={"content-type": "application/json"}),
                            200)
            if index >= warmup:
                orders[trace_id] = order_ms
                echo.append(echo_ms)
    return orders, echo


def collect(path: Path, calls: dict[str, float],
            wait_s: float = SPANS_WAIT_S) -> list[dict[str, float]]:
    """Each call's hops, once its spans have reached the collector's file."""
    deadline = time.monotonic() + wait_s
    while True:
        spans: dict[str, list[dict[str, Any]]] = {t: [] for t in calls}
        for row in read_rows(path):
            found = spans.get(str(row.get("trace_id")))
            if found is not None:
                found.append(row)
        hops = [hops_of(spans[t], ms) for t, ms in calls.items()]
        complete = [h for h in hops if h is not None]
        if len(complete) == len(calls) or time.monotonic() > deadline:
            return complete
        time.sleep(1.0)


def summarize(hops: list[dict[str, float]], echo: list[float]) -> dict[str, Any]:
    result: dict[str, Any] = {"traces": len(hops)}
    for name in HOPS:
        values = echo if name == "echo" else [h[name] for h in hops]
        result[f"{name}_p50_ms"] = round(statistics.median(values), 2) if values else None
    if hops and echo:
        result["added_p50_ms"] = round(result["http_p50_ms"] - result["echo_p50_ms"], 2)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="POST /v1/orders hop by hop, from its traces.")
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--spans-wait", type=float, default=SPANS_WAIT_S,
                        help="seconds to wait for the spans to reach the collector")
    args = parser.parse_args(argv)
    if args.count < 1 or args.warmup < 0:
        parser.error("--count must be positive, --warmup not negative")
    settings = Settings.resolve()
    endpoint = lifecycle.status(settings)["endpoint"]
    if endpoint is None:
        raise SystemExit("bench: error: the stack is not deployed; run 'make up' first")
    calls, echo = traced_calls(endpoint, args.count, args.warmup)
    hops = collect(settings.local_dir / "telemetry" / "spans.jsonl", calls, args.spans_wait)
    result = summarize(hops, echo)
    result.update({"count": args.count, "warmup": args.warmup, "machine": describe()})
    for name in HOPS:
        print(f"{name:<18}{result[f'{name}_p50_ms']!s:>10} ms")
    print(f"traces complete: {len(hops)}/{len(calls)}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
