"""The idempotency store's round trips per request, on the real broker and the emulator's
DynamoDB (issue 15): an operation with side effects costs one conditional write to claim and
one to complete, and a copy of a handled request, delivered to a restarted worker (its
in-memory replay guard empty), is answered from the store and never applied twice; an
operation the policy declares ``side_effect_free`` costs no store call at all, and its copy
simply runs again.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bus import codec
from bus.config import BusSettings
from bus.envelope import H_CORRELATION, Envelope, ReplyTo, new_request, now_ms, to_headers
from bus.runtime.worker import ServiceWorker
from bus.security.access import AccessPolicy
from bus.security.identity import Identity
from bus.security.keys import KeyRing, generate_ed25519
from bus.security.quarantine import QUARANTINE_TOPIC
from bus.service import Payload, Service
from bus.transport import Reader
from bus.transport.kafka import KafkaTransport
from functions.shared.dynamodb_idempotency import DynamoDBIdempotencyStore
from infra.settings import Settings
from infra.stack.tables import idempotency_table
from tests.support import scratch_table

pytestmark = pytest.mark.integration
REPLIES = "mesh.replies"


@pytest.fixture(scope="module")
def table(dynamodb: Any) -> Iterator[str]:
    with scratch_table(dynamodb, "sidefx", idempotency_table()) as name:
        yield name


class CountedStore(DynamoDBIdempotencyStore):
    """The DynamoDB store, counting the API calls it makes (botocore's own event)."""

    def __init__(self, table: str, settings: Settings) -> None:
        super().__init__(table, client_args=settings.aws_client_args())
        self.calls: Counter[str] = Counter()
        self.client().meta.events.register("before-call.dynamodb", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[str(model.name)] += 1


@asynccontextmanager
async def fresh_topic(bootstrap: str, name: str) -> AsyncIterator[None]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 1, 1)])
        async with asyncio.timeout(30):
            while name not in set(await admin.list_topics()):  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        yield
        await admin.delete_topics([name])
    finally:
        await admin.close()


async def until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - polls counters the worker owns
            await asyncio.sleep(0.05)


async def answers_to(reader: Reader, calls: dict[str, str], count: int
                     ) -> dict[str, list[bytes]]:
    """``count`` answers to each call of ``calls`` (name -> correlation id), in order."""
    names = {correlation.encode(): name for name, correlation in calls.items()}
    found: dict[str, list[bytes]] = {name: [] for name in calls}
    async with asyncio.timeout(30):
        while any(len(values) < count for values in found.values()):
            for record in await reader.read(0.5):
                name = names.get(dict(record.headers).get(H_CORRELATION, b""))
                if name is not None:
                    found[name].append(record.value or b"")
    return found


async def test_store_round_trips_and_duplicates_per_declared_operation(
    bootstrap: str, table: str, infra_settings: Settings,
) -> None:
    name = f"itestfx{uuid.uuid4().hex[:8]}"
    topic = f"{name}.requests"
    keys = {who: generate_ed25519(who) for who in ("caller", name)}
    ring = KeyRing(verify for _, verify in keys.values())
    access = AccessPolicy.from_dict({"caller": [topic], name: [REPLIES, QUARANTINE_TOPIC]},
                                    side_effect_free=[f"{name}.read"])
    mesh = {who: Identity(who, signing, ring, access) for who, (signing, _) in keys.items()}
    ran: Counter[str] = Counter()
    service = Service(name)

    @service.operation(f"{name}.write")
    async def write(payload: Payload, message: Envelope) -> Payload:
        ran["write"] += 1
        return {"applied": ran["write"]}

    @service.operation(f"{name}.read")
    async def read(payload: Payload, message: Envelope) -> Payload:
        ran["read"] += 1
        return {"ran": ran["read"]}

    settings = BusSettings(bootstrap_servers=bootstrap, service_name=name)
    sender = KafkaTransport(settings.model_copy(update={"service_name": "caller"}))
    requests = {op: mesh["caller"].outgoing(new_request(
        source="caller", operation=f"{name}.{op}", value=b"{}",
        reply_to=ReplyTo(REPLIES, 0), deadline_ms=now_ms() + 60_000), topic)
        for op in ("write", "read")}

    async def life(calls: Counter[str]) -> ServiceWorker:
        """A worker that handles both requests once, then stops (a restart follows)."""
        store = CountedStore(table, infra_settings)
        transport = KafkaTransport(settings)
        worker = ServiceWorker(service, transport, settings, mesh[name], store=store)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            for done, request in enumerate(requests.values(), start=1):
                await sender.send(topic, request.value, headers=to_headers(request))

                def settled(done: int = done) -> bool:
                    return worker.handled + worker.duplicates >= done

                await until(settled)
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)
            await transport.close()
        calls.update(store.calls)
        return worker

    replies = sender.assigned_reader(REPLIES, 0)
    first_calls: Counter[str] = Counter()
    again_calls: Counter[str] = Counter()
    async with fresh_topic(bootstrap, topic):
        await replies.start()
        try:
            first = await life(first_calls)
            again = await life(again_calls)  # its replay guard is empty: the copies get in
            answers = await answers_to(
                replies, {op: request.correlation_id or "" for op, request in requests.items()}, 2)
        finally:
            await replies.stop()
            await sender.close()
    # With side effects: applied once; the copy answered from the store with that result.
    assert ran["write"] == 1
    assert [codec.decode(v) for v in answers["write"]] == [{"applied": 1}] * 2
    assert (first.handled, again.duplicates) == (2, 1)
    # One conditional write claims, one completes; a copy costs the claim that finds it done
    # (plus a read only where the store returns no old item with the refusal).
    assert first_calls == {"PutItem": 2}
    assert again_calls["PutItem"] == 1
    assert set(again_calls) <= {"PutItem", "GetItem"}
    # Declared free of side effects: no store call at all, and the copy simply ran again.
    assert ran["read"] == 2
    assert [codec.decode(v) for v in answers["read"]] == [{"ran": 1}, {"ran": 2}]
    assert again.handled == 1


