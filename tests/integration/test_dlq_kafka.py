"""bus.dlq on the real broker: dead letters written with KafkaTransport, listed, replayed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bus.config import BusSettings
from bus.dlq import NotReplayable, list_dead_letters, replay
from bus.envelope import Envelope, ReplyTo, from_record, new_request, now_ms
from bus.kafka import KafkaTransport
from bus.retry_topics import (
    H_REPLAY_OF,
    REASON_EXHAUSTED,
    REASON_NOT_RETRIABLE,
    Failure,
    RetryTopicPolicy,
    RetryTopics,
    hop_headers,
)
from bus.transport import Record

pytestmark = pytest.mark.integration

PARTITIONS = 2
IDLE_S = 3.0


@pytest.fixture
async def topics(bootstrap: str) -> AsyncIterator[RetryTopics]:
    """A fresh main topic with one retry stage and its DLT, deleted afterwards."""
    topics = RetryTopics(f"itestdlq{uuid.uuid4().hex[:10]}.requests", RetryTopicPolicy((500,)))
    names = [topics.main_topic, *topics.all_topics()]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await asyncio.wait_for(admin.start(), 15)
    try:
        await asyncio.wait_for(
            admin.create_topics([NewTopic(name, PARTITIONS, 1) for name in names]), 15
        )
        yield topics
        await asyncio.wait_for(admin.delete_topics(names), 15)
    finally:
        await admin.close()


@pytest.fixture
async def transport(bus_settings: BusSettings) -> AsyncIterator[KafkaTransport]:
    transport = KafkaTransport(bus_settings.model_copy(update={"service_name": "itest-dlq"}))
    try:
        yield transport
    finally:
        await transport.close()


async def kill(
    transport: KafkaTransport, topics: RetryTopics, envelope: Envelope, *, partition: int,
    retriable: bool, key: bytes,
) -> None:
    """Send ``envelope`` to the DLT as a worker does after its last failed attempt."""
    hop = topics.next_hop(topics.retry_topics[0], 2, retriable, now_ms=now_ms())
    headers = hop_headers(
        replace(envelope, attempt=2), hop, original_topic=topics.main_topic,
        failure=Failure("out_of_stock", f"none left for {envelope.id}", retriable),
        failed_at_ms=now_ms(),
    )
    await transport.send(
        topics.dlt_topic, envelope.value, headers=headers, key=key, partition=partition
    )


async def read_all(transport: KafkaTransport, topic: str, count: int) -> list[Record]:
    """Every record of ``topic`` until ``count`` arrived (20 s at most)."""
    readers = [transport.assigned_reader(topic, p, from_beginning=True) for p in range(PARTITIONS)]
    found: list[Record] = []
    try:
        for reader in readers:
            await reader.start()
        async with asyncio.timeout(20):
            while len(found) < count:
                for reader in readers:
                    found.extend(await reader.read(0.2))
    finally:
        for reader in readers:
            await reader.stop()
    return found


def request(n: int) -> Envelope:
    return new_request(
        source="itest-caller", operation="orders.create", value=f'{{"n":{n}}}'.encode(),
        reply_to=ReplyTo("mesh.replies", 0), deadline_ms=now_ms() + 10_000,
    )


async def test_list_and_replay_dead_letters(
    transport: KafkaTransport, topics: RetryTopics
) -> None:
    envelopes = [request(n) for n in range(3)]
    await kill(transport, topics, envelopes[0], partition=1, retriable=True, key=b"k0")
    await kill(transport, topics, envelopes[1], partition=0, retriable=False, key=b"k1")
    await kill(transport, topics, envelopes[2], partition=1, retriable=True, key=b"k2")
    await transport.send(topics.dlt_topic, b"junk", headers=[("ce_id", b"x")], partition=0)

    letters = await list_dead_letters(transport, topics.dlt_topic, 10, idle_timeout_s=IDLE_S)

    assert [(d.partition, d.offset) for d in letters] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert [d.id for d in letters] == [envelopes[1].id, None, envelopes[0].id, envelopes[2].id]
    assert [d.reason for d in letters] == [
        REASON_NOT_RETRIABLE, None, REASON_EXHAUSTED, REASON_EXHAUSTED,
    ]
    assert {d.original_topic for d in letters if d.envelope} == {topics.main_topic}
    assert letters[2].error_code == "out_of_stock"
    assert letters[2].error_message == f"none left for {envelopes[0].id}"
    assert letters[2].key == b"k0"
    assert letters[1].parse_error is not None
    assert await list_dead_letters(transport, topics.dlt_topic, 1, idle_timeout_s=IDLE_S) == [
        letters[0]
    ]

    with pytest.raises(NotReplayable):
        await replay(transport, letters[1], now_ms=now_ms)

    signed_for: list[str] = []

    def sign(envelope: Envelope, topic: str) -> Envelope:
        signed_for.append(topic)
        return envelope.with_signature(f"test:{envelope.id}")

    new_id = await replay(transport, letters[2], sign=sign, now_ms=now_ms)

    [record] = await read_all(transport, topics.main_topic, 1)
    sent = from_record(record.headers, record.value)
    original = envelopes[0]
    assert signed_for == [topics.main_topic]
    assert record.key == b"k0"
    assert (sent.id, sent.signature, sent.attempt) == (new_id, f"test:{new_id}", 1)
    assert new_id != original.id
    assert (sent.type, sent.source, sent.value, sent.reply_to) == (
        original.type, original.source, original.value, original.reply_to,
    )
    assert sent.extra == ((H_REPLAY_OF, original.id.encode()),)
    assert sent.time_ms >= original.time_ms
