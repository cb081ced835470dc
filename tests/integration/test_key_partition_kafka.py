"""Keyed records on the REAL broker: each transport (aiokafka with bus.transport.key_partitioner,
librdkafka with ``murmur2_random``) puts a key on the partition Kafka's Java client would,
``murmur2(key) & 0x7fffffff`` modulo the partition count, so a retried request keyed by its
correlation id lands where its first attempt did, whichever library sent either."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from bus.config import BusSettings
from bus.transport.key_partitioner import murmur2
from bus.transport.select import kafka_transport

pytestmark = pytest.mark.integration
PARTITIONS = 3  # the service_name fixture's request topic
KEYS = 30
BOUND_S = 60.0  # a bound against hanging, not an expectation


async def landed(bootstrap: str, topic: str, expected: int) -> dict[tuple[str, bytes], int]:
    """(sender, key) -> partition of every record on ``topic``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        seen: dict[tuple[str, bytes], int] = {}
        async with asyncio.timeout(BOUND_S):
            while len(seen) < expected:
                batches = await consumer.getmany(timeout_ms=500)
                for part, records in batches.items():
                    for record in records:
                        assert record.key is not None
                        seen[(record.value.decode(), record.key)] = part.partition
        return seen
    finally:
        await consumer.stop()


async def test_both_transports_put_a_key_where_javas_murmur2_does(
        bootstrap: str, service_name: str) -> None:
    topic = f"{service_name}.requests"
    keys = [uuid.uuid4().hex.encode() for _ in range(KEYS)]
    for library in ("aiokafka", "rdkafka"):
        transport = kafka_transport(BusSettings.resolve(
            bootstrap_servers=bootstrap, service_name=f"itest-{library}", transport=library))
        try:
            async with asyncio.timeout(BOUND_S):
                for key in keys:
                    await transport.send(topic, library.encode(), headers=[], key=key)
        finally:
            await transport.close()
    seen = await landed(bootstrap, topic, 2 * KEYS)
    for key in keys:
        expected = (murmur2(key) & 0x7FFFFFFF) % PARTITIONS
        assert seen[("aiokafka", key)] == expected
        assert seen[("rdkafka", key)] == expected
    assert len(set(seen.values())) == PARTITIONS  # the keys spread: the check can tell
