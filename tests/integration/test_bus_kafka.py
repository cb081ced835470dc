"""The mesh client on the real broker: request/reply with real signatures, and every refusal
(each refused message is parked on the quarantine topic and never reaches a handler)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import pytest

from bus.config import BusSettings
from bus.delivery.idempotency import MemoryIdempotencyStore
from bus.envelope import (
    Envelope,
    ReplyTo,
    from_record,
    new_request,
    now_ms,
    reply_for,
    to_headers,
)
from bus.errors import DeadlineExceeded, EnvelopeError, HandlerError, RemoteError
from bus.runtime.client import MeshClient
from bus.runtime.worker import ServiceWorker
from bus.security.access import AccessPolicy, NotAllowed
from bus.security.identity import Identity
from bus.security.keys import generate_ed25519
from bus.security.quarantine import H_ORIGINAL_TOPIC, H_REASON, QUARANTINE_TOPIC
from bus.security.signing import sign
from bus.service import Payload, Service
from bus.transport import Record
from bus.transport.kafka import KafkaTransport
from tests.support import identities

pytestmark = pytest.mark.integration
CALLER = "itest-caller"


@pytest.fixture
def mesh(service_name: str) -> dict[str, Identity]:
    return identities({
        CALLER: [f"{service_name}.requests"],
        service_name: ["mesh.replies"],
        "itest-other": ["mesh.replies"],  # in the keyring, but may not call the service
    })


@asynccontextmanager
async def running(
    service: Service, settings: BusSettings, mesh: dict[str, Identity], **overrides: Any
) -> AsyncIterator[ServiceWorker]:
    settings = settings.model_copy(update={"service_name": service.name, **overrides})
    transport = KafkaTransport(settings)
    worker = ServiceWorker(service, transport, settings, mesh[service.name],
                           store=MemoryIdempotencyStore())
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        await transport.close()


@asynccontextmanager
async def caller(settings: BusSettings, identity: Identity) -> AsyncIterator[MeshClient]:
    client = MeshClient(KafkaTransport(settings), settings, identity)
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


async def wait_until(condition: Callable[[], Any], timeout_s: float = 15.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - polls counters the worker owns
            await asyncio.sleep(0.05)


async def quarantined(transport: KafkaTransport, original_topic: str, count: int) -> list[Record]:
    """The records parked from ``original_topic``, waiting until ``count`` of them arrived."""
    partitions = await transport.partition_count(QUARANTINE_TOPIC)
    readers = [transport.assigned_reader(QUARANTINE_TOPIC, p, from_beginning=True)
               for p in range(partitions)]
    found: list[Record] = []
    for reader in readers:
        await reader.start()
    try:
        async with asyncio.timeout(20):
            while len(found) < count:
                for reader in readers:
                    for record in await reader.read(0.2):
                        if dict(record.headers).get(H_ORIGINAL_TOPIC) == original_topic.encode():
                            found.append(record)
    finally:
        for reader in readers:
            await reader.stop()
    return found


def signed_request(
    sender: Identity, service_name: str, value: bytes = b'{"a":1,"b":2}', **fields: Any
) -> Envelope:
    envelope = new_request(source=sender.service, operation=f"{service_name}.add", value=value,
                           reply_to=ReplyTo("mesh.replies", 0), deadline_ms=now_ms() + 30_000)
    envelope = replace(envelope, **fields)
    assert sender.signing_key is not None
    return sign(envelope, f"{service_name}.requests", sender.signing_key)


async def test_request_reply_round_trip(
    service_name: str, bus_settings: BusSettings, mesh: dict[str, Identity]
) -> None:
    calls: list[str] = []
    async with running(calculator(service_name, calls), bus_settings, mesh), \
            caller(bus_settings, mesh[CALLER]) as c:
        replies = await asyncio.gather(
            *(c.request(f"{service_name}.add", {"a": i, "b": 1}, timeout_s=20) for i in range(20))
        )
    assert [r["sum"] for r in replies] == [i + 1 for i in range(20)]
    assert {r["from"] for r in replies} == {CALLER}
    assert len(calls) == 20


async def test_remote_error_keeps_code_message_and_retriable(
    service_name: str, bus_settings: BusSettings, mesh: dict[str, Identity]
) -> None:
    async with running(calculator(service_name, []), bus_settings, mesh), \
            caller(bus_settings, mesh[CALLER]) as c:
        with pytest.raises(RemoteError) as raised:
            await c.request(f"{service_name}.refuse", {}, timeout_s=20)
    assert raised.value.remote_code == "out_of_stock"
    assert raised.value.message == "nothing left"
    assert raised.value.remote_retriable is True


async def test_handler_past_the_deadline_gives_a_timeout(
    service_name: str, bus_settings: BusSettings, mesh: dict[str, Identity]
) -> None:
    calls: list[str] = []
    async with running(calculator(service_name, calls), bus_settings, mesh), \
            caller(bus_settings, mesh[CALLER]) as c:
        await c.request(f"{service_name}.add", {"a": 1, "b": 1}, timeout_s=20)  # group joined
        with pytest.raises(DeadlineExceeded):
            await c.request(f"{service_name}.hang", {}, timeout_s=1.0)
    assert "hang-started" in calls


async def test_expired_request_is_dropped_unhandled(
    service_name: str, bus_settings: BusSettings, mesh: dict[str, Identity]
) -> None:
    calls: list[str] = []
    transport = KafkaTransport(bus_settings)
    expired = signed_request(mesh[CALLER], service_name, deadline_ms=now_ms() - 1)
    try:
        await transport.send(f"{service_name}.requests", expired.value,
                             headers=to_headers(expired))
        async with running(calculator(service_name, calls), bus_settings, mesh) as worker, \
                caller(bus_settings, mesh[CALLER]) as c:
            await c.request(f"{service_name}.add", {"a": 2, "b": 2}, timeout_s=20)
            await wait_until(lambda: worker.expired >= 1)
    finally:
        await transport.close()
    assert expired.id not in calls
    assert len(calls) == 1


def _forgeries(service_name: str, mesh: dict[str, Identity]) -> dict[str, list[Envelope]]:
    """Bad messages by the reason the worker must give for each."""
    mallory_key, _ = generate_ed25519(CALLER)  # a key nobody trusts, claiming to be the caller
    unknown = sign(new_request(source=CALLER, operation=f"{service_name}.add", value=b"{}",
                               reply_to=ReplyTo("mesh.replies", 0),
                               deadline_ms=now_ms() + 30_000),
                   f"{service_name}.requests", mallory_key)
    tampered = replace(signed_request(mesh[CALLER], service_name), value=b'{"a":1000,"b":2}')
    stale = signed_request(mesh[CALLER], service_name, time_ms=now_ms() - 3_600_000)
    unsigned = replace(signed_request(mesh[CALLER], service_name), signature=None)
    other = signed_request(mesh["itest-other"], service_name)
    # Signed for another topic, then written here: the signature binds the topic.
    caller_key = mesh[CALLER].signing_key
    assert caller_key is not None
    elsewhere = sign(new_request(source=CALLER, operation=f"{service_name}.add", value=b"{}",
                                 reply_to=ReplyTo("mesh.replies", 0),
                                 deadline_ms=now_ms() + 30_000),
                     "some.other.topic", caller_key)
    return {
        "unknown_key_id": [unknown],
        "bad_signature": [tampered, elsewhere],
        "stale_message": [stale],
        "missing_signature": [unsigned],
        "not_allowed": [other],
    }


async def test_forged_stale_and_unauthorised_messages_are_quarantined(
    service_name: str, bus_settings: BusSettings, mesh: dict[str, Identity]
) -> None:
    calls: list[str] = []
    topic = f"{service_name}.requests"
    forgeries = _forgeries(service_name, mesh)
    transport = KafkaTransport(bus_settings)
    try:
        for envelopes in forgeries.values():
            for envelope in envelopes:
                await transport.send(topic, envelope.value, headers=to_headers(envelope))
        expected = sum(len(e) for e in forgeries.values())
        async with running(calculator(service_name, calls), bus_settings, mesh) as worker, \
                caller(bus_settings, mesh[CALLER]) as c:
            assert (await c.request(f"{service_name}.add", {"a": 1, "b": 1}, timeout_s=20)
                    )["sum"] == 2
            await wait_until(lambda: worker.quarantined >= expected)
        parked = await quarantined(transport, topic, expected)
    finally:
        await transport.close()
    assert len(calls) == 1  # only the genuine request reached the handler
    reasons = sorted(dict(r.headers)[H_REASON].decode() for r in parked)
    assert reasons == sorted(reason for reason, envs in forgeries.items() for _ in envs)


async def test_replayed_message_is_handled_once(
    service_name: str, bus_settings: BusSettings, mesh: dict[str, Identity]
) -> None:
    calls: list[str] = []
    topic = f"{service_name}.requests"
    original = signed_request(mesh[CALLER], service_name)
    transport = KafkaTransport(bus_settings)
    try:
        for _ in range(3):
            await transport.send(topic, original.value, headers=to_headers(original))
        async with running(calculator(service_name, calls), bus_settings, mesh) as worker:
            await wait_until(lambda: worker.handled + worker.quarantined >= 3)
        parked = await quarantined(transport, topic, 2)
    finally:
        await transport.close()
    assert calls == [original.id]
    assert {dict(r.headers)[H_REASON] for r in parked} == {b"replayed_message"}


async def test_oversized_payloads_are_refused_on_both_sides(
    service_name: str, bus_settings: BusSettings, mesh: dict[str, Identity]
) -> None:
    calls: list[str] = []
    topic = f"{service_name}.requests"
    big = signed_request(mesh[CALLER], service_name, value=b'{"a":1,"b":2,"pad":"' +
                         b"x" * 20_000 + b'"}')
    transport = KafkaTransport(bus_settings)
    small = bus_settings.model_copy(update={"max_message_bytes": 10_000})
    try:
        await transport.send(topic, big.value, headers=to_headers(big))
        async with running(calculator(service_name, calls), small, mesh) as worker, \
                caller(small, mesh[CALLER]) as c:
            with pytest.raises(EnvelopeError):
                await c.request(f"{service_name}.add", {"pad": "y" * 20_000}, timeout_s=20)
            await wait_until(lambda: worker.quarantined >= 1)
        parked = await quarantined(transport, topic, 1)
    finally:
        await transport.close()
    assert calls == []
    assert dict(parked[0].headers)[H_REASON] == b"oversized"


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
    service_name: str, bus_settings: BusSettings, mesh: dict[str, Identity],
    headers: list[tuple[str, bytes]],
) -> None:
    calls: list[str] = []
    transport = KafkaTransport(bus_settings)
    try:
        await transport.send(f"{service_name}.requests", b"\x00junk", headers=headers)
        async with running(calculator(service_name, calls), bus_settings, mesh) as worker, \
                caller(bus_settings, mesh[CALLER]) as c:
            reply = await c.request(f"{service_name}.add", {"a": 5, "b": 5}, timeout_s=20)
            await wait_until(lambda: worker.quarantined >= 1)
        parked = await quarantined(transport, f"{service_name}.requests", 1)
    finally:
        await transport.close()
    assert reply["sum"] == 10
    assert len(calls) == 1  # only the good request
    assert dict(parked[0].headers)[H_REASON] == b"bad_envelope"


async def test_forged_reply_is_refused_and_the_genuine_one_delivered(
    service_name: str, bus_settings: BusSettings, mesh: dict[str, Identity]
) -> None:
    settings = bus_settings.model_copy(update={"reply_partition": 5})
    mallory_key, _ = generate_ed25519(service_name)
    transport = KafkaTransport(bus_settings)
    seen: list[Envelope] = []
    service = Service(service_name)

    @service.operation(f"{service_name}.add")
    async def slow_add(payload: Payload, message: Envelope) -> Payload:
        # Race a forged answer to the caller's partition while the real one is computed.
        forged = sign(reply_for(message, source=service_name, value=b'{"sum":-1}'),
                      "mesh.replies", mallory_key)
        await transport.send("mesh.replies", forged.value, headers=to_headers(forged),
                             partition=5)
        seen.append(message)
        await asyncio.sleep(0.5)
        return {"sum": payload["a"] + payload["b"]}

    try:
        async with running(service, bus_settings, mesh), caller(settings, mesh[CALLER]) as c:
            reply = await c.request(f"{service_name}.add", {"a": 2, "b": 3}, timeout_s=20)
            assert c.quarantined == 1
    finally:
        await transport.close()
    assert reply == {"sum": 5}
    assert len(seen) == 1


async def test_reply_listener_starts_at_the_end_and_filters_by_correlation(
    bus_settings: BusSettings,
) -> None:
    mesh = identities({"svc": ["mesh.replies"], "x": ["svc.requests"]})
    settings = bus_settings.model_copy(update={"service_name": "x", "reply_partition": 7})
    client = MeshClient(KafkaTransport(settings), settings, mesh["x"])
    transport = KafkaTransport(bus_settings)
    request = new_request(source="x", operation="svc.op", value=b"{}",
                          reply_to=ReplyTo("mesh.replies", 7), deadline_ms=now_ms() + 10_000)

    async def send_reply(value: bytes, to: Envelope) -> None:
        assert mesh["svc"].signing_key is not None
        reply = sign(reply_for(to, source="svc", value=value), "mesh.replies",
                     mesh["svc"].signing_key)
        await transport.send("mesh.replies", reply.value, headers=to_headers(reply), partition=7)

    await send_reply(b'{"old":true}', request)
    listener = await client.start()
    try:
        waiter = listener.expect(request.correlation_id or "", request.type)
        stranger = new_request(source="x", operation="svc.op", value=b"{}",
                               reply_to=ReplyTo("mesh.replies", 7), deadline_ms=now_ms() + 10_000)
        await send_reply(b"{}", stranger)
        await wait_until(lambda: listener.ignored >= 1)
        assert not waiter.done()  # the reply written before start() was not read
        await send_reply(b'{"fresh":true}', request)
        got = await asyncio.wait_for(waiter, 10)
    finally:
        await client.close()
        await transport.close()
    assert got.value == b'{"fresh":true}'
    assert from_record(to_headers(got), got.value).source == "svc"


async def test_access_is_refused_on_the_sending_side_and_for_consumption(
    service_name: str, bus_settings: BusSettings, mesh: dict[str, Identity]
) -> None:

    other = bus_settings.model_copy(update={"service_name": "itest-other"})
    async with caller(other, mesh["itest-other"]) as c:
        with pytest.raises(NotAllowed):  # may not produce to the service's request topic
            await c.request(f"{service_name}.add", {"a": 1, "b": 1}, timeout_s=10)
    restricted = Identity(service_name, mesh[service_name].signing_key,
                          mesh[service_name].keyring,
                          AccessPolicy.from_dict({service_name: ["mesh.replies"]},
                                                 {service_name: ["somewhere.else"]}))
    settings = bus_settings.model_copy(update={"service_name": service_name})
    transport = KafkaTransport(settings)
    try:
        worker = ServiceWorker(calculator(service_name, []), transport, settings, restricted,
                               store=MemoryIdempotencyStore())
        with pytest.raises(NotAllowed):  # may not consume its own request topic here
            await asyncio.wait_for(worker.run(asyncio.Event()), 10)
    finally:
        await transport.close()
