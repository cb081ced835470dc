"""``bench.edge_hops.hops_of`` on a hand-made trace: each hop is the span arithmetic its doc
says, the DynamoDB item calls are summed per service, and a trace missing a span waits."""

from __future__ import annotations

from typing import Any

from bench.edge_hops import hops_of

MS = 1_000_000


def span(kind: str, name: str, service: str, start_ms: float, end_ms: float) -> dict[str, Any]:
    return {"kind": kind, "name": name, "service.name": service,
            "start_ns": int(start_ms * MS), "end_ns": int(end_ms * MS)}


TRACE = [
    span("SERVER", "POST /v1/orders", "gateway", 0, 10),
    span("CLIENT", "DynamoDB.UpdateItem", "gateway", 0.5, 1.0),
    span("CLIENT", "orders.create", "gateway", 1.5, 9),
    span("PRODUCER", "send orders.requests", "gateway", 1.5, 2.5),
    span("CONSUMER", "process orders.requests", "orders", 3, 7),
    span("CLIENT", "DynamoDB.PutItem", "orders", 3.2, 4.0),
    span("CLIENT", "DynamoDB.UpdateItem", "orders", 4.5, 5.0),
    span("PRODUCER", "send mesh.replies", "orders", 5.5, 6.5),
]


def test_the_hops_of_a_trace() -> None:
    hops = hops_of(TRACE, http_ms=14)
    assert hops == {
        "http": 14, "server_span": 10, "outside_span": 4, "edge_before_call": 1.5,
        "edge_store": 0.5, "client_span": 7.5, "produce": 1, "to_worker": 0.5, "worker": 4,
        "worker_before_reply": 2.5, "worker_store": 1.3, "reply_produce": 1,
        "worker_after_reply": 0.5, "reply_back": 2, "edge_after_call": 1}


def test_without_item_calls_the_store_hops_are_zero() -> None:
    hops = hops_of([s for s in TRACE if not s["name"].startswith("DynamoDB.")], http_ms=14)
    assert hops is not None
    assert (hops["edge_store"], hops["worker_store"]) == (0, 0)


def test_a_trace_missing_a_span_is_not_read_yet() -> None:
    assert hops_of([s for s in TRACE if s["kind"] != "CONSUMER"], http_ms=14) is None
