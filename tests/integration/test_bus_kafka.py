"""Request/reply over the real broker: a caller and a service worker in this process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from bus.client import MeshClient
from bus.config import BusSettings
from bus.envelope import Envelope, ReplyTo, new_request, now_ms, reply_for, to_headers
from bus.errors import DeadlineExceeded, HandlerError, RemoteError
from bus.kafka import KafkaTransport
from bus.replies import ReplyListener
from bus.service import Payload, Service
from bus.worker import ServiceWorker

pytestmark = pytest.mark.integration


@asynccontextmanager
async def running(service: Service, settings: BusSettings) -> AsyncIterator[ServiceWorker]:
    transport = KafkaTransport(settings.model_copy(update={"service_name": service.name}))
    worker = ServiceWorker(service, transport)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        await transport.close()


@asynccontextmanager
async def caller(settings: BusSettings) -> AsyncIterator[MeshClient]:
    client = MeshClient(KafkaTransport(settings), settings)
    try:
        yield client
    finally:
        await client.close()


def calculator(name: str, calls: list[str]) -> Service:
    service = Service(name)

    @service.operation(f"{name}.add")
    async def add(payload: Payload, message: Envelope) -> Payload:
        calls.append(message.id)
        return {"sum": payload["a"] + payload["b"], "from": message.source}

    @service.operation(f"{name}.refuse")
    async def refuse(payload: Payload, message: Envelope) -> Payload:
        raise HandlerError("out_of_stock", "nothing left", retriable=True)

    @service.operation(f"{name}.hang")
    async def hang(payload: Payload, message: Envelope) -> Payload:
        calls.append("hang-started")
        await asyncio.sleep(30)
        return {}

    return service


async def test_request_reply_round_trip(service_name: str, bus_settings: BusSettings) -> None:
    calls: list[str] = []
    async with running(calculator(service_name, calls), bus_settings), caller(bus_settings) as c:
        replies = await asyncio.gather(
            *(c.request(f"{service_name}.add", {"a": i, "b": 1}, timeout_s=20) for i in range(20))
        )
    assert [r["sum"] for r in replies] == [i + 1 for i in range(20)]
    assert {r["from"] for r in replies} == {"itest-caller"}
    assert len(calls) == 20


async def test_remote_error_keeps_code_message_and_retriable(
    service_name: str, bus_settings: BusSettings
) -> None:
    async with running(calculator(service_name, []), bus_settings), caller(bus_settings) as c:
        with pytest.raises(RemoteError) as raised:
            await c.request(f"{service_name}.refuse", {}, timeout_s=20)
    assert raised.value.remote_code == "out_of_stock"
    assert raised.value.message == "nothing left"
    assert raised.value.remote_retriable is True


async def test_handler_past_the_deadline_gives_a_timeout(
    service_name: str, bus_settings: BusSettings
) -> None:
    calls: list[str] = []
    async with running(calculator(service_name, calls), bus_settings), caller(bus_settings) as c:
        await c.request(f"{service_name}.add", {"a": 1, "b": 1}, timeout_s=20)  # group joined
        with pytest.raises(DeadlineExceeded):
            await c.request(f"{service_name}.hang", {}, timeout_s=1.0)
    assert "hang-started" in calls


async def test_expired_request_is_dropped_unhandled(
    service_name: str, bus_settings: BusSettings
) -> None:
    calls: list[str] = []
    transport = KafkaTransport(bus_settings)
    expired = new_request(
        source="itest-caller", operation=f"{service_name}.add", value=b'{"a":1,"b":2}',
        reply_to=ReplyTo("mesh.replies", 0), deadline_ms=now_ms() - 1,
    )
    try:
        await transport.send(f"{service_name}.requests", expired.value,
                             headers=to_headers(expired))
        async with running(calculator(service_name, calls), bus_settings) as worker, \
                caller(bus_settings) as c:
            await c.request(f"{service_name}.add", {"a": 2, "b": 2}, timeout_s=20)
            await wait_until(lambda: worker.rejected >= 1)
    finally:
        await transport.close()
    assert expired.id not in calls
    assert len(calls) == 1


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [("ce_id", b"x")],
        [("ce_id", b"\xff\xfe"), ("ce_source", b"a"), ("ce_type", b"b"), ("ce_time", b"1"),
         ("mesh_kind", b"request")],
        [("ce_id", b"1"), ("ce_source", b"a"), ("ce_type", b"b"), ("ce_time", b"soon"),
         ("mesh_kind", b"request"), ("mesh_reply_to", b"mesh.replies:0")],
    ],
)
async def test_malformed_records_never_reach_a_handler(
    service_name: str, bus_settings: BusSettings, headers: list[tuple[str, bytes]]
) -> None:
    calls: list[str] = []
    transport = KafkaTransport(bus_settings)
    try:
        await transport.send(f"{service_name}.requests", b"\x00junk", headers=headers)
        async with running(calculator(service_name, calls), bus_settings) as worker, \
                caller(bus_settings) as c:
            reply = await c.request(f"{service_name}.add", {"a": 5, "b": 5}, timeout_s=20)
            await wait_until(lambda: worker.rejected >= 1)
    finally:
        await transport.close()
    assert reply["sum"] == 10
    assert len(calls) == 1  # only the good request


async def test_reply_listener_starts_at_the_end_and_filters_by_correlation(
    bus_settings: BusSettings,
) -> None:
    transport = KafkaTransport(bus_settings)
    request = new_request(source="x", operation="svc.op", value=b"{}",
                          reply_to=ReplyTo("mesh.replies", 7), deadline_ms=now_ms() + 10_000)
    old = reply_for(request, source="svc", value=b'{"old":true}')
    await transport.send("mesh.replies", old.value, headers=to_headers(old), partition=7)
    listener = ReplyListener(transport, "mesh.replies", 7)
    await listener.start()
    try:
        waiter = listener.expect(request.correlation_id or "")
        stranger = reply_for(
            new_request(source="x", operation="svc.op", value=b"{}",
                        reply_to=ReplyTo("mesh.replies", 7), deadline_ms=now_ms() + 10_000),
            source="svc", value=b"{}")
        await transport.send("mesh.replies", stranger.value, headers=to_headers(stranger),
                             partition=7)
        await wait_until(lambda: listener.ignored >= 1)
        assert not waiter.done()  # the reply written before start() was not read
        fresh = reply_for(request, source="svc", value=b'{"fresh":true}')
        await transport.send("mesh.replies", fresh.value, headers=to_headers(fresh), partition=7)
        got = await asyncio.wait_for(waiter, 10)
    finally:
        await listener.stop()
        await transport.close()
    assert got.value == b'{"fresh":true}'


async def wait_until(condition: Callable[[], Any], timeout_s: float = 15.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - polls counters the worker owns
            await asyncio.sleep(0.05)
