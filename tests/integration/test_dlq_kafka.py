"""bus.delivery.dlq on the real broker: dead letters listed, refused replays publish nothing, and an
operator's replay (the original record plus a countersignature) runs in a real subscriber
exactly once, while raw copies of the dead letter and of the replay never run."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bus.config import BusSettings
from bus.delivery.dlq import NotReplayable, Replayer, list_dead_letters, send_replay
from bus.delivery.idempotency import MemoryIdempotencyStore
from bus.delivery.retry_topics import (
    FAILURE_HEADERS,
    REASON_NOT_RETRIABLE,
    DeadLetterHop,
    Failure,
    RetryTopicPolicy,
    RetryTopics,
    hop_headers,
)
from bus.envelope import KIND_EVENT, Envelope, from_record, new_id, now_ms, to_headers
from bus.errors import HandlerError
from bus.runtime.subscriber import EventSubscriber
from bus.security.identity import Identity
from bus.security.quarantine import H_ORIGINAL_TOPIC, H_REASON, QUARANTINE_TOPIC
from bus.security.replay_countersign import parse_stamp
from bus.security.signing import sign
from bus.service import Payload, Service
from bus.transport.kafka import KafkaTransport
from proof.attack.bus_probe import end_offsets
from tests.support import identities

pytestmark = pytest.mark.integration

PARTITIONS = 2
IDLE_S = 3.0
NO_RETRIES = RetryTopicPolicy(())


@pytest.fixture
async def topics(bootstrap: str) -> AsyncIterator[RetryTopics]:
    """A fresh event topic and its DLT (no retry stages), deleted afterwards."""
    topics = RetryTopics(f"itestdlq{uuid.uuid4().hex[:10]}.events", NO_RETRIES)
    names = [topics.main_topic, *topics.all_topics()]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await asyncio.wait_for(admin.start(), 15)
    try:
        await asyncio.wait_for(
            admin.create_topics([NewTopic(name, PARTITIONS, 1) for name in names]), 15)
        yield topics
        await asyncio.wait_for(admin.delete_topics(names), 15)
    finally:
        await admin.close()


@pytest.fixture
def mesh(topics: RetryTopics) -> dict[str, Identity]:
    return identities({"publisher": [topics.main_topic], "consumer": []},
                      replay={"operator": [topics.main_topic]})


@pytest.fixture
async def transport(bus_settings: BusSettings) -> AsyncIterator[KafkaTransport]:
    transport = KafkaTransport(bus_settings.model_copy(update={"service_name": "itest-dlq"}))
    try:
        yield transport
    finally:
        await transport.close()


def replayer(mesh: dict[str, Identity], name: str = "operator") -> Replayer:
    operator = mesh[name]
    assert operator.keyring is not None
    assert operator.signing_key is not None
    return Replayer(operator.keyring, operator.access, name, operator.signing_key)


def event(mesh: dict[str, Identity], topic: str, name: str, **fields: Any) -> Envelope:
    envelope = Envelope(id=new_id(), source="publisher", type="thing.happened",
                        kind=KIND_EVENT, value=f'{{"name":"{name}"}}'.encode(), time_ms=now_ms())
    key = mesh["publisher"].signing_key
    assert key is not None
    return replace(sign(envelope, topic, key), **fields)


async def kill(transport: KafkaTransport, topics: RetryTopics, envelope: Envelope, *,
               partition: int, key: bytes, original_topic: str | None = None) -> None:
    """Put ``envelope`` on the DLT as a subscriber does when its handler gives up."""
    headers = hop_headers(envelope, DeadLetterHop(topics.dlt_topic, 1, REASON_NOT_RETRIABLE),
                          original_topic=original_topic or topics.main_topic,
                          failure=Failure("out_of_stock", f"none left for {envelope.id}", False),
                          failed_at_ms=now_ms())
    await transport.send(topics.dlt_topic, envelope.value, headers=headers, key=key,
                         partition=partition)


async def read_since(bootstrap: str, since: dict[TopicPartition, int], count: int,
                     keep: Callable[[dict[str, bytes]], bool] = lambda _: True,
                     ) -> list[tuple[dict[str, bytes], bytes]]:
    """``count`` records (headers, value) written after ``since`` that ``keep`` accepts."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await asyncio.wait_for(consumer.start(), 15)
    found: list[tuple[dict[str, bytes], bytes]] = []
    try:
        consumer.assign(list(since))
        for tp, offset in since.items():
            consumer.seek(tp, offset)
        async with asyncio.timeout(30):
            while len(found) < count:
                for records in (await consumer.getmany(timeout_ms=300)).values():
                    for r in records:
                        headers = {name: raw for name, raw in r.headers or ()}
                        if keep(headers):
                            found.append((headers, r.value or b""))
    finally:
        await consumer.stop()
    return found


