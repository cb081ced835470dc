"""bus.runtime.client + bus.runtime.worker + bus.runtime.replies over the memory transport, with the
orders service."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import pytest

from bus import codec
from bus.config import BusSettings
from bus.envelope import (
    KIND_ERROR,
    KIND_EVENT,
    KIND_REPLY,
    KIND_REQUEST,
    Envelope,
    ReplyTo,
    from_record,
    new_request,
    now_ms,
    to_headers,
)
from bus.errors import DeadlineExceeded, RemoteError
from bus.runtime.client import MeshClient, remote_error
from bus.runtime.worker import ServiceWorker
from bus.security.identity import Identity
from bus.security.quarantine import QUARANTINE_TOPIC
from bus.service import Payload, Service
from bus.telemetry.tracing import trace_id
from bus.transport import Record
from bus.transport.memory import MemoryBroker, MemoryTransport
from functions.orders.service import orders
from functions.shared.orders_contract import CreateOrder

REPLY_PARTITION = 2
ORDER: dict[str, Any] = {
    "customer": "alice",
    "lines": [
        {"sku": "sku-1", "quantity": 2, "unit_price": "9.99"},
        {"sku": "sku-2", "quantity": 1, "unit_price": "5.00"},
    ],
}
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def broker() -> MemoryBroker:
    broker = MemoryBroker()
    broker.create_topic("orders.requests", partitions=1)
    broker.create_topic("mesh.replies", partitions=4)
    broker.create_topic(QUARANTINE_TOPIC, partitions=1)
    return broker


@pytest.fixture
async def client(broker: MemoryBroker) -> AsyncIterator[MeshClient]:
    settings = BusSettings(service_name="gateway", reply_partition=REPLY_PARTITION)
    client = MeshClient(MemoryTransport(broker), settings, Identity.insecure("gateway"))
    yield client
    await client.close()


def _worker(service: Service, broker: MemoryBroker) -> ServiceWorker:
    """A worker without signatures (``Identity.insecure``): these tests are about routing."""
    settings = BusSettings(service_name=service.name)
    return ServiceWorker(service, MemoryTransport(broker), settings,
                         Identity.insecure(service.name))


@asynccontextmanager
async def running(worker: ServiceWorker) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield task
    finally:
        stop.set()
        task.cancel()
        await asyncio.wait([task], timeout=5)
        assert task.done()
        if not task.cancelled():
            task.exception()  # retrieved, so a crash is reported by the test, not the loop


def _requests(broker: MemoryBroker) -> list[Record]:
    return broker.log("orders.requests")[0]


def _replies(broker: MemoryBroker) -> list[list[Record]]:
    return broker.log("mesh.replies")


def _append(broker: MemoryBroker, topic: str, partition: int, envelope: Envelope) -> None:
    broker.append(topic, partition, None, envelope.value, to_headers(envelope))


# --- request / reply -----------------------------------------------------------------------


async def test_request_returns_the_orders_reply(broker: MemoryBroker, client: MeshClient) -> None:
    worker = _worker(orders, broker)
    async with running(worker):
        answer = await client.request("orders.create", ORDER, timeout_s=5)
    assert Decimal(answer["total"]) == Decimal("24.98")
    assert answer["item_count"] == 3
    assert answer["customer"] == "alice"
    assert answer["status"] == "accepted"
    assert answer["handled_by"] == "orders"
    assert worker.handled == 1
    assert worker.rejected == 0

    [record] = _requests(broker)
    request = from_record(record.headers, record.value)
    assert request.kind == KIND_REQUEST
    assert request.source == "gateway"
    assert request.reply_to == ReplyTo("mesh.replies", REPLY_PARTITION)
    assert request.deadline_ms is not None
    assert trace_id(request.traceparent) is not None
    assert answer["order_id"] == "ord_" + hashlib.sha256(request.id.encode()).hexdigest()[:16]

    assert [len(p) for p in _replies(broker)] == [0, 0, 1, 0]
    [reply_record] = _replies(broker)[REPLY_PARTITION]
    reply = from_record(reply_record.headers, reply_record.value)
    assert reply.kind == KIND_REPLY
    assert reply.correlation_id == request.id
    assert reply.traceparent == request.traceparent


async def test_request_accepts_a_pydantic_payload(broker: MemoryBroker, client: MeshClient) -> None:
    async with running(_worker(orders, broker)):
        answer = await client.request(
            "orders.create", CreateOrder.model_validate(ORDER), timeout_s=5
        )
    assert Decimal(answer["total"]) == Decimal("24.98")


async def test_request_carries_the_given_traceparent(
    broker: MemoryBroker, client: MeshClient
) -> None:
    async with running(_worker(orders, broker)):
        await client.request("orders.create", ORDER, timeout_s=5, traceparent=TRACEPARENT)
    [record] = _requests(broker)
    assert from_record(record.headers, record.value).traceparent == TRACEPARENT


async def test_concurrent_requests_get_their_own_replies(
    broker: MemoryBroker, client: MeshClient
) -> None:
    customers = [f"customer-{i}" for i in range(6)]
    async with running(_worker(orders, broker)):
        answers = await asyncio.wait_for(
            asyncio.gather(
                *(client.request("orders.create", {**ORDER, "customer": c}) for c in customers)
            ),
            10,
        )
    assert [a["customer"] for a in answers] == customers
    assert len({a["order_id"] for a in answers}) == len(customers)


async def test_invalid_order_raises_remote_error(broker: MemoryBroker, client: MeshClient) -> None:
    async with running(_worker(orders, broker)):
        with pytest.raises(RemoteError) as info:
            await client.request("orders.create", {"customer": "bob", "lines": []}, timeout_s=5)
    assert info.value.remote_code == "invalid_order"
    assert info.value.remote_retriable is False
    assert info.value.message
    [reply_record] = _replies(broker)[REPLY_PARTITION]
    assert from_record(reply_record.headers, reply_record.value).kind == KIND_ERROR


async def test_unknown_operation_raises_remote_error(
    broker: MemoryBroker, client: MeshClient
) -> None:
    async with running(_worker(orders, broker)):
        with pytest.raises(RemoteError) as info:
            await client.request("orders.cancel", {}, timeout_s=5)
    assert info.value.remote_code == "unknown_operation"


async def test_deadline_exceeded_when_no_worker_runs(
    broker: MemoryBroker, client: MeshClient
) -> None:
    with pytest.raises(DeadlineExceeded, match=r"orders\.create"):
        await asyncio.wait_for(client.request("orders.create", ORDER, timeout_s=0.2), 5)
    [record] = _requests(broker)
    request = from_record(record.headers, record.value)
    assert request.deadline_ms is not None
    assert request.deadline_ms - request.time_ms <= 200


async def test_late_reply_is_ignored(broker: MemoryBroker, client: MeshClient) -> None:
    """A reply that arrives after the caller gave up resolves nothing."""
    with pytest.raises(DeadlineExceeded):
        await asyncio.wait_for(client.request("orders.create", ORDER, timeout_s=0.1), 5)
    [record] = _requests(broker)
    request = from_record(record.headers, record.value)
    listener = await client.start()
    probe = listener.expect("probe", "orders.create")
    for correlation_id in (request.id, "probe"):
        _append(broker, "mesh.replies", REPLY_PARTITION,
                Envelope(id=f"r-{correlation_id}", source="orders", type="orders.create",
                         kind=KIND_REPLY, value=b"{}", time_ms=now_ms(),
                         correlation_id=correlation_id))
    # The probe reply comes after the late one: once it resolves, the late one was seen.
    assert (await asyncio.wait_for(probe, 5)).id == "r-probe"
    assert listener.ignored == 1


async def test_replies_for_unknown_correlation_ids_are_ignored(
    broker: MemoryBroker, client: MeshClient
) -> None:
    listener = await client.start()
    assert (listener.topic, listener.partition) == ("mesh.replies", REPLY_PARTITION)
    stranger = Envelope(
        id="r-x", source="orders", type="orders.create", kind=KIND_REPLY,
        value=b'{"total":"0"}', time_ms=now_ms(), correlation_id="nobody-waits-for-this",
    )
    event = Envelope(
        id="e-x", source="orders", type="orders.created", kind=KIND_EVENT,
        value=b"{}", time_ms=now_ms(),
    )
    _append(broker, "mesh.replies", REPLY_PARTITION, stranger)
    _append(broker, "mesh.replies", REPLY_PARTITION, event)
    broker.append("mesh.replies", REPLY_PARTITION, None, b"{}", [("junk", b"1")])

    async with running(_worker(orders, broker)):
        answer = await client.request("orders.create", ORDER, timeout_s=5)
    assert Decimal(answer["total"]) == Decimal("24.98")
    assert listener.ignored == 2
    assert listener.rejected == 1
    assert len(broker.log(QUARANTINE_TOPIC)[0]) == 1


async def test_start_is_idempotent_and_picks_a_partition(broker: MemoryBroker) -> None:
    client = MeshClient(MemoryTransport(broker), BusSettings(service_name="gateway"),
                        Identity.insecure("gateway"))
    try:
        first = await client.start()
        second = await client.start()
        assert first is second
        assert first.topic == "mesh.replies"
        assert 0 <= first.partition < 4
    finally:
        await client.close()


async def test_publish_sends_an_event(broker: MemoryBroker, client: MeshClient) -> None:
    broker.create_topic("orders.events", partitions=1)
    event_id = await client.publish(
        "orders.events", "orders.created", {"order_id": "o1"}, key=b"o1"
    )
    [record] = broker.log("orders.events")[0]
    assert record.key == b"o1"
    event = from_record(record.headers, record.value)
    assert event.id == event_id
    assert event.kind == KIND_EVENT
    assert event.type == "orders.created"
    assert event.source == "gateway"
    assert codec.decode(event.value) == {"order_id": "o1"}


def _error_envelope(value: bytes) -> Envelope:
    return Envelope(
        id="e", source="orders", type="orders.create", kind=KIND_ERROR, value=value,
        time_ms=1, correlation_id="c",
    )


def test_remote_error_rebuilds_code_message_retriable() -> None:
    error = remote_error(
        _error_envelope(b'{"code":"busy","message":"later","retriable":true}')
    )
    assert (error.remote_code, error.message, error.remote_retriable) == ("busy", "later", True)


def test_remote_error_with_unreadable_body() -> None:
    error = remote_error(_error_envelope(b"\xff not json"))
    assert error.remote_code == "bad_error_reply"
    assert error.remote_retriable is False


def test_remote_error_with_empty_body_has_defaults() -> None:
    error = remote_error(_error_envelope(b""))
    assert (error.remote_code, error.message, error.remote_retriable) == ("remote", "", False)


# --- worker --------------------------------------------------------------------------------


def _counting_orders() -> tuple[Service, list[str]]:
    service = Service("orders")
    seen: list[str] = []

    @service.operation("orders.create")
    async def create(payload: Payload, message: Envelope) -> Payload:
        seen.append(message.id)
        return {"ok": True}

    return service, seen


async def test_malformed_records_are_rejected_and_never_handled(
    broker: MemoryBroker, client: MeshClient
) -> None:
    service, seen = _counting_orders()
    reply_to = ReplyTo("mesh.replies", REPLY_PARTITION)
    good_headers = to_headers(
        new_request(source="x", operation="orders.create", value=b"{}", reply_to=reply_to,
                    deadline_ms=now_ms() + 60_000)
    )
    bad: list[list[tuple[str, bytes]]] = [
        [],
        [("ce_id", b"1"), ("junk", b"\xff")],
        [(n, b"\xff\xfe" if n == "ce_source" else v) for n, v in good_headers],
        [(n, v) for n, v in good_headers if n != "mesh_reply_to"],
        [*good_headers, ("ce_id", b"again")],
        to_headers(Envelope(id="ev", source="x", type="orders.create", kind=KIND_EVENT,
                            value=b"{}", time_ms=now_ms())),
        to_headers(Envelope(id="rp", source="x", type="orders.create", kind=KIND_REPLY,
                            value=b"{}", time_ms=now_ms(), correlation_id="c")),
        to_headers(new_request(source="x", operation="orders.create", value=b"{}",
                               reply_to=reply_to, deadline_ms=now_ms() - 1)),
    ]
    for headers in bad:
        broker.append("orders.requests", 0, None, b"{}", headers)

    worker = _worker(service, broker)
    async with running(worker):
        assert await client.request("orders.create", {}, timeout_s=5) == {"ok": True}
    assert worker.rejected == len(bad)
    assert worker.expired == 1
    assert len(broker.log(QUARANTINE_TOPIC)[0]) == len(bad) - 1  # the expired one is dropped
    assert worker.handled == 1
    assert len(seen) == 1
    assert sum(len(p) for p in _replies(broker)) == 1  # no reply to any rejected record


async def test_worker_stops_when_asked_and_commits_what_it_handled(
    broker: MemoryBroker, client: MeshClient
) -> None:
    worker = _worker(orders, broker)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await client.request("orders.create", ORDER, timeout_s=5)
        stop.set()
        await asyncio.wait_for(task, 5)
    finally:
        task.cancel()
    assert broker.committed("orders", "orders.requests", 0) == 1


async def test_group_members_share_the_requests(broker: MemoryBroker, client: MeshClient) -> None:
    first = _worker(orders, broker)
    second = _worker(orders, broker)
    async with running(first), running(second):
        await asyncio.wait_for(
            asyncio.gather(*(client.request("orders.create", ORDER) for _ in range(8))), 10
        )
    assert first.handled + second.handled == 8
    assert sum(len(p) for p in _replies(broker)) == 8


async def test_reply_to_a_missing_partition_does_not_kill_the_worker(
    broker: MemoryBroker, client: MeshClient
) -> None:
    poison = new_request(
        source="x", operation="orders.create", value=codec.encode(ORDER),
        reply_to=ReplyTo("mesh.replies", 99), deadline_ms=now_ms() + 60_000,
    )
    _append(broker, "orders.requests", 0, poison)
    async with running(_worker(orders, broker)) as worker_task:
        call = asyncio.create_task(client.request("orders.create", ORDER, timeout_s=5))
        try:
            done, _ = await asyncio.wait(
                {worker_task, call}, timeout=10, return_when=asyncio.FIRST_COMPLETED
            )
            assert worker_task not in done, "the worker stopped"
            assert call in done
            assert Decimal(call.result()["total"]) == Decimal("24.98")
        finally:
            call.cancel()
            await asyncio.wait([call], timeout=5)

