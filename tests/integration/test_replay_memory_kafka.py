"""The replay memory is durable, on the real broker and the emulator's DynamoDB: a consumer
restarted with an empty process memory still never runs a message twice.

- events: a day-old event (far past the freshness window) is handled; after a restart, a
  copy of a handled event written again to the topic and onto its retry topic is quarantined
  as ``replayed_message``, never run; a new event (the control) is handled;
- requests: after a restart, a copy of a handled request (admitted: the in-memory guard is
  empty) is answered from the stored reply, never applied twice.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bus import codec
from bus.config import BusSettings
from bus.delivery.retry_topics import RetryTopicPolicy, RetryTopics
from bus.envelope import (
    H_CORRELATION,
    KIND_EVENT,
    Envelope,
    ReplyTo,
    new_id,
    new_request,
    now_ms,
    to_headers,
)
from bus.runtime.subscriber import EventSubscriber
from bus.runtime.worker import ServiceWorker
from bus.security.identity import Identity
from bus.security.quarantine import QUARANTINE_TOPIC
from bus.service import Payload, Service
from bus.transport.kafka import KafkaTransport
from functions.shared.dynamodb_idempotency import DynamoDBIdempotencyStore
from infra.settings import Settings
from infra.stack.tables import idempotency_table
from tests.support import identities, scratch_table

pytestmark = pytest.mark.integration
POLICY = RetryTopicPolicy.of_seconds(0.5)
REPLIES = "mesh.replies"
DAY_MS = 24 * 3600 * 1000


@pytest.fixture(scope="module")
def table(dynamodb: Any) -> Iterator[str]:
    with scratch_table(dynamodb, "replaymem", idempotency_table()) as name:
        yield name


@pytest.fixture
def store(table: str, infra_settings: Settings) -> DynamoDBIdempotencyStore:
    return DynamoDBIdempotencyStore(table, client_args=infra_settings.aws_client_args())


@asynccontextmanager
async def fresh_topics(bootstrap: str, names: list[str]) -> AsyncIterator[None]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, 1, 1) for n in names])
        async with asyncio.timeout(30):  # known to the broker's metadata before the first send
            while not set(names) <= set(await admin.list_topics()):  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        yield
        await admin.delete_topics(names)
    finally:
        await admin.close()


@asynccontextmanager
async def running(run: Callable[[asyncio.Event], Any]) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - polls counters the consumer owns
            await asyncio.sleep(0.05)


async def test_a_restarted_subscriber_handles_old_events_and_refuses_copies(
    bootstrap: str, store: DynamoDBIdempotencyStore,
) -> None:
    topic = f"itest{uuid.uuid4().hex[:10]}.events"
    retry_topic = RetryTopics(topic, POLICY).retry_topics[0]
    mesh = identities({"publisher": [topic],
                       "consumer": [QUARANTINE_TOPIC, *RetryTopics(topic, POLICY).all_topics()]})
    ran: list[str] = []
    service = Service("consumer")

    @service.on_event(topic, "thing.happened")
    async def happened(payload: Payload, event: Envelope) -> None:
        ran.append(str(payload["name"]))

    settings = BusSettings(bootstrap_servers=bootstrap, service_name="consumer",
                           freshness_window_ms=2_000)
    sender = KafkaTransport(settings.model_copy(update={"service_name": "publisher"}))

    def event(name: str, time_ms: int) -> Envelope:
        return mesh["publisher"].outgoing(Envelope(
            id=new_id(), source="publisher", type="thing.happened", kind=KIND_EVENT,
            value=codec.encode({"name": name}), time_ms=time_ms), topic)

    async def send(envelope: Envelope, to: str = topic) -> None:
        await sender.send(to, envelope.value, headers=to_headers(envelope))

    def life() -> tuple[EventSubscriber, KafkaTransport]:
        transport = KafkaTransport(settings)
        return EventSubscriber(service, topic, transport, settings, mesh["consumer"],
                               policy=POLICY, store=store), transport

    a = event("a", now_ms())
    async with fresh_topics(bootstrap, [topic, *RetryTopics(topic, POLICY).all_topics()]):
        try:
            first, transport = life()
            async with running(first.run):
                await send(a)
                await send(event("old", now_ms() - DAY_MS))  # a day in the backlog
                await until(lambda: sorted(ran) == ["a", "old"])
            await transport.close()
            assert first.quarantined == 0

            second, transport = life()  # restarted: nothing in its memory
            async with running(second.run):
                await send(a)  # the handled event, written again: another offset
                await send(a, retry_topic)  # ... and onto its retry topic
                await send(event("b", now_ms()))  # the control
                await until(lambda: "b" in ran and second.quarantined == 2)
            await transport.close()
        finally:
            await sender.close()
    assert sorted(ran) == ["a", "b", "old"]
    assert second.counts.handled == 1


async def test_a_restarted_worker_answers_a_request_copy_from_the_store(
    bootstrap: str, store: DynamoDBIdempotencyStore,
) -> None:
    name = f"itestrq{uuid.uuid4().hex[:8]}"
    topic = f"{name}.requests"
    mesh = identities({"caller": [topic], name: [REPLIES, QUARANTINE_TOPIC]})
    ran: list[int] = []
    service = Service(name)

    @service.operation(f"{name}.apply")
    async def apply(payload: Payload, message: Envelope) -> Payload:
        ran.append(int(payload["n"]))
        return {"n": payload["n"], "applied": len(ran)}

    settings = BusSettings(bootstrap_servers=bootstrap, service_name=name)
    sender = KafkaTransport(settings.model_copy(update={"service_name": "caller"}))
    request = mesh["caller"].outgoing(new_request(
        source="caller", operation=f"{name}.apply", value=codec.encode({"n": 7}),
        reply_to=ReplyTo(REPLIES, 0), deadline_ms=now_ms() + 60_000), topic)

    def life(identity: Identity) -> tuple[ServiceWorker, KafkaTransport]:
        transport = KafkaTransport(settings)
        return ServiceWorker(service, transport, settings, identity, store=store), transport

    replies = sender.assigned_reader(REPLIES, 0)
    async with fresh_topics(bootstrap, [topic]):
        await replies.start()
        try:
            first, transport = life(mesh[name])
            async with running(first.run):
                await sender.send(topic, request.value, headers=to_headers(request))
                await until(lambda: first.handled == 1)
            await transport.close()

            second, transport = life(mesh[name])  # restarted: its replay guard is empty
            async with running(second.run):
                await sender.send(topic, request.value, headers=to_headers(request))
                answers = await replies_to(replies, request.correlation_id or "", 2)
                await until(lambda: second.duplicates == 1)
            await transport.close()
        finally:
            await replies.stop()
            await sender.close()
    assert ran == [7]
    assert second.handled == 0
    assert second.quarantined == 0
    # both answers carry the one stored result
    assert [codec.decode(value) for value in answers] == [{"n": 7, "applied": 1}] * 2


async def replies_to(reader: Any, correlation_id: str, count: int) -> list[bytes]:
    found: list[bytes] = []
    async with asyncio.timeout(30):
        while len(found) < count:
            for record in await reader.read(0.5):
                headers = dict(record.headers)
                if headers.get(H_CORRELATION) == correlation_id.encode():
                    found.append(record.value or b"")
    return found
