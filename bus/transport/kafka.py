"""aiokafka adapter: the only module of ``bus`` that talks to a real broker."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import (
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    KafkaError,
    OutOfOrderSequenceNumber,
    UnknownProducerId,
)

from bus.config import BusSettings
from bus.errors import BrokerRefused, MeshError, TransportError
from bus.security.keys import SecretSource
from bus.transport import Record, positions_after
from bus.transport.connect_check import start_client
from bus.transport.connection import KafkaSecurity, aiokafka_kwargs, resolve_kafka_secrets
from bus.transport.key_partitioner import KeyPartitioner
from bus.transport.partitions import TopicPartitions

log = logging.getLogger(__name__)
T = TypeVar("T")
# Errors after which an idempotent producer stays broken until it is replaced.
_BROKEN_PRODUCER = (OutOfOrderSequenceNumber, UnknownProducerId, InvalidProducerEpoch,
                    InvalidProducerIdMapping)
START_TIMEOUT_S = 15.0


async def _guard(what: str, awaitable: Awaitable[T], timeout_s: float = START_TIMEOUT_S) -> T:
    """Bound a broker call in time and translate aiokafka errors into the bus hierarchy.

    ``asyncio.timeout`` schedules one timer; ``wait_for`` would wrap each send in a task.
    """
    try:
        async with asyncio.timeout(timeout_s):
            return await awaitable
    except TimeoutError as exc:
        raise TransportError(f"{what}: no answer from the broker in {timeout_s:g}s") from exc
    except KafkaError as exc:
        error = TransportError if getattr(exc, "retriable", False) else BrokerRefused
        raise error(f"{what}: {exc!r}") from exc


def _record(message: Any) -> Record:
    return Record(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        value=message.value,
        key=message.key,
        headers=tuple(message.headers or ()),
    )


Require = Callable[[str], Awaitable[frozenset[int]]]
Build = Callable[[], Awaitable[tuple[AIOKafkaConsumer, str, KafkaSecurity]]]


class _KafkaReader:
    def __init__(
        self,
        build: Build,
        topics: Sequence[str],
        assign: TopicPartition | None,
        from_beginning: bool,
        require: Require,
    ) -> None:
        self._build = build
        self._consumer: AIOKafkaConsumer | None = None
        self._topics = tuple(topics)
        self._assign = assign
        self._from_beginning = from_beginning
        self._require = require
        self._started = False

    async def start(self) -> None:
        # Refuse a missing topic or partition at once (the consumer would wait forever).
        for topic in self._topics:
            partitions = await self._require(topic)
            if self._assign is not None and self._assign.partition not in partitions:
                raise BrokerRefused(f"{topic} has no partition {self._assign.partition}")
        consumer, bootstrap, security = await self._build()
        try:
            await start_client("start consumer", consumer.start, bootstrap, security)
        except BaseException:
            await consumer.stop()  # a half-started consumer still holds connections
            raise
        self._consumer = consumer
        self._started = True
        if self._assign is not None:
            consumer.assign([self._assign])
            if self._from_beginning:
                await _guard("seek to start", consumer.seek_to_beginning(self._assign))
            else:
                await _guard("seek to end", consumer.seek_to_end(self._assign))
            # Resolve the position now, so nothing sent after start() can be skipped.
            await _guard("resolve position", consumer.position(self._assign))

    def _running(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise TransportError("the reader was never started")
        return self._consumer

    async def stop(self) -> None:
        if self._started and self._consumer is not None:
            self._started = False
            await _guard("stop consumer", self._consumer.stop())

    async def read(self, timeout_s: float, max_records: int = 100) -> list[Record]:
        batches = await _guard(
            "fetch",
            self._running().getmany(timeout_ms=int(timeout_s * 1000), max_records=max_records),
            timeout_s + START_TIMEOUT_S,
        )
        return [_record(m) for messages in batches.values() for m in messages]

    async def commit(self, records: Sequence[Record]) -> None:
        await self.commit_offsets(positions_after(records))

    def end_offsets(self) -> dict[tuple[str, int], int]:
        """Last stable offset of each assigned partition as of the last fetch (no I/O)."""
        if not self._started or self._consumer is None:
            return {}
        ends: dict[tuple[str, int], int] = {}
        for tp in self._consumer.assignment():
            end = self._consumer.last_stable_offset(tp)
            if end is not None:
                ends[(tp.topic, tp.partition)] = end
        return ends

    async def commit_offsets(self, positions: Mapping[tuple[str, int], int]) -> None:
        if self._assign is not None or not positions:
            return
        offsets = {TopicPartition(t, p): position for (t, p), position in positions.items()}
        await _guard("commit", self._running().commit(offsets))


class KafkaTransport:
    """Transport over a real Kafka broker; the producer starts on first use.

    Every client connects with ``settings.kafka`` (``bus.transport.connection``); its
    secrets are read from ``secrets`` once, before the first client starts. A start that
    fails says why in one line (``bus.transport.connect_check``).
    """

    def __init__(self, settings: BusSettings, *, secrets: SecretSource | None = None) -> None:
        self._settings = settings
        self._secrets = secrets
        self._security: KafkaSecurity | None = None
        self._security_lock = asyncio.Lock()
        self._producer: AIOKafkaProducer | None = None
        self._producer_lock = asyncio.Lock()
        self._topics = TopicPartitions(self._look_up)

    async def _connection(self) -> tuple[dict[str, Any], KafkaSecurity]:
        """The clients' connection arguments, the secrets read on the first call."""
        if self._security is None:
            async with self._security_lock:
                if self._security is None:
                    self._security = await resolve_kafka_secrets(self._settings.kafka,
                                                                 self._secrets)
        bootstrap = self._settings.bootstrap_servers
        return aiokafka_kwargs(bootstrap, self._security), self._security

    async def _ready_producer(self) -> AIOKafkaProducer:
        if self._producer is not None:  # the hot path: no lock once started
            return self._producer
        async with self._producer_lock:
            if self._producer is None:
                connection, security = await self._connection()
                producer = AIOKafkaProducer(
                    **connection,
                    client_id=f"{self._settings.service_name}-producer",
                    linger_ms=self._settings.linger_ms,
                    # Mesh headers are ~350 bytes a record: the default 16 KiB batch fills
                    # after a few dozen and halves throughput.
                    max_batch_size=self._settings.max_batch_bytes,
                    request_timeout_ms=int(START_TIMEOUT_S * 1000),
                    acks="all",
                    enable_idempotence=True,
                    max_request_size=self._settings.max_message_bytes + 64 * 1024,
                    partitioner=KeyPartitioner(),  # aiokafka's choice, hashed faster
                )
                try:
                    await start_client("start producer", producer.start,
                                       self._settings.bootstrap_servers, security)
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def _look_up(self, topic: str) -> frozenset[int]:
        """One look at the broker's metadata (``TopicPartitions`` waits for a new topic)."""
        producer = await self._ready_producer()
        metadata = await _guard("metadata", producer.client.fetch_all_metadata())
        return frozenset(metadata.partitions_for_topic(topic) or ())

    async def send(
        self,
        topic: str,
        value: bytes,
        *,
        headers: Sequence[tuple[str, bytes]],
        key: bytes | None = None,
        partition: int | None = None,
    ) -> None:
        await self._topics.check(topic, partition)
        producer = self._producer or await self._ready_producer()
        # The hot path: no timer of ours, aiokafka bounds a send by request_timeout_ms.
        try:
            await producer.send_and_wait(
                topic, value, key=key, partition=partition, headers=list(headers)
            )
        except _BROKEN_PRODUCER as exc:
            # The broker lost this idempotent producer's sequence state (a restarted broker
            # can): the producer never recovers by itself, so drop it; the next send starts
            # a fresh one (new producer id) and a retry of this send can succeed.
            await self._discard_producer(producer)
            raise TransportError(f"send to {topic}: producer reset after {exc!r}") from exc
        except KafkaError as exc:
            error = TransportError if getattr(exc, "retriable", False) else BrokerRefused
            raise error(f"send to {topic}: {exc!r}") from exc

    async def _discard_producer(self, producer: AIOKafkaProducer) -> None:
        async with self._producer_lock:
            if self._producer is producer:
                self._producer = None
        try:
            await _guard("stop a broken producer", producer.stop(), timeout_s=5.0)
        except MeshError as exc:  # it is being replaced either way; say so, do not hide it
            log.warning("stopping a broken producer failed: %s", exc)

    async def partition_count(self, topic: str) -> int:
        return len(await self._topics.fresh(topic))

    def _consumer(self, *topics: str, group_id: str | None) -> Build:
        """Makes the consumer when its reader starts (the connection's secrets are read by
        then)."""
        async def build() -> tuple[AIOKafkaConsumer, str, KafkaSecurity]:
            connection, security = await self._connection()
            consumer = AIOKafkaConsumer(
                *topics,
                **connection,
                client_id=f"{self._settings.service_name}-consumer",
                group_id=group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest" if group_id else "latest",
                fetch_max_wait_ms=self._settings.fetch_max_wait_ms,
                isolation_level="read_committed",
            )
            return consumer, self._settings.bootstrap_servers, security

        return build

    def assigned_reader(
        self, topic: str, partition: int, *, from_beginning: bool = False
    ) -> _KafkaReader:
        tp = TopicPartition(topic, partition)
        return _KafkaReader(self._consumer(group_id=None), [topic], tp, from_beginning,
                            self._topics.known)

    def group_reader(self, topics: Sequence[str], group_id: str) -> _KafkaReader:
        return _KafkaReader(self._consumer(*topics, group_id=group_id), topics, None, False,
                            self._topics.known)

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await _guard("stop producer", producer.stop())
