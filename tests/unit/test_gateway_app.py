"""functions.gateway.app: HTTP in, mesh call out, mesh errors mapped to problem+json.

The app runs in TestClient's event loop (a thread of its own); the orders worker is started
in that same loop through the client's portal, since the memory broker is not thread-safe.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry.metrics import _internal as metrics_api
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from bus.config import BusSettings
from bus.envelope import Envelope, from_record
from bus.errors import (
    BrokerRefused,
    DeadlineExceeded,
    EnvelopeError,
    HandlerError,
    MeshError,
    RemoteError,
    TransportError,
)
from bus.runtime.client import MeshClient
from bus.runtime.worker import ServiceWorker
from bus.security.access import NotAllowed
from bus.security.identity import Identity
from bus.security.quarantine import QUARANTINE_TOPIC
from bus.service import Payload, Service
from bus.traffic.breaker import CircuitOpen
from bus.transport import Record
from bus.transport.memory import MemoryBroker, MemoryTransport
from functions.gateway.app import EdgeDeps, LazyMeshClient, create_app, mesh_error_response
from functions.gateway.guard import EdgeGuard
from functions.gateway.ratelimit.memory import InMemoryRateLimitStore
from functions.orders.service import orders
from infra.policy import load_policy

ORDER: dict[str, Any] = {
    "customer": "alice",
    "lines": [
        {"sku": "sku-1", "quantity": 2, "unit_price": "9.99"},
        {"sku": "sku-2", "quantity": 1, "unit_price": "5.00"},
    ],
}
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
PROBLEM = "application/problem+json"
PROJECT = load_policy(Path(__file__).resolve().parents[2] / "policies")
ORDERS_ONLY = PROJECT.model_copy(update={
    "routes": tuple(r for r in PROJECT.routes if r.path == "/v1/orders")})


class DownTransport(MemoryTransport):
    async def send(
        self, topic: str, value: bytes, *, headers: Sequence[tuple[str, bytes]],
        key: bytes | None = None, partition: int | None = None,
    ) -> None:
        raise TransportError("broker kafka-7.internal:9092 refused the connection")


@dataclass
class Gateway:
    http: TestClient
    worker: ServiceWorker | None
    factory_calls: list[MeshClient]


@pytest.fixture
def broker() -> MemoryBroker:
    broker = MemoryBroker()
    broker.create_topic("orders.requests", partitions=1)
    broker.create_topic("mesh.replies", partitions=1)
    broker.create_topic(QUARANTINE_TOPIC, partitions=1)
    return broker


@contextmanager
def gateway(
    broker: MemoryBroker,
    service: Service | None = orders,
    *,
    transport: type[MemoryTransport] = MemoryTransport,
    settings: BusSettings | None = None,
    timeout_ms: int | None = None,
) -> Iterator[Gateway]:
    settings = settings or BusSettings(service_name="gateway", reply_partition=0)
    calls: list[MeshClient] = []

    async def factory() -> MeshClient:
        client = MeshClient(transport(broker), settings, Identity.insecure("gateway"))
        calls.append(client)
        return client

    policy = ORDERS_ONLY if timeout_ms is None else ORDERS_ONLY.model_copy(update={"routes": (
        ORDERS_ONLY.routes[0].model_copy(update={"timeout_ms": timeout_ms}),)})
    app = create_app(policy, EdgeDeps(mesh=LazyMeshClient(factory),
                                           guard=EdgeGuard(limiter=InMemoryRateLimitStore())))
    with TestClient(app) as http:
        portal = http.portal
        assert portal is not None
        worker = None if service is None else ServiceWorker(
            service, MemoryTransport(broker), BusSettings(service_name=service.name),
            Identity.insecure(service.name),
        )
        task = None if worker is None else portal.call(_start, worker)
        try:
            yield Gateway(http, worker, calls)
        finally:
            if task is not None:
                portal.call(_cancel, task)
            portal.call(app.state.mesh.close)


async def _start(worker: ServiceWorker) -> asyncio.Task[None]:
    """Start the worker as a task of the running (the TestClient's) event loop."""
    return asyncio.create_task(worker.run(asyncio.Event()))


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.wait([task], timeout=5)
    assert task.done()
    if not task.cancelled() and task.exception() is not None:
        raise AssertionError("the worker crashed") from task.exception()


def _requests(broker: MemoryBroker) -> list[Record]:
    return [r for partition in broker.log("orders.requests") for r in partition]


def _service(error: Exception) -> Service:
    service = Service("orders")

    @service.operation("orders.create")
    async def create(payload: Payload, message: Envelope) -> Payload:
        raise error

    return service


def _assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert body["title"]
    return body


# --- happy path ----------------------------------------------------------------------------


def test_post_order_returns_201_with_the_service_answer(broker: MemoryBroker) -> None:
    with gateway(broker) as gw:
        response = gw.http.post("/v1/orders", json=ORDER)
        assert gw.worker is not None
        assert gw.worker.handled == 1
    assert response.status_code == 201
    body = response.json()
    assert Decimal(body["total"]) == Decimal("24.98")
    assert body["item_count"] == 3
    assert body["customer"] == "alice"
    assert body["order_id"].startswith("ord_")
    assert body["handled_by"] == "orders"
    [record] = _requests(broker)
    request = from_record(record.headers, record.value)
    assert request.type == "orders.create"
    assert request.source == "gateway"
    assert json.loads(record.value or b"")["customer"] == "alice"


def test_traceparent_header_is_forwarded(broker: MemoryBroker) -> None:
    with gateway(broker) as gw:
        response = gw.http.post("/v1/orders", json=ORDER, headers={"traceparent": TRACEPARENT})
    assert response.status_code == 201
    [record] = _requests(broker)
    assert from_record(record.headers, record.value).traceparent == TRACEPARENT


def test_mesh_client_is_built_once(broker: MemoryBroker) -> None:
    with gateway(broker) as gw:
        assert gw.http.post("/v1/orders", json=ORDER).status_code == 201
        assert gw.http.post("/v1/orders", json=ORDER).status_code == 201
        assert len(gw.factory_calls) == 1
    assert len(_requests(broker)) == 2


def test_healthz_does_not_touch_the_bus(broker: MemoryBroker) -> None:
    with gateway(broker, service=None) as gw:
        response = gw.http.get("/healthz")
        assert gw.factory_calls == []
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


# --- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"customer": "alice"},
        {"customer": "alice", "lines": []},
        {"customer": "", "lines": ORDER["lines"]},
        {"customer": "alice", "lines": [{"sku": "a", "quantity": 0, "unit_price": "1"}]},
        {"customer": "alice", "lines": [{"sku": "a", "quantity": 1, "unit_price": "-1"}]},
        {"customer": "alice", "lines": "not a list"},
        [ORDER],
    ],
)
def test_invalid_body_is_422_and_never_reaches_the_bus(broker: MemoryBroker, body: Any) -> None:
    with gateway(broker) as gw:
        response = gw.http.post("/v1/orders", json=body)
        assert gw.worker is not None
        assert gw.worker.handled == 0
    assert response.status_code == 422
    assert _requests(broker) == []


