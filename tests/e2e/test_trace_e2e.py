"""One trace from the edge to every service and back: a real HTTP call through the
emulated API Gateway into the gateway Lambda, which asks inventory and orders at once, and
orders asks inventory again; every process exports its spans over OTLP/HTTP to the local
collector (``meshgate up``), and the spans it wrote must form one tree with the right
parent links. Also: an X-Ray header is continued, and ``meshgate trace`` prints the tree."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.local.smoke import DEMO_ORDER
from infra.settings import Settings
from infra.stack.otel_env import SPANS_FILE, telemetry_dir
from tests.e2e.edge_support import token
from tests.support import MESHGATE, run

pytestmark = pytest.mark.e2e
WAIT_S = 20.0
Span = dict[str, Any]


def spans_of(path: Path, trace_id: str) -> list[Span]:
    rows: dict[str, Span] = {}
    for source in (path.with_name(path.name + ".1"), path):
        if source.exists():
            with source.open() as lines:
                for line in lines:
                    if trace_id in line:
                        row = json.loads(line)
                        if row["trace_id"] == trace_id:
                            rows[row["span_id"]] = row
    return list(rows.values())


def wait_for_trace(settings: Settings, trace_id: str, complete: Any) -> list[Span]:
    """The trace's spans once ``complete(spans)`` holds (every exporter has sent them)."""
    path = telemetry_dir(settings) / SPANS_FILE
    deadline = time.monotonic() + WAIT_S
    spans: list[Span] = []
    while time.monotonic() < deadline:
        spans = spans_of(path, trace_id)
        if complete(spans):
            return spans
        time.sleep(0.2)
    names = sorted(f"{s['service.name']}:{s['name']}" for s in spans)
    raise AssertionError(f"trace {trace_id} incomplete after {WAIT_S:g}s: {names}")


def one(spans: list[Span], **match: Any) -> Span:
    found = [s for s in spans if all(s.get(k) == v for k, v in match.items())]
    assert len(found) == 1, (match, [(s["service.name"], s["name"]) for s in spans])
    return found[0]


