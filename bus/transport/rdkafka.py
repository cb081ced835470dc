"""librdkafka adapter (confluent-kafka): the ``Transport`` seam over librdkafka's C client,
chosen with ``BusSettings.transport = "rdkafka"`` (``MESH_TRANSPORT``; see
``bus.transport.select``). Same guarantees as ``bus.transport.kafka`` (``rdkafka_config``).

librdkafka's calls block, so none that waits runs on the event loop:

- producer: ``produce()`` on the loop (it only queues the record); the delivery reports are
  served on the loop too, by ``poll(0)`` (never waits) every millisecond while records await
  their reports (every 100 ms otherwise): a report handed over from a thread of ours would
  wait for the GIL, up to the interpreter's 5 ms switch interval when the loop is busy. A send
  waits for its report, which librdkafka gives within ``message.timeout.ms`` (15 s).
- consumer: a read first takes what librdkafka already fetched (``consume(n, 0)``, on the
  loop) for up to ``SPIN_S``, then waits in the reader's one owned thread (``poll`` in slices
  of at most ``SLICE_S``, so a commit or a stop waits at most that); every other blocking
  call runs in that thread too, one at a time (confluent-kafka serializes the calls on one
  consumer anyway). Records a slice fetched after its read was cancelled are kept for the
  next read, never dropped. A group member polls between reads that come further apart than
  ``KEEP_S`` (librdkafka hands rebalances to the application's poll).
- commits are asynchronous, one in flight per reader (``on_commit`` ends it and logs a
  failure; the next commit covers it), issued by whoever holds the consumer next. ``stop()``
  commits the last positions synchronously before leaving the group, so a clean stop loses
  no commit.
- an OAUTHBEARER token (``oauth_provider`` msk-iam) is signed in librdkafka's callback, run
  by whichever poll serves it, the loop's included: signing is local once the credentials
  are cached (untested against MSK).

Errors become the bus hierarchy: retriable librdkafka errors ``TransportError``, the rest
``BrokerRefused``; a start that cannot reach or authenticate to the broker says why in one
line (``connect_check.diagnose``).
"""


from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar

from confluent_kafka import KafkaError, KafkaException

from bus.config import BusSettings
from bus.errors import TransportError
from bus.security.keys import SecretSource
from bus.transport.connection import KafkaSecurity, resolve_kafka_secrets
from bus.transport.partitions import TopicPartitions
from bus.transport.rdkafka_config import START_TIMEOUT_S, OAuthCallback
from bus.transport.rdkafka_connection import (
    CLOSE_TIMEOUT_S,
    CONNECTION_ERRORS,
    Connection,
    log,
    mesh_error,
    raised,
)
from bus.transport.rdkafka_producer import RdProducer
from bus.transport.rdkafka_reader import RdReader

T = TypeVar("T")
CHECK_SLICE_S = 1.0


