"""librdkafka adapter (confluent-kafka): the ``Transport`` seam over librdkafka's C client,
chosen with ``BusSettings.transport = "rdkafka"`` (``MESH_TRANSPORT``; see
``bus.transport.select``). Same guarantees as ``bus.transport.kafka`` (``rdkafka_config``).

librdkafka's calls block, so none runs on the event loop except those that return at once:

- producer: ``produce()`` on the loop (it only queues the record); one owned poll thread
  serves the delivery reports and hands each batch of them to the loop with one
  ``call_soon_threadsafe``. A send waits for its report, which librdkafka gives within
  ``message.timeout.ms`` (15 s), delivered or failed.
- consumer: one owned thread per reader runs the waits (``poll`` in slices of at most
  ``SLICE_S``) and every other blocking call, one at a time (confluent-kafka serializes the
  calls on one consumer anyway). When no call is in flight a read first takes what librdkafka
  already fetched without waiting, on the loop (no thread hop under load). Records a slice
  fetched after its reader was cancelled are kept for the next read, never dropped.
- commits are asynchronous (``commit(asynchronous=True)``, issued by whoever holds the
  consumer next, at most a slice later); failures are logged by ``on_commit`` and the next
  commit covers them. ``stop()`` commits the last positions synchronously before leaving the
  group, so a clean stop loses no commit.

Errors become the bus hierarchy: retriable librdkafka errors ``TransportError``, the rest
``BrokerRefused``; a start that cannot reach or authenticate to the broker says why in one
line (``connect_check.diagnose``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from bus.config import BusSettings
from bus.errors import BrokerRefused, MeshError, TransportError
from bus.security.keys import SecretSource
from bus.transport import Record, positions_after
from bus.transport.connect_check import diagnose
from bus.transport.connection import KafkaSecurity, resolve_kafka_secrets
from bus.transport.rdkafka_config import (
    START_TIMEOUT_S,
    OAuthCallback,
    consumer_config,
    producer_config,
)

log = logging.getLogger(__name__)
librdkafka_log = logging.getLogger(f"{__name__}.librdkafka")  # its own log lines, not stderr
T = TypeVar("T")
SLICE_S = 0.1  # longest a consumer call waits, so a commit or stop waits at most this
KEEP_S = 0.2  # a group member idle longer than this is polled (rebalances need a poll)
KEEP_BATCH = 100
POLL_THREAD_S = 0.1  # the producer's poll thread wakes at least this often
CHECK_SLICE_S = 1.0
METADATA_WAIT_S = 3.0
METADATA_RETRY_S = 0.1
BUFFER_FULL_RETRY_S = 0.005
CLOSE_TIMEOUT_S = 15.0
# Errors a record may carry that are not about the records (an assigned reader has a group
# id only because librdkafka wants one: its coordinator lookups may be refused).
_GROUP_ERRORS = frozenset({KafkaError.GROUP_AUTHORIZATION_FAILED,
                           KafkaError.COORDINATOR_NOT_AVAILABLE,
                           KafkaError.NOT_COORDINATOR})
_SKIPPED = frozenset({KafkaError._PARTITION_EOF})
# librdkafka says so when the connection, not the request, failed.
_CONNECTION_ERRORS = frozenset({KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN,
                                KafkaError._AUTHENTICATION, KafkaError._SSL,
                                KafkaError._TIMED_OUT, KafkaError.SASL_AUTHENTICATION_FAILED})


# Kafka's retriable errors and librdkafka's local ones that pass (a delivery report's error
# does not carry librdkafka's retriable flag, so the codes are named here).
_RETRIABLE = frozenset({
    KafkaError._MSG_TIMED_OUT, KafkaError._TIMED_OUT, KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN, KafkaError._QUEUE_FULL, KafkaError._WAIT_COORD,
    KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.REQUEST_TIMED_OUT, KafkaError.NETWORK_EXCEPTION,
    KafkaError.NOT_ENOUGH_REPLICAS, KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NOT_COORDINATOR, KafkaError.KAFKA_STORAGE_ERROR,
    KafkaError.REBALANCE_IN_PROGRESS,
})


def mesh_error(what: str, error: KafkaError) -> MeshError:
    """A librdkafka error as the bus's: retriable ones TransportError, the rest (and any
    fatal one) BrokerRefused."""
    retriable = error.retriable() or error.code() in _RETRIABLE
    kind = TransportError if retriable and not error.fatal() else BrokerRefused
    return kind(f"{what}: {error.name()}: {error.str()}")


def _error_of(exc: KafkaException) -> KafkaError | None:
    first = exc.args[0] if exc.args else None
    return first if isinstance(first, KafkaError) else None


def _raised(what: str, exc: KafkaException) -> MeshError:
    error = _error_of(exc)
    return mesh_error(what, error) if error is not None else TransportError(f"{what}: {exc}")


def _header(value: str | bytes | None) -> bytes:
    if value is None:
        return b""
    return value.encode() if isinstance(value, str) else value


def _record(message: Message) -> Record:
    headers = message.headers() or []  # a received record's are a list of pairs
    pairs = headers.items() if isinstance(headers, dict) else headers
    return Record(
        topic=message.topic() or "",
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        value=message.value(),
        key=message.key(),
        headers=tuple((name, _header(value)) for name, value in pairs),
    )


class _Connection:
    """The resolved security and the errors librdkafka reported (for one-line failures)."""

    def __init__(self, settings: BusSettings, security: KafkaSecurity,
                 oauth_cb: OAuthCallback | None) -> None:
        self.settings = settings
        self.security = security
        self.oauth_cb = oauth_cb
        self.last_error: KafkaError | None = None

    def on_error(self, error: KafkaError) -> None:  # librdkafka's threads
        self.last_error = error
        log.debug("librdkafka: %s", error)

    async def refused(self, what: str, exc: BaseException | None) -> MeshError:
        """Why ``what`` failed to reach the broker: the diagnosed one-line error, else the
        last error librdkafka reported, else ``exc``."""
        found = await diagnose(self.settings.bootstrap_servers, self.security)
        if found is not None:
            return found
        if self.last_error is not None:
            return mesh_error(what, self.last_error)
        if isinstance(exc, KafkaException):
            return _raised(what, exc)
        return TransportError(f"{what}: no answer from the broker in {START_TIMEOUT_S:g}s")


class _Producer:
    """A librdkafka producer with its poll thread; delivery reports resolve futures."""

    def __init__(self, connection: _Connection, loop: asyncio.AbstractEventLoop) -> None:
        config = producer_config(connection.settings, connection.security, connection.oauth_cb)
        config["error_cb"] = connection.on_error
        config["logger"] = librdkafka_log
        self.client = Producer(config)
        self.broken = False
        self._loop = loop
        self._reports: deque[tuple[asyncio.Future[None], KafkaError | None]] = deque()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True,
                                        name=f"rdkafka-poll-{connection.settings.service_name}")
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                self.client.poll(POLL_THREAD_S)
            except KafkaException as exc:  # a fatal error: the sends see it in their reports
                log.warning("librdkafka producer poll: %s", exc)
            if self._reports:
                try:
                    self._loop.call_soon_threadsafe(self._settle)
                except RuntimeError:  # the loop is closed: nobody waits any more
                    return

    def delivered(self, future: asyncio.Future[None], error: KafkaError | None,
                  _message: Message) -> None:  # in the poll thread
        self._reports.append((future, error))

    def _settle(self) -> None:  # on the loop
        while self._reports:
            future, error = self._reports.popleft()
            if future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                if error.fatal():
                    self.broken = True  # an idempotent producer that lost its state
                future.set_exception(mesh_error("send", error))

    async def send(self, topic: str, value: bytes, headers: Sequence[tuple[str, bytes]],
                   key: bytes | None, partition: int | None) -> None:
        future: asyncio.Future[None] = self._loop.create_future()
        give_up = 0.0
        while True:
            try:
                self.client.produce(topic, value, key,
                                    partition=-1 if partition is None else partition,
                                    headers=list(headers),
                                    on_delivery=partial(self.delivered, future))
                break
            except BufferError:  # librdkafka's queue is full: wait for reports to free it
                give_up = give_up or time.monotonic() + START_TIMEOUT_S
                if time.monotonic() >= give_up:
                    raise TransportError(f"send to {topic}: the producer's queue stayed full "
                                         f"for {START_TIMEOUT_S:g}s") from None
                await asyncio.sleep(BUFFER_FULL_RETRY_S)
            except KafkaException as exc:
                raise _raised(f"send to {topic}", exc) from None
        # Bounded by librdkafka: every record gets its report within message.timeout.ms.
        await future

    async def close(self, executor: ThreadPoolExecutor) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await loop.run_in_executor(executor, self.client.flush, CLOSE_TIMEOUT_S)
        finally:
            self._stopping.set()
            await loop.run_in_executor(executor, self._thread.join, POLL_THREAD_S * 20)
            self._settle()


class _RdReader:
    """A group member or an assigned-partition reader on one librdkafka consumer."""

    def __init__(self, transport: RdKafkaTransport, topics: Sequence[str], group_id: str | None,
                 assign: tuple[int, bool] | None) -> None:
        self._transport = transport
        self._topics = tuple(topics)
        self._group_id = group_id
        self._assign = assign  # (partition, from_beginning)
        self._consumer: Consumer | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._job: asyncio.Future[list[Message]] | None = None
        self._stash: list[Message] = []
        self._error: MeshError | None = None
        self._commits: dict[tuple[str, int], int] = {}
        self._last: dict[tuple[str, int], int] = {}
        self._commit_lock = threading.Lock()
        self._keeper: asyncio.Task[None] | None = None
        self._last_read = 0.0

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        for topic in self._topics:  # refuse a missing topic or partition at once
            partitions = await self._transport.require(topic)
            if self._assign is not None and self._assign[0] not in partitions:
                raise BrokerRefused(f"{topic} has no partition {self._assign[0]}")
        connection = await self._transport.connection()
        grouped = self._group_id is not None
        group = self._group_id or f"{connection.settings.service_name}.assigned"
        config = consumer_config(connection.settings, connection.security, group,
                                 grouped=grouped, oauth_cb=connection.oauth_cb)
        config["error_cb"] = connection.on_error
        config["logger"] = librdkafka_log
        config["on_commit"] = self._committed
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rdkafka-reader")
        self._consumer = Consumer(config)
        try:
            if self._assign is None:
                self._consumer.subscribe(list(self._topics))
                self._keeper = asyncio.create_task(self._keep_membership(),
                                                   name=f"rdkafka-keeper:{group}")
            else:
                await self._assign_partition(connection, self._consumer, *self._assign)
        except BaseException:
            await self.stop()
            raise

    async def _assign_partition(self, connection: _Connection, consumer: Consumer,
                                partition: int, from_beginning: bool) -> None:
        tp = TopicPartition(self._topics[0], partition)
        give_up = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                # Resolve the end now, so nothing sent after start() can be skipped.
                low, high = await self._call(consumer.get_watermark_offsets, tp,
                                             START_TIMEOUT_S, False,
                                             timeout_s=START_TIMEOUT_S + 5)
                break
            except KafkaException as exc:
                error = _error_of(exc)
                if error is not None and error.code() in _CONNECTION_ERRORS:
                    raise await connection.refused("resolve position", exc) from None
                failed = _raised("resolve position", exc)
                # A partition made a moment ago may have no leader yet: ask again.
                if not failed.retriable or time.monotonic() >= give_up:
                    raise failed from None
            except TimeoutError:
                raise await connection.refused("resolve position", None) from None
            await asyncio.sleep(METADATA_RETRY_S)
        tp.offset = low if from_beginning else high
        consumer.assign([tp])

    async def _keep_membership(self) -> None:
        """A group member takes part in a rebalance only while someone polls (librdkafka
        hands the revocation and the assignment to the application's poll): between reads
        that come further apart than ``KEEP_S``, poll without waiting; what it fetches is
        kept for the next read (at most one batch)."""
        while True:
            await asyncio.sleep(KEEP_S)
            if (self._consumer is None or self._executor is None or self._job is not None
                    or self._stash or time.monotonic() - self._last_read < KEEP_S):
                continue
            job = self._slice(self._executor, self._consumer, KEEP_BATCH, 0.0)
            await asyncio.wait([job])

    async def stop(self) -> None:
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.cancel()
            await asyncio.wait([keeper], timeout=CLOSE_TIMEOUT_S)
        consumer, self._consumer = self._consumer, None
        executor, self._executor = self._executor, None
        if consumer is None or executor is None:
            return
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                if self._job is not None:
                    await asyncio.wait([self._job])
                await loop.run_in_executor(executor, self._close, consumer)
        except TimeoutError:
            raise TransportError(f"stop consumer: not closed in {CLOSE_TIMEOUT_S:g}s") from None
        finally:
            executor.shutdown(wait=False, cancel_futures=True)

    def _close(self, consumer: Consumer) -> None:  # in the reader's thread
        if self._group_id is not None:
            with self._commit_lock:
                self._commits.clear()
                last = dict(self._last)
            if last:
                try:
                    consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in
                                             last.items()], asynchronous=False)
                except KafkaException as exc:  # e.g. the partition moved: the next owner reads
                    log.warning("final commit of %s failed: %s", last, exc)
        consumer.close()

    # --- reading -------------------------------------------------------------------------

    def _running(self) -> tuple[Consumer, ThreadPoolExecutor]:
        if self._consumer is None or self._executor is None:
            raise TransportError("the reader was never started")
        return self._consumer, self._executor

    async def read(self, timeout_s: float, max_records: int = 100) -> list[Record]:
        consumer, executor = self._running()
        self._last_read = time.monotonic()
        if not self._stash and self._job is None:
            # Nothing holds the consumer: take what is already fetched, without a thread hop.
            self._flush_commits(consumer)
            self._stash = consumer.consume(max_records, 0)
        deadline = time.monotonic() + timeout_s
        while not self._stash:
            remaining = deadline - time.monotonic()
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            if remaining <= 0:
                return []
            job = self._job or self._slice(executor, consumer, max_records,
                                           min(remaining, SLICE_S))
            # asyncio.wait: a cancelled read leaves the slice running; its records are kept.
            await asyncio.wait([job], timeout=SLICE_S + START_TIMEOUT_S)
            if not job.done():
                raise TransportError(f"fetch: a consumer call took over {START_TIMEOUT_S:g}s")
        return self._take(max_records)

    def _slice(self, executor: ThreadPoolExecutor, consumer: Consumer, max_records: int,
               wait_s: float) -> asyncio.Future[list[Message]]:
        job = asyncio.get_running_loop().run_in_executor(
            executor, self._wait_records, consumer, max_records, wait_s)
        self._job = job
        job.add_done_callback(self._sliced)
        return job

    def _wait_records(self, consumer: Consumer, max_records: int,
                      wait_s: float) -> list[Message]:  # in the reader's thread
        self._flush_commits(consumer)
        first = consumer.poll(wait_s)
        if first is None:
            return []
        return [first, *consumer.consume(max_records - 1, 0)] if max_records > 1 else [first]

    def _sliced(self, job: asyncio.Future[list[Message]]) -> None:
        self._job = None
        if job.cancelled():
            return
        exc = job.exception()
        if exc is None:
            self._stash.extend(job.result())
        elif isinstance(exc, KafkaException):
            self._error = _raised("fetch", exc)
        elif isinstance(exc, RuntimeError):  # the consumer was closed under it
            self._error = TransportError(f"fetch: {exc}")
        else:
            self._error = TransportError(f"fetch: {exc!r}")

    def _take(self, max_records: int) -> list[Record]:
        taken, self._stash = self._stash[:max_records], self._stash[max_records:]
        records: list[Record] = []
        for message in taken:
            error = message.error()
            if error is None:
                records.append(_record(message))
            elif error.code() in _SKIPPED:
                continue
            elif self._assign is not None and error.code() in _GROUP_ERRORS:
                log.debug("assigned reader: %s (its group is never used)", error)
            elif records:
                self._error = self._error or mesh_error("fetch", error)  # after these records
            else:
                raise mesh_error("fetch", error)
        return records

    async def _call(self, fn: Callable[..., T], *args: Any, timeout_s: float) -> T:
        """``fn(*args)`` in the reader's thread (after any slice in flight), bounded."""
        _, executor = self._running()
        async with asyncio.timeout(timeout_s):
            if self._job is not None:
                await asyncio.wait([self._job])
            return await asyncio.get_running_loop().run_in_executor(executor, partial(fn, *args))

    # --- committing ----------------------------------------------------------------------

    async def commit(self, records: Sequence[Record]) -> None:
        await self.commit_offsets(positions_after(records))

    async def commit_offsets(self, positions: Mapping[tuple[str, int], int]) -> None:
        if self._assign is not None or not positions:
            return
        consumer, _ = self._running()
        with self._commit_lock:
            for key, position in positions.items():
                self._commits[key] = max(self._commits.get(key, 0), position)
                self._last[key] = max(self._last.get(key, 0), position)
        if self._job is None:
            self._flush_commits(consumer)  # nothing holds the consumer: at once, on the loop
        # else the slice in flight issues it first thing when it ends (at most SLICE_S later)

    def _flush_commits(self, consumer: Consumer) -> None:
        with self._commit_lock:
            if not self._commits:
                return
            pending, self._commits = self._commits, {}
        offsets = [TopicPartition(t, p, o) for (t, p), o in pending.items()]
        try:
            consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as exc:  # not in the group now: the partitions' next owner reads
            log.warning("commit of %s failed: %s", pending, _raised("commit", exc))

    def _committed(self, error: KafkaError | None,
                   partitions: list[TopicPartition]) -> None:  # served by poll/consume
        failed = [tp for tp in partitions if tp.error is not None]
        if error is not None or failed:
            log.warning("commit failed, the next one covers it: %s %s", error, failed)


class RdKafkaTransport:
    """Transport over a real Kafka broker through librdkafka; the producer starts on first
    use. Connection security and secrets as ``KafkaTransport`` (``settings.kafka``)."""

    def __init__(self, settings: BusSettings, *, secrets: SecretSource | None = None) -> None:
        self._settings = settings
        self._secrets = secrets
        self._connection: _Connection | None = None
        self._lock = asyncio.Lock()
        self._producer: _Producer | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._partitions: dict[str, frozenset[int]] = {}

    async def connection(self) -> _Connection:
        if self._connection is None:
            async with self._lock:
                if self._connection is None:
                    security = await resolve_kafka_secrets(self._settings.kafka, self._secrets)
                    self._connection = _Connection(self._settings, security,
                                                   _oauth_callback(security))
        return self._connection

    def _blocking(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rdkafka-meta")
        return self._executor

    async def _run(self, fn: Callable[[], T], timeout_s: float) -> T:
        async with asyncio.timeout(timeout_s):
            return await asyncio.get_running_loop().run_in_executor(self._blocking(), fn)

    async def _ready_producer(self) -> _Producer:
        if self._producer is not None and not self._producer.broken:
            return self._producer
        connection = await self.connection()
        async with self._lock:
            if self._producer is not None and self._producer.broken:
                await self._discard(self._producer)
            if self._producer is None:
                producer = _Producer(connection, asyncio.get_running_loop())
                try:
                    await self._check(producer, connection)
                except BaseException:
                    await self._discard(producer)
                    raise
                self._producer = producer
            return self._producer

    async def _check(self, producer: _Producer, connection: _Connection) -> None:
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
            if (error is not None and error.code() in _CONNECTION_ERRORS) or (
                    time.monotonic() >= give_up):
                raise await connection.refused("start producer", failure)

    async def _discard(self, producer: _Producer) -> None:
        if self._producer is producer:
            self._producer = None
        try:
            await producer.close(self._blocking())
        except (KafkaException, TimeoutError) as exc:  # replaced either way; say so
            log.warning("closing a librdkafka producer failed: %r", exc)

    async def _fetch_partitions(self, topic: str) -> frozenset[int]:
        """The topic's partitions from fresh metadata, waiting up to ``METADATA_WAIT_S`` for a
        topic created a moment ago (as ``KafkaTransport`` does)."""
        producer = await self._ready_producer()
        give_up = time.monotonic() + METADATA_WAIT_S
        while True:
            try:
                metadata = await self._run(partial(producer.client.list_topics, topic,
                                                   START_TIMEOUT_S), START_TIMEOUT_S + 5)
            except KafkaException as exc:
                raise _raised("metadata", exc) from None
            except TimeoutError:
                raise TransportError(f"metadata: no answer in {START_TIMEOUT_S:g}s") from None
            found = metadata.topics.get(topic)
            error = getattr(found, "error", None)
            if found is not None and error is None and found.partitions:
                partitions = frozenset(found.partitions)
                self._partitions[topic] = partitions
                return partitions
            if isinstance(error, KafkaError) and error.code() not in (
                    KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC,
                    KafkaError.LEADER_NOT_AVAILABLE):
                raise mesh_error(f"metadata of {topic}", error)
            if time.monotonic() >= give_up:
                raise BrokerRefused(f"topic {topic} does not exist")
            await asyncio.sleep(METADATA_RETRY_S)

    async def require(self, topic: str) -> frozenset[int]:
        """The topic's partitions (cached after the first look); BrokerRefused if missing."""
        known = self._partitions.get(topic)
        return known if known is not None else await self._fetch_partitions(topic)

    async def send(
        self,
        topic: str,
        value: bytes,
        *,
        headers: Sequence[tuple[str, bytes]],
        key: bytes | None = None,
        partition: int | None = None,
    ) -> None:
        partitions = self._partitions.get(topic) or await self._fetch_partitions(topic)
        if partition is not None and partition not in partitions:
            partitions = await self._fetch_partitions(topic)  # it may have grown since
            if partition not in partitions:
                raise BrokerRefused(f"{topic} has no partition {partition}")
        producer = self._producer
        if producer is None or producer.broken:
            producer = await self._ready_producer()
        await producer.send(topic, value, headers, key, partition)

    async def partition_count(self, topic: str) -> int:
        return len(await self._fetch_partitions(topic))

    def assigned_reader(self, topic: str, partition: int, *,
                        from_beginning: bool = False) -> _RdReader:
        return _RdReader(self, [topic], None, (partition, from_beginning))

    def group_reader(self, topics: Sequence[str], group_id: str) -> _RdReader:
        return _RdReader(self, topics, group_id, None)

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

