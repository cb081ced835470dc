"""Mesh guarantees across client and worker: nested deadlines and traces, caller retries,
idempotent handling of duplicates, telemetry wiring (memory transport)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import pytest

from bus.config import BusSettings
from bus.delivery.idempotency import MemoryIdempotencyStore
from bus.envelope import Envelope, ReplyTo, from_record, new_id, new_request, now_ms, to_headers
from bus.errors import HandlerError, RemoteError
from bus.runtime.client import MeshClient
from bus.runtime.worker import ServiceWorker
from bus.security.identity import Identity
from bus.security.quarantine import QUARANTINE_TOPIC
from bus.service import Payload, Service
from bus.telemetry.tracing import trace_id
from bus.transport.memory import MemoryBroker, MemoryTransport
from tests.support import Telemetry, identities


@pytest.fixture
def broker() -> MemoryBroker:
    broker = MemoryBroker()
    for topic in ("front.requests", "back.requests", QUARANTINE_TOPIC):
        broker.create_topic(topic)
    broker.create_topic("mesh.replies", partitions=2)
    return broker


@pytest.fixture
def mesh() -> dict[str, Identity]:
    return identities({"caller": ["front.requests"],
                       "front": ["mesh.replies", "back.requests"],
                       "back": ["mesh.replies"]})


def settings(name: str, **extra: Any) -> BusSettings:
    return BusSettings(service_name=name, reply_partition=0 if name == "caller" else 1, **extra)


@asynccontextmanager
async def mesh_running(
    broker: MemoryBroker, mesh: dict[str, Identity], services: list[Service],
    telemetry: Telemetry | None = None, store: MemoryIdempotencyStore | None = None,
) -> AsyncIterator[list[ServiceWorker]]:
    stop = asyncio.Event()
    workers = [ServiceWorker(s, MemoryTransport(broker), settings(s.name), mesh[s.name],
                             store=store if store is not None else MemoryIdempotencyStore(),
                             telemetry=telemetry.for_service(s.name) if telemetry else None)
               for s in services]
    tasks = [asyncio.create_task(w.run(stop)) for w in workers]
    try:
        yield workers
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)


def client_of(broker: MemoryBroker, mesh: dict[str, Identity], name: str,
              telemetry: Telemetry | None = None, **extra: Any) -> MeshClient:
    return MeshClient(MemoryTransport(broker), settings(name, **extra), mesh[name],
                      telemetry=telemetry.for_service(name) if telemetry else None)


def front_and_back(broker: MemoryBroker, mesh: dict[str, Identity],
                   seen: list[Envelope], telemetry: Telemetry | None = None
                   ) -> tuple[Service, Service]:
    front, back = Service("front"), Service("back")
    front_client = client_of(broker, mesh, "front", telemetry)

    @front.operation("front.ask")
    async def ask(payload: Payload, message: Envelope) -> Payload:
        seen.append(message)
        return await front_client.request("back.answer", payload, timeout_s=60)

    @back.operation("back.answer")
    async def answer(payload: Payload, message: Envelope) -> Payload:
        seen.append(message)
        return {"answer": payload["question"] * 2}

    return front, back


async def test_nested_call_inherits_the_deadline_and_the_trace(
    broker: MemoryBroker, mesh: dict[str, Identity]
) -> None:
    seen: list[Envelope] = []
    caller = client_of(broker, mesh, "caller")
    async with mesh_running(broker, mesh, list(front_and_back(broker, mesh, seen))):
        reply = await caller.request("front.ask", {"question": 21}, timeout_s=10,
                                     traceparent="00-0af7651916cd43dd8448eb211c80319c-"
                                                 "b7ad6b7169203331-01")
    await caller.close()
    assert reply == {"answer": 42}
    outer, inner = seen
    assert outer.deadline_ms is not None
    assert inner.deadline_ms is not None
    # The inner call asked for 60 s but cannot outlive the outer call's 10 s (10 s, not 2:
    # both hops must answer inside it on a loaded machine too).
    assert inner.deadline_ms <= outer.deadline_ms
    assert trace_id(inner.traceparent) == trace_id(outer.traceparent) == (
        "0af7651916cd43dd8448eb211c80319c")


async def test_caller_retries_a_retriable_error_with_the_same_correlation(
    broker: MemoryBroker, mesh: dict[str, Identity]
) -> None:
    attempts: list[Envelope] = []
    front = Service("front")

    @front.operation("front.ask")
    async def flaky(payload: Payload, message: Envelope) -> Payload:
        attempts.append(message)
        if len(attempts) < 3:
            raise HandlerError("busy", "try again", retriable=True)
        return {"ok": True}

    caller = client_of(broker, mesh, "caller", max_attempts=3)
    async with mesh_running(broker, mesh, [front]):
        assert await caller.request("front.ask", {}, timeout_s=10) == {"ok": True}
        attempts.clear()
        impatient = client_of(broker, mesh, "caller", max_attempts=2)
        with pytest.raises(RemoteError) as raised:
            await impatient.request("front.ask", {}, timeout_s=10)
    await caller.close()
    assert raised.value.remote_code == "busy"
    assert [a.attempt for a in attempts] == [1, 2]
    assert len({a.id for a in attempts}) == 2
    assert len({a.correlation_id for a in attempts}) == 1


async def test_a_non_retriable_error_is_not_retried(
    broker: MemoryBroker, mesh: dict[str, Identity]
) -> None:
    attempts: list[Envelope] = []
    front = Service("front")

    @front.operation("front.ask")
    async def refuse(payload: Payload, message: Envelope) -> Payload:
        attempts.append(message)
        raise HandlerError("invalid_question", "no")

    caller = client_of(broker, mesh, "caller", max_attempts=5)
    async with mesh_running(broker, mesh, [front]):
        with pytest.raises(RemoteError):
            await caller.request("front.ask", {}, timeout_s=10)
    await caller.close()
    assert len(attempts) == 1


async def test_duplicate_delivery_is_applied_once_and_answered_twice(
    broker: MemoryBroker, mesh: dict[str, Identity]
) -> None:
    applied: list[str] = []
    back = Service("back")

    @back.operation("back.answer")
    async def answer(payload: Payload, message: Envelope) -> Payload:
        applied.append(message.id)
        return {"n": len(applied)}

    # A caller retry after a lost reply: same correlation id, a new message id.
    caller = mesh["front"]
    first = new_request(source="front", operation="back.answer", value=b"{}",
                        reply_to=ReplyTo("mesh.replies", 1), deadline_ms=now_ms() + 10_000)
    again = replace(first, id=new_id(), attempt=2)
    transport = MemoryTransport(broker)
    for envelope in (first, again):
        sealed = caller.outgoing(envelope, "back.requests")
        await transport.send("back.requests", sealed.value, headers=to_headers(sealed))
    store = MemoryIdempotencyStore()
    async with mesh_running(broker, mesh, [back], store=store) as [worker]:
        async with asyncio.timeout(5):
            while len(broker.log("mesh.replies")[1]) < 2:
                await broker.wait_for_change(0.1)
    replies = [from_record(r.headers, r.value) for r in broker.log("mesh.replies")[1]]
    assert applied == [first.id]
    assert worker.duplicates == 1
    assert [r.value for r in replies] == [b'{"n":1}', b'{"n":1}']
    assert {r.correlation_id for r in replies} == {first.correlation_id}
    assert len({r.id for r in replies}) == 2  # a fresh reply, not a replay of the first


async def test_spans_and_metrics_follow_the_call(
    broker: MemoryBroker, mesh: dict[str, Identity]
) -> None:
    telemetry = Telemetry()
    seen: list[Envelope] = []
    caller = client_of(broker, mesh, "caller", telemetry)
    async with mesh_running(broker, mesh, list(front_and_back(broker, mesh, seen, telemetry)),
                            telemetry) as workers:
        await caller.request("front.ask", {"question": 1}, timeout_s=5)
        junk = ("ce_id", b"x")
        await MemoryTransport(broker).send("front.requests", b"junk", headers=[junk])
        async with asyncio.timeout(5):
            while workers[0].quarantined < 1:
                await broker.wait_for_change(0.1)
    await caller.close()
    spans = telemetry.spans.get_finished_spans()
    assert len({s.context.trace_id for s in spans}) == 1
    by_name = {s.name: s for s in spans}
    process_front = by_name["process front.requests"]
    process_back = by_name["process back.requests"]
    send_back = by_name["send back.requests"]
    assert process_front.parent is not None
    assert process_front.parent.span_id == by_name["send front.requests"].context.span_id
    assert by_name["back.answer"].parent is not None
    assert by_name["back.answer"].parent.span_id == process_front.context.span_id
    assert process_back.parent is not None
    assert process_back.parent.span_id == send_back.context.span_id
    requests = {p.attributes["mesh.operation"]: p.value
                for p in telemetry.points("mesh.requests")}
    assert requests == {"front.ask": 1, "back.answer": 1}
    [quarantined] = telemetry.points("mesh.quarantined")
    assert quarantined.attributes["error.type"] == "bad_envelope"
