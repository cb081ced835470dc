"""functions.gateway.trace_context and .tracing: which trace a request continues (W3C
traceparent, else the X-Ray header, else a new one), the SERVER span around the request,
the mesh call as its child, and the traceparent on the answer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.trace import SpanKind, StatusCode

from bus.config import BusSettings
from bus.envelope import Envelope, from_record
from bus.runtime.client import MeshClient
from bus.runtime.worker import ServiceWorker
from bus.security.identity import Identity
from bus.service import Payload, Service
from bus.telemetry.tracing import valid_traceparent
from bus.transport.memory import MemoryBroker, MemoryTransport
from functions.gateway.middleware import install_middleware
from functions.gateway.trace_context import incoming_trace, xray_traceparent
from functions.gateway.tracing import TracingMiddleware
from tests.support import Telemetry

TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE}-{CALLER}-01"
XRAY = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"


# --- the X-Ray header ------------------------------------------------------------------


def test_xray_header_becomes_a_w3c_traceparent() -> None:
    assert xray_traceparent(XRAY) == "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01"


@pytest.mark.parametrize("sampled", ["Sampled=0", "Sampled=?", ""])
def test_xray_without_sampled_1_is_not_sampled(sampled: str) -> None:
    header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;" + sampled
    assert xray_traceparent(header) == "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-00"


def test_xray_fields_in_any_order_and_case_with_spaces_and_extra_fields() -> None:
    header = (" Parent=53995C3F42CD8AD8; Lineage=a87bd80c:1 ;Sampled=1;"
              "Root=1-5759E988-BD862E3FE1BE46A994272793")
    assert xray_traceparent(header) == "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01"


@pytest.mark.parametrize("header", [
    None, "", "garbage",
    "Root=1-5759e988-bd862e3fe1be46a994272793",  # no parent span to continue
    "Root=1-5759e988-bd862e3fe1be46a99427279;Parent=53995c3f42cd8ad8",  # 23 hex
    "Root=2-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8",  # version 2
    "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad",  # 15 hex
    "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=0000000000000000",
    "Root=1-00000000-000000000000000000000000;Parent=53995c3f42cd8ad8",
    "Root=1-5759e988-bd862e3fe1be46a99427279g;Parent=53995c3f42cd8ad8",
])
def test_malformed_xray_headers_name_no_trace(header: str | None) -> None:
    assert xray_traceparent(header) is None


def test_traceparent_wins_over_xray_and_keeps_its_tracestate() -> None:
    found = incoming_trace([(b"x-amzn-trace-id", XRAY.encode()),
                            (b"traceparent", TRACEPARENT.encode()), (b"tracestate", b"vendor=1")])
    assert found is not None
    assert (found.traceparent, found.tracestate, found.source) == (TRACEPARENT, "vendor=1",
                                                                    "traceparent")


@pytest.mark.parametrize("bad", ["junk", f"00-{'0' * 32}-{CALLER}-01", f"00-{TRACE}-{'0' * 16}-01",
                                 f"00-{TRACE.upper()}-{CALLER}-01"])
def test_a_bad_traceparent_falls_back_to_xray(bad: str) -> None:
    found = incoming_trace([(b"traceparent", bad.encode()), (b"x-amzn-trace-id", XRAY.encode())])
    assert found is not None
    assert found.source == "xray"
    assert found.traceparent.startswith("00-5759e988bd862e3fe1be46a994272793-")


def test_no_header_no_trace() -> None:
    assert incoming_trace([(b"accept", b"*/*")]) is None


_HEX = "0123456789abcdef"
# Each turns a well-formed traceparent into a near miss (or leaves it as it is).
_MUTATIONS: dict[str, Callable[[str], str]] = {
    "none": lambda t: t,
    "upper trace id": lambda t: t[:3] + t[3:35].upper() + t[35:],
    "upper span id": lambda t: t[:36] + t[36:52].upper() + t[52:],
    "zero trace id": lambda t: t[:3] + "0" * 32 + t[35:],
    "zero span id": lambda t: t[:36] + "0" * 16 + t[52:],
    "short trace id": lambda t: t[:3] + t[4:],
    "long span id": lambda t: t[:36] + "a" + t[36:],
    "version 01": lambda t: "01" + t[2:],
    "flags upper": lambda t: t[:-2] + "0F",
    "flags long": lambda t: t + "1",
    "padded": lambda t: f" \t{t} ",
    "tab inside": lambda t: t[:2] + "\t" + t[2:],
}


def _near_miss(trace: str, span: str, flags: str, mutation: str) -> str:
    return _MUTATIONS[mutation](f"00-{trace}-{span}-{flags}")


_TRACEPARENT_LIKE = st.builds(
    _near_miss,
    st.text(_HEX, min_size=32, max_size=32).filter(lambda t: any(c.isalpha() for c in t)),
    st.text(_HEX, min_size=16, max_size=16).filter(lambda t: any(c.isalpha() for c in t)),
    st.sampled_from(["00", "01"]), st.sampled_from(sorted(_MUTATIONS))) | st.text(max_size=70)


@given(_TRACEPARENT_LIKE)
def test_the_header_is_parsed_by_the_mesh_s_own_traceparent_rule(text: str) -> None:
    """incoming_trace matches the raw header bytes with its own pattern; it must admit
    exactly what bus.telemetry.tracing.valid_traceparent admits of the stripped text (less
    an all-zero trace or span id), so the edge never forwards what the mesh would refuse."""
    raw = text.encode("utf-8")
    found = incoming_trace([(b"traceparent", raw)])
    # The rule as bytes are stripped: ASCII whitespace only (HTTP's optional whitespace).
    stripped = raw.strip().decode("utf-8")
    expected = valid_traceparent(stripped)
    if expected is not None and (expected.split("-")[1] == "0" * 32
                                 or expected.split("-")[2] == "0" * 16):
        expected = None
    assert (found.traceparent if found is not None else None) == expected


# --- the middleware ----------------------------------------------------------------------


@pytest.fixture
def telemetry() -> Telemetry:
    return Telemetry()


def _inventory() -> Service:
    service = Service("inventory")

    @service.operation("inventory.stock")
    async def stock(payload: Payload, message: Envelope) -> Payload:
        return {"sku": payload["sku"], "available": 3}

    return service


@pytest.fixture
def traced(telemetry: Telemetry) -> Iterator[tuple[TestClient, MemoryBroker]]:
    broker = MemoryBroker()
    for topic in ("inventory.requests", "mesh.replies"):
        broker.create_topic(topic, partitions=1)
    app = FastAPI()
    clients: list[MeshClient] = []

    @app.get("/v1/stock/{sku}")
    async def stock(sku: str, request: Request) -> Any:
        if not clients:
            clients.append(MeshClient(
                MemoryTransport(broker), BusSettings(service_name="gateway", reply_partition=0),
                Identity.insecure("gateway"), telemetry=telemetry.for_service("gateway")))
        return await clients[0].request("inventory.stock", {"sku": sku}, timeout_s=5)

    @app.get("/boom")
    async def boom() -> Any:
        raise RuntimeError("boom")

    app.add_middleware(TracingMiddleware, tracer_provider=telemetry.tracer)
    with TestClient(app, raise_server_exceptions=False) as http:
        portal = http.portal
        assert portal is not None
        worker = ServiceWorker(_inventory(), MemoryTransport(broker),
                               BusSettings(service_name="inventory"),
                               Identity.insecure("inventory"),
                               telemetry=telemetry.for_service("inventory"))
        task = portal.call(_start, worker)
        try:
            yield http, broker
        finally:
            portal.call(_cancel, task)
            for client in clients:
                portal.call(client.close)


async def _start(worker: ServiceWorker) -> asyncio.Task[None]:
    return asyncio.create_task(worker.run(asyncio.Event()))


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.wait([task], timeout=5)


def _by_name(telemetry: Telemetry) -> dict[str, Any]:
    return {span.name: span for span in telemetry.spans.get_finished_spans()}


def test_server_span_continues_the_traceparent_and_parents_the_mesh_call(
        traced: tuple[TestClient, MemoryBroker], telemetry: Telemetry) -> None:
    http, broker = traced
    response = http.get("/v1/stock/sku-1", headers={"traceparent": TRACEPARENT})
    assert response.status_code == 200
    spans = _by_name(telemetry)
    server = spans["GET /v1/stock/{sku}"]
    assert server.kind == SpanKind.SERVER
    assert server.context.trace_id == int(TRACE, 16)
    assert server.parent is not None
    assert server.parent.span_id == int(CALLER, 16)
    assert server.parent.is_remote
    assert server.attributes["http.route"] == "/v1/stock/{sku}"
    assert server.attributes["http.response.status_code"] == 200
    request = spans["inventory.stock"]
    assert request.parent is not None
    assert request.parent.span_id == server.context.span_id
    send = spans["send inventory.requests"]
    assert send.parent is not None
    assert send.parent.span_id == request.context.span_id
    process = spans["process inventory.requests"]
    assert process.parent is not None
    assert process.parent.span_id == send.context.span_id
    assert {s.context.trace_id for s in spans.values()} == {int(TRACE, 16)}
    # the message carries the producer span's context; the answer the server span's
    [record] = broker.log("inventory.requests")[0]
    assert from_record(record.headers, record.value).traceparent == \
        f"00-{TRACE}-{send.context.span_id:016x}-01"
    assert response.headers["traceparent"] == f"00-{TRACE}-{server.context.span_id:016x}-01"


def test_xray_header_is_continued(traced: tuple[TestClient, MemoryBroker],
                                  telemetry: Telemetry) -> None:
    http, _ = traced
    response = http.get("/v1/stock/sku-1", headers={"X-Amzn-Trace-Id": XRAY})
    assert response.status_code == 200
    server = _by_name(telemetry)["GET /v1/stock/{sku}"]
    assert f"{server.context.trace_id:032x}" == "5759e988bd862e3fe1be46a994272793"
    assert server.parent is not None
    assert server.parent.span_id == 0x53995C3F42CD8AD8


def test_without_a_header_a_new_trace_starts(traced: tuple[TestClient, MemoryBroker],
                                             telemetry: Telemetry) -> None:
    http, _ = traced
    response = http.get("/v1/stock/sku-1")
    server = _by_name(telemetry)["GET /v1/stock/{sku}"]
    assert server.parent is None
    flags = int(server.context.trace_flags)
    assert flags & 1  # sampled (the SDK may add the W3C level 2 random flag)
    assert response.headers["traceparent"] == (
        f"00-{server.context.trace_id:032x}-{server.context.span_id:016x}-{flags:02x}")


def test_an_exception_and_a_404_are_recorded(traced: tuple[TestClient, MemoryBroker],
                                             telemetry: Telemetry) -> None:
    http, _ = traced
    assert http.get("/boom").status_code == 500
    assert http.get("/nowhere").status_code == 404
    spans = telemetry.spans.get_finished_spans()
    boom = next(s for s in spans if s.name == "GET /boom")
    assert boom.status.status_code == StatusCode.ERROR
    assert [e.name for e in boom.events] == ["exception"]
    missing = next(s for s in spans if (s.attributes or {}).get("url.path") == "/nowhere")
    assert missing.name == "GET"  # no route matched: the method alone
    assert missing.status.status_code == StatusCode.UNSET
    assert (missing.attributes or {})["http.response.status_code"] == 404


def test_the_edge_installs_tracing_outermost() -> None:
    app = FastAPI()
    install_middleware(app, None)
    assert app.user_middleware[0].cls == TracingMiddleware  # type: ignore[comparison-overlap]