def test_body_that_is_not_json_is_400(broker: MemoryBroker) -> None:
    with gateway(broker) as gw:
        response = gw.http.post(
            "/v1/orders", content=b"{nope", headers={"content-type": "application/json"}
        )
    assert _assert_problem(response, 400)["reason"] == "malformed_json"
    assert _requests(broker) == []


# --- mesh errors through the app -----------------------------------------------------------


def test_no_worker_answer_is_504(broker: MemoryBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    with gateway(broker, service=None, timeout_ms=200) as gw:
        response = gw.http.post("/v1/orders", json=ORDER)
    _assert_problem(response, 504)
    # the request counted against the caller's bucket: the answer still says so
    assert response.headers["ratelimit-remaining"] == "99"
    assert len(_requests(broker)) == 1


def test_bus_down_is_503_without_internals(broker: MemoryBroker) -> None:
    with gateway(broker, service=None, transport=DownTransport) as gw:
        response = gw.http.post("/v1/orders", json=ORDER)
    _assert_problem(response, 503)
    assert "kafka-7" not in response.text


def test_remote_invalid_error_is_422_with_its_message(broker: MemoryBroker) -> None:
    service = _service(HandlerError("invalid_sku", "sku-1 does not exist"))
    with gateway(broker, service) as gw:
        response = gw.http.post("/v1/orders", json=ORDER)
    body = _assert_problem(response, 422)
    assert body["detail"] == "sku-1 does not exist"


def test_remote_non_retriable_error_is_502(broker: MemoryBroker) -> None:
    service = _service(HandlerError("out_of_stock", "warehouse 3 is empty"))
    with gateway(broker, service) as gw:
        response = gw.http.post("/v1/orders", json=ORDER)
    body = _assert_problem(response, 502)
    assert "out_of_stock" in body["detail"]
    assert "warehouse 3" not in response.text


def test_remote_retriable_error_is_503(broker: MemoryBroker) -> None:
    with gateway(broker, _service(HandlerError("busy", "later", retriable=True))) as gw:
        response = gw.http.post("/v1/orders", json=ORDER)
    _assert_problem(response, 503)


def test_handler_crash_is_503_without_leaking(broker: MemoryBroker) -> None:
    with gateway(broker, _service(RuntimeError("db password is hunter2"))) as gw:
        response = gw.http.post("/v1/orders", json=ORDER)
    body = _assert_problem(response, 503)
    assert "internal" in body["detail"]
    assert "hunter2" not in response.text


# --- mesh_error_response -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (DeadlineExceeded("orders.create: no reply within 10s"), 504),
        (TransportError("broker down"), 503),
        (BrokerRefused("unknown topic"), 503),
        (RemoteError("invalid_order", "lines: too short", False), 422),
        (RemoteError("invalid_order", "lines: too short", True), 422),
        (RemoteError("out_of_stock", "none left", False), 502),
        (RemoteError("internal", "KeyError in handler", True), 503),
        (EnvelopeError("bad"), 502),
        (MeshError("generic"), 502),
        (NotAllowed("gateway may not produce to x"), 403),
        (RemoteError("not_found", "no sku x", False), 404),
        (RemoteError("insufficient_stock", "only 2 left", False), 422),
    ],
)
def test_mesh_error_response_status(error: MeshError, status: int) -> None:
    response = mesh_error_response(error)
    assert response.status_code == status
    assert response.media_type == PROBLEM
    assert response.headers["content-type"].startswith(PROBLEM)
    body = json.loads(bytes(response.body))
    assert body["status"] == status
    assert set(body) == {"type", "title", "status", "detail", "reason"}
    assert (response.headers.get("retry-after") is not None) == (status == 503)


