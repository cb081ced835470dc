"""The Kafka side of ``meshgate tail``: every partition of the given topics, assigned (no
consumer group: nothing is committed and no service's group is disturbed), from the end or
from a moment in the past. Every broker call is bounded in time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from bus.config import BusSettings
from bus.errors import BrokerRefused, KafkaConnectRefused, MeshError, TransportError
from bus.transport.connect_check import start_client
from bus.transport.connection import KafkaSecurity, aiokafka_kwargs
from bus.transport.kafka import KafkaTransport
from infra.errors import InfraError, NotReachable
from infra.kafka.connect import operator_security
from infra.settings import Settings

T = TypeVar("T")
CALL_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class TailRecord:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    headers: tuple[tuple[str, bytes | None], ...]
    value: bytes | None


async def _bounded(what: str, bootstrap: str, awaitable: Awaitable[T],
                   timeout_s: float = CALL_TIMEOUT_S) -> T:
    try:
        async with asyncio.timeout(timeout_s):
            return await awaitable
    except TimeoutError:
        raise NotReachable(f"tail: {what}: no answer from the broker {bootstrap} in "
                           f"{timeout_s:g}s", "check it runs ('meshgate status')") from None
    except KafkaError as exc:
        raise NotReachable(f"tail: {what}: {exc!r}",
                           "check the broker runs ('meshgate status')") from exc


async def _partition_counts(bootstrap: str, topics: Sequence[str],
                            security: KafkaSecurity) -> dict[str, int]:
    """Each topic's partition count, by the mesh's own Kafka adapter (bounded calls)."""
    transport = KafkaTransport(BusSettings.resolve(bootstrap_servers=bootstrap,
                                                   service_name="meshgate-tail", insecure=True,
                                                   kafka=security))
    counts: dict[str, int] = {}
    try:
        for topic in topics:
            try:
                counts[topic] = await transport.partition_count(topic)
            except KafkaConnectRefused:
                raise  # one line naming what failed (credentials, TLS)
            except BrokerRefused:
                raise InfraError(f"tail: topic {topic} does not exist",
                                 "create it with 'meshgate up' or 'meshgate policy apply'"
                                 ) from None
            except TransportError as exc:
                raise NotReachable(f"tail: {exc}", "check the broker runs ('meshgate status')"
                                   ) from None
    finally:
        await transport.close()
    return counts


class TailReader:
    """``start`` assigns and positions every partition; ``read`` returns what arrived."""

    def __init__(self, bootstrap: str, topics: Sequence[str], *,
                 since_ms: int | None = None, settings: Settings | None = None) -> None:
        self.bootstrap = bootstrap
        self.topics = tuple(topics)
        self.since_ms = since_ms
        self.partitions: list[TopicPartition] = []
        self._settings = settings  # whose MESHGATE_KAFKA_* connection (default: the env's)
        self._consumer: AIOKafkaConsumer | None = None
        self._started = False

    async def _connect(self) -> KafkaSecurity:
        security = await operator_security(self._settings)
        self._consumer = AIOKafkaConsumer(**aiokafka_kwargs(self.bootstrap, security),
                                          group_id=None, enable_auto_commit=False,
                                          client_id="meshgate-tail",
                                          request_timeout_ms=int(CALL_TIMEOUT_S * 1000))
        try:
            await start_client("tail: connect", self._consumer.start, self.bootstrap, security,
                               CALL_TIMEOUT_S)
        except KafkaConnectRefused:
            raise
        except MeshError as exc:
            raise NotReachable(f"tail: {exc}", "check the broker runs ('meshgate status')"
                               ) from None
        finally:
            self._started = True  # stop() closes even a half-started consumer
        return security

    def _running(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise InfraError("tail: the reader is not started", "call start() first")
        return self._consumer

    async def start(self) -> None:
        try:
            security = await self._connect()
            counts = await _partition_counts(self.bootstrap, self.topics, security)
            self.partitions = [TopicPartition(topic, p) for topic in self.topics
                               for p in range(counts[topic])]
            self._running().assign(self.partitions)
            await self._position()
        except BaseException:
            await self.stop()
            raise

    async def _position(self) -> None:
        consumer, bootstrap = self._running(), self.bootstrap
        if self.since_ms is None:
            await _bounded("seek to end", bootstrap, consumer.seek_to_end(*self.partitions))
        else:
            found = await _bounded("find offsets by time", bootstrap, consumer.offsets_for_times(
                dict.fromkeys(self.partitions, self.since_ms)))
            late = [tp for tp, at in found.items() if at is None]
            for tp, at in found.items():
                if at is not None:
                    consumer.seek(tp, at.offset)
            if late:  # nothing that recent on these partitions: start at their end
                await _bounded("seek to end", bootstrap, consumer.seek_to_end(*late))
        # Resolve every position now, so nothing produced after start() is skipped.
        for tp in self.partitions:
            await _bounded("resolve position", bootstrap, consumer.position(tp))

    async def read(self, timeout_s: float, max_records: int = 500) -> list[TailRecord]:
        batches = await _bounded(
            "fetch", self.bootstrap,
            self._running().getmany(timeout_ms=int(timeout_s * 1000), max_records=max_records),
            timeout_s + CALL_TIMEOUT_S)
        records = [TailRecord(m.topic, m.partition, m.offset, m.timestamp,
                              tuple(m.headers or ()), m.value)
                   for messages in batches.values() for m in messages]
        records.sort(key=lambda r: (r.timestamp_ms, r.topic, r.partition, r.offset))
        return records

    async def stop(self) -> None:
        if self._started and self._consumer is not None:
            self._started = False
            try:
                async with asyncio.timeout(CALL_TIMEOUT_S):
                    await self._consumer.stop()
            except TimeoutError:
                pass  # leaving anyway; the broker drops the connection