def _product(endpoint: str, settings: Settings, headers: dict[str, str]) -> httpx.Response:
    response = httpx.get(f"{endpoint}/v1/products/sku-1", params={"quantity": 2},
                         headers={"authorization": f"Bearer {token(settings)}", **headers},
                         timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["partial"] is False
    return response


def _whole_product_trace(spans: list[Span]) -> bool:
    processes = [s for s in spans if s["name"].startswith("process ")]
    replies = [s for s in spans if s["name"] == "send mesh.replies"]
    server = [s for s in spans if s["kind"] == "SERVER"]
    return len(processes) >= 3 and len(replies) >= 3 and len(server) >= 1


def test_one_call_is_one_trace_with_every_hop_linked(endpoint: str, settings: Settings) -> None:
    trace_id, caller = secrets.token_hex(16), secrets.token_hex(8)
    response = _product(endpoint, settings, {"traceparent": f"00-{trace_id}-{caller}-01"})
    spans = wait_for_trace(settings, trace_id, _whole_product_trace)
    assert {s["trace_id"] for s in spans} == {trace_id}
    by_id = {s["span_id"]: s for s in spans}

    def parent(span: Span) -> Span:
        assert span["parent_span_id"] in by_id, f"{span['name']}: parent not exported"
        return by_id[span["parent_span_id"]]

    # the edge: one server span, the caller's child, named by the route
    server = one(spans, kind="SERVER")
    assert server["service.name"] == "gateway"
    assert server["parent_span_id"] == caller
    assert server["name"] == "GET /v1/products/{sku}"
    assert server["attributes"]["http.response.status_code"] == 200
    assert response.headers["traceparent"].split("-")[1:3] == [trace_id, server["span_id"]]

    # the aggregation's two mesh requests are children of the server span
    for operation, service in (("inventory.stock", "inventory"), ("orders.quote", "orders")):
        request = one(spans, name=operation, kind="CLIENT", **{"service.name": "gateway"})
        assert request["parent_span_id"] == server["span_id"]
        send = one(spans, name=f"send {service}.requests", parent_span_id=request["span_id"])
        assert (send["kind"], send["service.name"]) == ("PRODUCER", "gateway")
        process = one(spans, name=f"process {service}.requests", parent_span_id=send["span_id"])
        assert (process["kind"], process["service.name"]) == ("CONSUMER", service)
        assert process["attributes"]["mesh.operation"] == operation
        reply = one(spans, name="send mesh.replies", parent_span_id=process["span_id"])
        assert reply["service.name"] == service

    # orders' nested call to inventory.stock continues orders' process span
    orders_process = one(spans, name="process orders.requests")
    nested = one(spans, name="inventory.stock", **{"service.name": "orders"})
    assert nested["kind"] == "CLIENT"
    assert parent(nested) is orders_process
    nested_send = one(spans, name="send inventory.requests", parent_span_id=nested["span_id"])
    nested_process = one(spans, name="process inventory.requests",
                         parent_span_id=nested_send["span_id"])
    assert nested_process["service.name"] == "inventory"
    one(spans, name="send mesh.replies", parent_span_id=nested_process["span_id"])

    # every exported span hangs from the server span, and nothing failed
    for span in spans:
        chain = span
        while chain is not server:
            chain = parent(chain)
        assert span["status"] != "ERROR", span
    assert {s["service.name"] for s in spans} == {"gateway", "orders", "inventory"}

    # meshgate trace prints the same tree
    result = run([str(MESHGATE), "trace", trace_id], timeout_s=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (f"trace {trace_id}: {len(spans)} spans, services gateway, inventory, "
                        "orders")
    assert lines[1].startswith("GET /v1/products/{sku} [gateway] server ")
    assert any(line.lstrip("│ ").startswith("└─ inventory.stock [orders] client")
               or line.lstrip("│ ").startswith("├─ inventory.stock [orders] client")
               for line in lines)
    assert len(lines) == len(spans) + 1


def test_an_xray_header_is_continued(endpoint: str, settings: Settings) -> None:
    epoch, unique, parent_id = f"{int(time.time()):08x}", secrets.token_hex(12), \
        secrets.token_hex(8)
    header = f"Root=1-{epoch}-{unique};Parent={parent_id};Sampled=1"
    response = _product(endpoint, settings, {"X-Amzn-Trace-Id": header})
    trace_id = epoch + unique
    assert response.headers["traceparent"].split("-")[1] == trace_id
    spans = wait_for_trace(settings, trace_id, _whole_product_trace)
    server = one(spans, kind="SERVER")
    assert server["parent_span_id"] == parent_id


def test_trace_cli_fails_in_one_line_for_an_unknown_trace() -> None:
    result = run([str(MESHGATE), "trace", secrets.token_hex(16)], timeout_s=60)
    assert result.returncode != 0
    [line] = result.stderr.strip().splitlines()
    assert "has no spans" in line
    assert "; " in line


def _orders_with_its_store_calls(spans: list[Span]) -> bool:
    process = [s for s in spans if s["name"] == "process orders.requests"]
    store = [s for s in spans if s["name"].startswith("DynamoDB.")
             and s["service.name"] == "orders"]
    return len(process) == 1 and len(store) >= 2


def test_the_worker_s_store_calls_are_spans_of_its_trace(endpoint: str,
                                                          settings: Settings) -> None:
    """The orders worker's idempotency claim and completion go out through the fast item
    calls, which botocore's instrumentation cannot see: each is a CLIENT span of the call's
    trace, a child of the worker's process span, with the AWS SDK attributes."""
    trace_id = secrets.token_hex(16)
    response = httpx.post(f"{endpoint}/v1/orders", json=DEMO_ORDER, timeout=30,
                          headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"})
    assert response.status_code == 201, response.text
    spans = wait_for_trace(settings, trace_id, _orders_with_its_store_calls)
    process = one(spans, name="process orders.requests")
    store = [s for s in spans if s["name"].startswith("DynamoDB.")
             and s["service.name"] == "orders"]
    assert {s["name"] for s in store} <= {"DynamoDB.PutItem", "DynamoDB.UpdateItem",
                                          "DynamoDB.GetItem"}
    for span in store:
        assert span["kind"] == "CLIENT"
        assert span["parent_span_id"] == process["span_id"]
        assert span["status"] != "ERROR", span
        attributes = span["attributes"]
        assert attributes["rpc.system"] == "aws-api"
        assert attributes["rpc.service"] == "DynamoDB"
        assert attributes["rpc.method"] == span["name"].removeprefix("DynamoDB.")
        assert attributes["aws.dynamodb.table_names"]
        assert attributes["aws.request_id"]
        assert attributes["http.response.status_code"] == 200