async def test_a_result_longer_than_an_item_is_answered_once_and_never_run_again(
    bootstrap: str, table: str, infra_settings: Settings,
) -> None:
    """A 450 KB answer: a Kafka message carries it, a DynamoDB item (400 KB) cannot. The call
    is answered and recorded as handled without its result; the copy delivered to a
    restarted worker gets the error ``result_not_kept``, and the handler ran once. (Before,
    the completion was refused, the answer never left, and a copy ran the handler again once
    the claim's lease ran out.)"""
    name = f"itestbig{uuid.uuid4().hex[:8]}"
    topic = f"{name}.requests"
    keys = {who: generate_ed25519(who) for who in ("caller", name)}
    ring = KeyRing(verify for _, verify in keys.values())
    access = AccessPolicy.from_dict({"caller": [topic], name: [REPLIES, QUARANTINE_TOPIC]})
    mesh = {who: Identity(who, signing, ring, access) for who, (signing, _) in keys.items()}
    ran: list[str] = []
    service = Service(name)
    rows = "x" * 450_000

    @service.operation(f"{name}.export")
    async def export(payload: Payload, message: Envelope) -> Payload:
        ran.append(message.id)
        return {"rows": rows}

    settings = BusSettings(bootstrap_servers=bootstrap, service_name=name)
    sender = KafkaTransport(settings.model_copy(update={"service_name": "caller"}))
    request = mesh["caller"].outgoing(new_request(
        source="caller", operation=f"{name}.export", value=b"{}",
        reply_to=ReplyTo(REPLIES, 0), deadline_ms=now_ms() + 60_000), topic)

    async def life() -> ServiceWorker:
        transport = KafkaTransport(settings)
        worker = ServiceWorker(service, transport, settings, mesh[name],
                               store=DynamoDBIdempotencyStore(
                                   table, client_args=infra_settings.aws_client_args()))
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            await sender.send(topic, request.value, headers=to_headers(request))
            await until(lambda: worker.handled + worker.duplicates + worker.abandoned >= 1)
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)
            await transport.close()
        return worker

    replies = sender.assigned_reader(REPLIES, 0)
    async with fresh_topic(bootstrap, topic):
        await replies.start()
        try:
            first = await life()
            again = await life()  # its replay guard is empty: the copy gets in
            answers = await answers_to(replies, {"export": request.correlation_id or ""}, 2)
        finally:
            await replies.stop()
            await sender.close()
    assert ran == [request.id]
    assert (first.handled, first.abandoned, again.duplicates, again.handled) == (1, 0, 1, 0)
    answered, duplicate = (codec.decode(value) for value in answers["export"])
    assert answered == {"rows": rows}
    assert duplicate["code"] == "result_not_kept"
    assert duplicate["retriable"] is False
