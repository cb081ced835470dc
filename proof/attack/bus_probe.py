"""What reached the bus: the end offsets of the request topics, and every value written to
them since. Shared by the attack suite and the edge's e2e tests (``tests/e2e/edge_support``)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from infra.kafka.connect import door_kwargs

REQUEST_TOPICS = ("orders.requests", "inventory.requests")
Offsets = dict[TopicPartition, int]


async def _partitions(bootstrap: str, topics: Sequence[str]) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(**door_kwargs(bootstrap))
    await asyncio.wait_for(admin.start(), 10)
    try:
        described = await asyncio.wait_for(admin.describe_topics(list(topics)), 10)
    finally:
        await admin.close()
    partitions = [TopicPartition(topic["topic"], p["partition"])
                  for topic in described for p in topic["partitions"]]
    if len({tp.topic for tp in partitions}) != len(set(topics)):
        raise RuntimeError(f"missing topics among {list(topics)}: {described}")
    return partitions


async def end_offsets(bootstrap: str, topics: Sequence[str] = REQUEST_TOPICS) -> Offsets:
    partitions = await _partitions(bootstrap, topics)
    consumer = AIOKafkaConsumer(**door_kwargs(bootstrap), enable_auto_commit=False)
    await asyncio.wait_for(consumer.start(), 10)
    try:
        offsets: Offsets = await asyncio.wait_for(consumer.end_offsets(partitions), 10)
        return offsets
    finally:
        await consumer.stop()


async def values_since(bootstrap: str, since: Offsets, timeout_s: float = 20.0) -> list[bytes]:
    """The values of every record written to ``since``'s partitions after those offsets."""
    until = await end_offsets(bootstrap, sorted({tp.topic for tp in since}))
    wanted = {tp: until[tp] for tp in since if until[tp] > since[tp]}
    if not wanted:
        return []
    consumer = AIOKafkaConsumer(**door_kwargs(bootstrap), enable_auto_commit=False)
    await asyncio.wait_for(consumer.start(), 10)
    values: list[bytes] = []
    try:
        consumer.assign(list(wanted))
        for tp in wanted:
            consumer.seek(tp, since[tp])
        async with asyncio.timeout(timeout_s):
            while wanted:
                batches = await consumer.getmany(timeout_ms=500)
                for tp, records in batches.items():
                    values.extend(r.value or b"" for r in records)
                    if records and records[-1].offset + 1 >= wanted.get(tp, 0):
                        wanted.pop(tp, None)
    finally:
        await consumer.stop()
    return values