class RdKafkaTransport:
    """Transport over a real Kafka broker through librdkafka; the producer starts on first
    use. Connection security and secrets as ``KafkaTransport`` (``settings.kafka``)."""

    def __init__(self, settings: BusSettings, *, secrets: SecretSource | None = None) -> None:
        self._settings = settings
        self._secrets = secrets
        self._connection: Connection | None = None
        self._lock = asyncio.Lock()
        self._producer: RdProducer | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._topics = TopicPartitions(self._look_up)

    async def connection(self) -> Connection:
        if self._connection is None:
            async with self._lock:
                if self._connection is None:
                    security = await resolve_kafka_secrets(self._settings.kafka, self._secrets)
                    self._connection = Connection(self._settings, security,
                                                   _oauth_callback(security))
        return self._connection

    def _blocking(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rdkafka-meta")
        return self._executor

    async def _run(self, fn: Callable[[], T], timeout_s: float) -> T:
        async with asyncio.timeout(timeout_s):
            return await asyncio.get_running_loop().run_in_executor(self._blocking(), fn)

    async def _ready_producer(self) -> RdProducer:
        if self._producer is not None and not self._producer.broken:
            return self._producer
        connection = await self.connection()
        async with self._lock:
            if self._producer is not None and self._producer.broken:
                await self._discard(self._producer)
            if self._producer is None:
                producer = RdProducer(connection, asyncio.get_running_loop())
                try:
                    await self._check(producer, connection)
                except BaseException:
                    await self._discard(producer)
                    raise
                self._producer = producer
            return self._producer

    async def _check(self, producer: RdProducer, connection: Connection) -> None:
        """librdkafka connects lazily and retries for ever: ask for metadata now, in slices,
        and give up at once when librdkafka reports a failed connection (diagnosed)."""
        give_up = time.monotonic() + START_TIMEOUT_S
        while True:
            failure: KafkaException | None = None
            try:
                await self._run(partial(producer.client.list_topics, None, CHECK_SLICE_S),
                                CHECK_SLICE_S + START_TIMEOUT_S)
                return
            except KafkaException as exc:
                failure = exc
            except TimeoutError:
                failure = None
            error = connection.last_error
            if (error is not None and error.code() in CONNECTION_ERRORS) or (
                    time.monotonic() >= give_up):
                raise await connection.refused("start producer", failure)

    async def _discard(self, producer: RdProducer) -> None:
        if self._producer is producer:
            self._producer = None
        try:
            await producer.close(self._blocking())
        except (KafkaException, TimeoutError) as exc:  # replaced either way; say so
            log.warning("closing a librdkafka producer failed: %r", exc)

    async def _look_up(self, topic: str) -> frozenset[int]:
        """One look at the broker's metadata (``TopicPartitions`` waits for a new topic)."""
        producer = await self._ready_producer()
        try:
            metadata = await self._run(partial(producer.client.list_topics, topic,
                                               START_TIMEOUT_S), START_TIMEOUT_S + 5)
        except KafkaException as exc:
            raise raised("metadata", exc) from None
        except TimeoutError:
            raise TransportError(f"metadata: no answer in {START_TIMEOUT_S:g}s") from None
        found = metadata.topics.get(topic)
        error = getattr(found, "error", None)
        if isinstance(error, KafkaError) and error.code() not in (
                KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC,
                KafkaError.LEADER_NOT_AVAILABLE):
            raise mesh_error(f"metadata of {topic}", error)
        if found is None or error is not None:
            return frozenset()
        return frozenset(found.partitions)

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
        producer = self._producer
        if producer is None or producer.broken:
            producer = await self._ready_producer()
        await producer.send(topic, value, headers, key, partition)

    async def partition_count(self, topic: str) -> int:
        return len(await self._topics.fresh(topic))

    def assigned_reader(self, topic: str, partition: int, *,
                        from_beginning: bool = False) -> RdReader:
        return RdReader(self._topics.known, self.connection, [topic], None,
                        (partition, from_beginning))

    def group_reader(self, topics: Sequence[str], group_id: str) -> RdReader:
        return RdReader(self._topics.known, self.connection, topics, group_id, None)

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        executor, self._executor = self._executor, None
        try:
            if producer is not None and executor is not None:
                try:
                    await producer.close(executor)
                except TimeoutError:
                    raise TransportError(f"stop producer: records still unacknowledged after "
                                         f"{CLOSE_TIMEOUT_S:g}s") from None
        finally:
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)


def _oauth_callback(security: KafkaSecurity) -> OAuthCallback | None:
    """librdkafka's token callback for ``oauth_provider`` msk-iam (botocore, lazily)."""
    if security.oauth_provider != "msk-iam" or security.aws_region is None:
        return None
    from bus.transport.msk_iam import sign_token  # the signer and botocore: only now
    region = security.aws_region

    def token(_config: str | None) -> tuple[str, float]:  # a librdkafka thread
        value, expires_ms = sign_token(region)
        return value, expires_ms / 1000.0

    return token

