"""Helpers of the edge's e2e tests: credentials from the local stack's dev issuer and key
table, and how many requests reached the bus (end offsets of the request topics)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from infra import dev_issuer, keys_cli
from infra.settings import Settings

REQUEST_TOPICS = ("orders.requests", "inventory.requests")


async def _partitions(bootstrap: str) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await asyncio.wait_for(admin.start(), 10)
    try:
        described = await asyncio.wait_for(admin.describe_topics(list(REQUEST_TOPICS)), 10)
    finally:
        await admin.close()
    partitions = [TopicPartition(topic["topic"], p["partition"])
                  for topic in described for p in topic["partitions"]]
    assert len({tp.topic for tp in partitions}) == len(REQUEST_TOPICS), described
    return partitions


async def _end_offsets(bootstrap: str) -> dict[TopicPartition, int]:
    partitions = await _partitions(bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await asyncio.wait_for(consumer.start(), 10)
    try:
        offsets: dict[TopicPartition, int] = await asyncio.wait_for(
            consumer.end_offsets(partitions), 10)
        return offsets
    finally:
        await consumer.stop()


async def _values_since(bootstrap: str, since: dict[TopicPartition, int]) -> list[bytes]:
    """The values of every record written to the request topics after ``since``."""
    until = await _end_offsets(bootstrap)
    wanted = {tp: until[tp] for tp in since if until[tp] > since[tp]}
    if not wanted:
        return []
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await asyncio.wait_for(consumer.start(), 10)
    values: list[bytes] = []
    try:
        consumer.assign(list(wanted))
        for tp in wanted:
            consumer.seek(tp, since[tp])
        async with asyncio.timeout(20):
            while wanted:
                batches = await consumer.getmany(timeout_ms=500)
                for tp, records in batches.items():
                    values.extend(r.value or b"" for r in records)
                    if records and records[-1].offset + 1 >= wanted.get(tp, 0):
                        wanted.pop(tp, None)
    finally:
        await consumer.stop()
    return values


@contextmanager
def nothing_reaches_the_bus(settings: Settings, marker: str) -> Iterator[None]:
    """Asserts that no request carrying ``marker`` (a value unique to the test) was written
    to the request topics while the block ran; other traffic on the bus does not matter."""
    before = asyncio.run(_end_offsets(settings.kafka_bootstrap))
    yield
    time.sleep(0.2)  # a send the gateway made would be acknowledged before it answered
    reached = [v for v in asyncio.run(_values_since(settings.kafka_bootstrap, before))
               if marker.encode() in v]
    assert reached == [], "a refused request reached the bus"


def requests_on_the_bus(settings: Settings) -> int:
    """How many records the request topics hold (their end offsets, summed)."""
    return sum(asyncio.run(_end_offsets(settings.kafka_bootstrap)).values())


def token(settings: Settings, **claims: Any) -> str:
    return dev_issuer.mint(settings, {"sub": "e2e-user", "scope": "catalog:read reports:write",
                                      **claims})


def issue_key(settings: Settings, *, rate: float = 50, burst: int = 100,
              quota: int | None = None) -> tuple[str, str]:
    """A fresh API key (plaintext, key id) in the deployed key table."""
    lines: list[str] = []
    record = keys_cli.issue_command(settings, lines.append, owner="e2e", rate=rate, burst=burst,
                                    quota=quota)
    return lines[-1], record.key_id
