"""bus.testing: the in-process mesh users test their services with (no Kafka)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from bus.envelope import (
    KIND_REPLY,
    KIND_REQUEST,
    Envelope,
    ReplyTo,
    new_request,
    now_ms,
    to_headers,
)
from bus.errors import DeadlineExceeded, RemoteError
from bus.security.quarantine import H_REASON, QUARANTINE_TOPIC
from bus.service import Payload, Service
from bus.testing import MeshTestKit, mesh_test_kit
from bus.topics import REPLY_TOPIC
from functions.orders.service import orders

ORDER = {
    "customer": "alice",
    "lines": [
        {"sku": "sku-1", "quantity": 2, "unit_price": "9.99"},
        {"sku": "sku-2", "quantity": 1, "unit_price": "5.00"},
    ],
}
BOUND_S = 10.0  # every test is bounded even if the kit misbehaves


@pytest.fixture
async def kit() -> AsyncIterator[MeshTestKit]:
    async with mesh_test_kit(orders) as running:
        yield running


class KillWorker(BaseException):
    """Escapes Service.handle (which turns Exceptions into error replies): kills the worker."""


def _request(operation: str, source: str = "caller") -> Envelope:
    return new_request(source=source, operation=operation, value=b"{}",
                       reply_to=ReplyTo(REPLY_TOPIC, 0), deadline_ms=now_ms() + 5000)


async def test_orders_round_trip(kit: MeshTestKit) -> None:
    answer = await kit.client("gateway").request("orders.create", ORDER)
    assert Decimal(answer["total"]) == Decimal("24.98")
    assert answer["customer"] == "alice"
    assert kit.worker("orders").handled == 1
    assert kit.worker("orders").rejected == 0

    [request] = kit.envelopes("orders.requests")
    assert (request.kind, request.source, request.type) == (KIND_REQUEST, "gateway",
                                                             "orders.create")
    assert request.signature is not None  # signed and verified, as on the real mesh
    [reply] = kit.envelopes(REPLY_TOPIC)
    assert (reply.kind, reply.source, reply.correlation_id) == (KIND_REPLY, "orders", request.id)
    assert kit.quarantined() == []


async def test_invalid_order_is_a_remote_error(kit: MeshTestKit) -> None:
    with pytest.raises(RemoteError) as raised:
        await kit.client().request("orders.create", {"customer": "bob", "lines": []})
    assert raised.value.remote_code == "invalid_order"
    assert raised.value.remote_retriable is False


async def test_several_clients_share_the_services(kit: MeshTestKit) -> None:
    first, second = kit.client("web"), kit.client("mobile")
    answers = await asyncio.gather(*(
        client.request("orders.create", {**ORDER, "customer": client.settings.service_name})
        for client in (first, second, first, second)
    ))
    assert [a["customer"] for a in answers] == ["web", "mobile", "web", "mobile"]
    assert kit.worker("orders").handled == 4


async def test_no_service_means_a_deadline(kit: MeshTestKit) -> None:
    kit.broker.create_topic("inventory.requests")
    with pytest.raises(DeadlineExceeded):
        await kit.client().request("inventory.reserve", {}, timeout_s=0.2)


async def test_unsigned_record_is_quarantined_not_handled(kit: MeshTestKit) -> None:
    forged = _request("orders.create", source="gateway")  # no signature
    await kit.transport.send("orders.requests", forged.value, headers=to_headers(forged))
    [parked] = await kit.wait_for_records(QUARANTINE_TOPIC, 1)
    assert dict(parked.headers)[H_REASON] != b""
    assert kit.worker("orders").handled == 0
    assert kit.worker("orders").quarantined == 1


async def test_published_events_can_be_inspected() -> None:
    async with mesh_test_kit(topics=["orders.events"]) as kit:
        event_id = await kit.client("orders").publish("orders.events", "order.created",
                                                      {"order_id": "o1"})
        [record] = await kit.wait_for_records("orders.events", 1)
    [event] = kit.envelopes("orders.events")
    assert (event.id, event.type, event.source) == (event_id, "order.created", "orders")
    assert record.topic == "orders.events"


async def test_wait_for_records_is_bounded(kit: MeshTestKit) -> None:
    with pytest.raises(TimeoutError):
        await kit.wait_for_records("orders.requests", 1, timeout_s=0.05)


async def test_unsigned_kit_works_too() -> None:
    async with MeshTestKit(services=[orders], signed=False) as kit:
        await kit.client().request("orders.create", ORDER)
        [request] = kit.envelopes("orders.requests")
    assert request.signature is None


async def test_exit_cancels_a_handler_that_does_not_finish() -> None:
    hanging = Service("slow")
    started, cancelled = asyncio.Event(), asyncio.Event()

    @hanging.operation("slow.hang")
    async def hang(payload: Payload, message: Envelope) -> Payload:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return {}

    async with asyncio.timeout(BOUND_S):
        async with MeshTestKit(services=[hanging], stop_timeout_s=0.1) as kit:
            request = kit.identity("caller").outgoing(_request("slow.hang"), "slow.requests")
            await kit.transport.send("slow.requests", request.value, headers=to_headers(request))
            await started.wait()
    assert cancelled.is_set()


async def test_a_crashed_worker_is_raised_on_exit() -> None:
    fragile = Service("fragile")
    reached = asyncio.Event()

    @fragile.operation("fragile.crash")
    async def crash(payload: Payload, message: Envelope) -> Payload:
        reached.set()
        raise KillWorker

    async def crash_the_worker() -> None:
        async with MeshTestKit(services=[fragile]) as kit:
            request = kit.identity("caller").outgoing(_request("fragile.crash"),
                                                      "fragile.requests")
            await kit.transport.send("fragile.requests", request.value,
                                     headers=to_headers(request))
            await reached.wait()  # the worker task dies right after this is set

    async with asyncio.timeout(BOUND_S):
        with pytest.raises(KillWorker):
            await crash_the_worker()


async def test_a_crash_is_noted_on_the_body_error() -> None:
    fragile = Service("fragile")

    @fragile.operation("fragile.crash")
    async def crash(payload: Payload, message: Envelope) -> Payload:
        raise KillWorker

    async with asyncio.timeout(BOUND_S):
        with pytest.raises(DeadlineExceeded) as raised:
            async with MeshTestKit(services=[fragile]) as kit:
                await kit.client().request("fragile.crash", {}, timeout_s=0.5)
    assert any("KillWorker" in note for note in getattr(raised.value, "__notes__", []))


def test_a_service_given_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        MeshTestKit(services=[orders, orders])


async def test_clients_need_a_running_kit() -> None:
    kit = MeshTestKit(services=[orders])
    with pytest.raises(RuntimeError):
        kit.client()
    with pytest.raises(KeyError):
        kit.worker("orders")