async def test_list_dead_letters_and_replay_the_original_countersigned(
    transport: KafkaTransport, topics: RetryTopics, mesh: dict[str, Identity], bootstrap: str,
) -> None:
    main = topics.main_topic
    events = [event(mesh, main, f"e{n}") for n in range(3)]
    await kill(transport, topics, events[0], partition=1, key=b"k0")
    await kill(transport, topics, events[1], partition=0, key=b"k1")
    await kill(transport, topics, events[2], partition=1, key=b"k2")
    await transport.send(topics.dlt_topic, b"junk", headers=[("ce_id", b"x")], partition=0)

    letters = await list_dead_letters(transport, topics.dlt_topic, 10, idle_timeout_s=IDLE_S)

    assert [(d.partition, d.offset) for d in letters] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert [d.id for d in letters] == [events[1].id, None, events[0].id, events[2].id]
    assert {d.original_topic for d in letters if d.envelope} == {main}
    assert (letters[2].error_code, letters[2].key) == ("out_of_stock", b"k0")
    assert letters[1].parse_error is not None

    before = await end_offsets(bootstrap, [main])
    with pytest.raises(NotReplayable) as refused:
        replayer(mesh).plan(letters[1], now_ms=now_ms())
    assert refused.value.reason == "bad_envelope"

    plan = replayer(mesh).plan(letters[2], now_ms=now_ms())
    assert await send_replay(transport, plan) == plan.replay_id

    [(headers, value)] = await read_since(bootstrap, before, 1)
    sent = from_record(list(headers.items()), value)
    original = events[0]
    assert replace(sent, extra=()) == replace(original, extra=())  # signature included
    assert not set(headers) & FAILURE_HEADERS
    stamp = parse_stamp(sent.extra)
    assert stamp is not None
    assert stamp.replay_id == plan.replay_id


class Ledger:
    def __init__(self) -> None:
        self.runs: list[str] = []
        self.fixed = False


def consumer_service(topic: str, ledger: Ledger) -> Service:
    service = Service("consumer")

    @service.on_event(topic, "thing.happened")
    async def on_thing(payload: Payload, event: Envelope) -> None:
        ledger.runs.append(str(payload["name"]))
        if not ledger.fixed:
            raise HandlerError("invalid_thing", "cannot handle it yet")

    return service


async def wait_until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - polls counters the subscriber owns
            await asyncio.sleep(0.05)


async def test_a_replay_runs_once_and_copies_or_forgeries_never_run(
    transport: KafkaTransport, topics: RetryTopics, mesh: dict[str, Identity],
    bus_settings: BusSettings, bootstrap: str,
) -> None:
    main = topics.main_topic
    ledger = Ledger()
    settings = bus_settings.model_copy(update={"service_name": "consumer"})
    consumer_transport = KafkaTransport(settings)
    subscriber = EventSubscriber(consumer_service(main, ledger), main, consumer_transport,
                                 settings, mesh["consumer"], policy=NO_RETRIES,
                                 store=MemoryIdempotencyStore())
    publisher = mesh["publisher"]
    quarantine_since = await end_offsets(bootstrap, [QUARANTINE_TOPIC])
    stop = asyncio.Event()
    task = asyncio.create_task(subscriber.run(stop))
    try:
        genuine = event(mesh, main, "genuine")
        await transport.send(main, genuine.value, headers=to_headers(genuine), key=b"g")
        await wait_until(lambda: subscriber.counts.dead_lettered == 1)
        [dead] = await list_dead_letters(transport, topics.dlt_topic, 10)

        # An attacker writes the dead letter back raw (no countersignature): never run.
        raw = [(n, v) for n, v in dead.headers if n not in FAILURE_HEADERS]
        await transport.send(main, dead.value or b"", headers=raw, key=b"g")
        # A forged dead letter claiming the publisher: the tool refuses, nothing is sent.
        forged = replace(genuine, id=new_id(), value=b'{"name":"forged"}')
        await kill(transport, topics, forged, partition=0, key=b"f")
        letters = await list_dead_letters(transport, topics.dlt_topic, 10)
        before = await end_offsets(bootstrap, [main])
        with pytest.raises(NotReplayable) as refused:
            replayer(mesh).plan_first([d for d in letters if d.id == forged.id],
                                      now_ms=now_ms())
        assert refused.value.reason == "bad_signature"
        # The publisher's own key cannot stand in for the operator's.
        assert publisher.keyring is not None
        assert publisher.signing_key is not None
        as_publisher = Replayer(publisher.keyring, publisher.access, "operator",
                                publisher.signing_key)
        with pytest.raises(NotReplayable) as refused:
            as_publisher.plan(dead, now_ms=now_ms())
        assert refused.value.reason == "operator_key_unknown"
        assert await end_offsets(bootstrap, [main]) == before

        # The fix is deployed; the operator replays the dead letter: it runs once more.
        ledger.fixed = True
        plan = replayer(mesh).plan(dead, now_ms=now_ms())
        await send_replay(transport, plan)
        await wait_until(lambda: ledger.runs.count("genuine") == 2)
        # The replay written again by anyone: never run a third time.
        await transport.send(main, plan.value, headers=plan.headers, key=b"g")
        reasons = await quarantined(bootstrap, quarantine_since, main, 2)
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await consumer_transport.close()
    assert ledger.runs == ["genuine", "genuine"]
    assert reasons == ["replayed_message", "replayed_message"]
    assert subscriber.counts.handled == 1


async def quarantined(bootstrap: str, since: dict[TopicPartition, int], topic: str,
                      count: int) -> list[str]:
    """The reasons of the first ``count`` records of ``topic`` parked since ``since``."""
    found = await read_since(bootstrap, since, count,
                             keep=lambda h: h.get(H_ORIGINAL_TOPIC) == topic.encode())
    return [headers[H_REASON].decode() for headers, _ in found]