@pytest.mark.parametrize(("retry_after_ms", "header"),
                         [(0, "1"), (1, "1"), (1000, "1"), (1001, "2"), (29_500, "30")])
def test_open_circuit_is_503_retry_after_its_reopening(retry_after_ms: int, header: str
                                                       ) -> None:
    response = mesh_error_response(CircuitOpen("orders.create", 0, retry_after_ms=retry_after_ms))
    assert response.status_code == 503
    assert response.headers["retry-after"] == header
    assert b"orders.create" not in bytes(response.body)  # the destination stays internal


def _detail(error: MeshError) -> str:
    detail: str = json.loads(bytes(mesh_error_response(error).body))["detail"]
    return detail


def test_mesh_error_response_keeps_invalid_message_and_hides_others() -> None:
    assert _detail(RemoteError("invalid_x", "why", False)) == "why"
    assert "stack trace" not in _detail(RemoteError("boom", "stack trace here", False))
    assert "10.0.0.7" not in _detail(TransportError("10.0.0.7 refused"))
    assert "no reply within" not in _detail(DeadlineExceeded("orders.create: no reply within 1s"))


# --- bugs ----------------------------------------------------------------------------------


def test_order_deadline_follows_the_request_timeout_setting(broker: MemoryBroker) -> None:
    settings = BusSettings(service_name="gateway", reply_partition=0, request_timeout_s=3.0)
    with gateway(broker, settings=settings) as gw:
        assert gw.http.post("/v1/orders", json=ORDER).status_code == 201
    [record] = _requests(broker)
    request = from_record(record.headers, record.value)
    assert request.deadline_ms is not None
    assert request.deadline_ms - request.time_ms <= 3000


def test_oversized_traceparent_still_gives_a_valid_envelope(
    broker: MemoryBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    huge = "00-" + "a" * 5000
    with gateway(broker, service=None, timeout_ms=200) as gw:
        gw.http.post("/v1/orders", json=ORDER, headers={"traceparent": huge})
    [record] = _requests(broker)
    try:
        from_record(record.headers, record.value)
    except EnvelopeError as exc:
        pytest.fail(f"the gateway sent an envelope the mesh refuses: {exc}")


# --- telemetry ------------------------------------------------------------------------------


def test_the_edge_records_its_http_metrics_once_with_a_meter_provider_installed(
    broker: MemoryBroker, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """FastAPI's native telemetry, left on, recorded http.server.request.duration and
    http.server.active_requests a second time under its own scope: twice the request rate
    wherever the two series meet by name."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    monkeypatch.setattr(metrics_api, "_METER_PROVIDER", provider)  # metrics.set_meter_provider
    try:
        with gateway(broker) as gw:
            assert gw.http.post("/v1/orders", json=ORDER).status_code == 201
            assert gw.http.get("/healthz").status_code == 200
        data = reader.get_metrics_data()
        assert data is not None
        recorded = sorted((scope.scope.name, metric.name) for rm in data.resource_metrics
                          for scope in rm.scope_metrics for metric in scope.metrics
                          if metric.name.startswith("http.server."))
    finally:
        provider.shutdown()
    assert recorded == [("meshgate.gateway", "http.server.active_requests"),
                        ("meshgate.gateway", "http.server.request.duration")]
