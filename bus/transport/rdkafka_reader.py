"""The librdkafka transport's reader: a consumer-group member or a reader of one assigned
partition, its waits in its own thread (``bus.transport.rdkafka``)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from bus.errors import BrokerRefused, MeshError, TransportError
from bus.transport import Record, positions_after
from bus.transport.rdkafka_config import START_TIMEOUT_S, consumer_config
from bus.transport.rdkafka_connection import (
    CLOSE_TIMEOUT_S,
    CONNECTION_ERRORS,
    GROUP_ERRORS,
    SKIPPED,
    Connection,
    error_of,
    librdkafka_log,
    log,
    mesh_error,
    raised,
)

T = TypeVar("T")
SLICE_S = 0.1  # longest a consumer call waits, so a commit or stop waits at most this
KEEP_S = 0.2  # a group member idle longer than this is polled (rebalances need a poll)
KEEP_BATCH = 100
SPIN_S = 0.02  # a read polls on the loop this long before it waits in the reader's thread
SPIN_TICK_S = 0.001
METADATA_RETRY_S = 0.1
Require = Callable[[str], Awaitable[frozenset[int]]]
Connect = Callable[[], Awaitable[Connection]]


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


def sort_out(messages: Sequence[Message], *,
             assigned: bool) -> tuple[list[Record], MeshError | None]:
    """The records among what librdkafka handed over, and the first error it reported with
    them (pure): end-of-partition events are skipped, and so are an assigned reader's group
    errors (its group id exists only because confluent-kafka wants one)."""
    records: list[Record] = []
    first: MeshError | None = None
    for message in messages:
        error = message.error()
        if error is None:
            records.append(_record(message))
        elif error.code() in SKIPPED:
            continue
        elif assigned and error.code() in GROUP_ERRORS:
            log.debug("assigned reader: %s (its group is never used)", error)
        elif first is None:
            first = mesh_error("fetch", error)
    return records, first


class RdReader:
    """A group member or an assigned-partition reader on one librdkafka consumer."""

    def __init__(self, require: Require, connect: Connect, topics: Sequence[str],
                 group_id: str | None, assign: tuple[int, bool] | None) -> None:
        self._require = require
        self._connect = connect
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
        self._commit_in_flight = False  # one asynchronous commit at a time
        self._keeper: asyncio.Task[None] | None = None
        self._last_read = 0.0

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        for topic in self._topics:  # refuse a missing topic or partition at once
            partitions = await self._require(topic)
            if self._assign is not None and self._assign[0] not in partitions:
                raise BrokerRefused(f"{topic} has no partition {self._assign[0]}")
        connection = await self._connect()
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

    async def _assign_partition(self, connection: Connection, consumer: Consumer,
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
                error = error_of(exc)
                if error is not None and error.code() in CONNECTION_ERRORS:
                    raise await connection.refused("resolve position", exc) from None
                failed = raised("resolve position", exc)
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
        self._last_read = now = time.monotonic()
        deadline, spin_until = now + timeout_s, now + min(SPIN_S, timeout_s)
        while not self._stash:
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            now = time.monotonic()
            if now >= deadline:
                return []
            if self._job is None:
                # Nothing holds the consumer: take what is already fetched, on the loop
                # (no thread hop, no wait for the GIL), for SPIN_S before waiting in a thread.
                self._flush_commits(consumer)
                self._stash = consumer.consume(max_records, 0)
                if self._stash:
                    break
                if now < spin_until:
                    await asyncio.sleep(SPIN_TICK_S)
                    continue
            job = self._job or self._slice(executor, consumer, max_records,
                                           min(deadline - now, SLICE_S))
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
            self._error = raised("fetch", exc)
        elif isinstance(exc, RuntimeError):  # the consumer was closed under it
            self._error = TransportError(f"fetch: {exc}")
        else:
            self._error = TransportError(f"fetch: {exc!r}")

    def _take(self, max_records: int) -> list[Record]:
        taken, self._stash = self._stash[:max_records], self._stash[max_records:]
        records, error = sort_out(taken, assigned=self._assign is not None)
        if error is not None:
            if not records:
                raise error
            self._error = self._error or error  # raised by the next read, after these records
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
        """Issue the pending positions as one asynchronous commit, unless one is in flight
        (its ``on_commit`` ends it; the positions wait, merged, for the next chance)."""
        with self._commit_lock:
            if not self._commits or self._commit_in_flight:
                return
            pending, self._commits = self._commits, {}
            self._commit_in_flight = True
        offsets = [TopicPartition(t, p, o) for (t, p), o in pending.items()]
        try:
            consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as exc:  # not in the group now: the partitions' next owner reads
            with self._commit_lock:
                self._commit_in_flight = False
            log.warning("commit of %s failed: %s", pending, raised("commit", exc))

    def _committed(self, error: KafkaError | None,
                   partitions: list[TopicPartition]) -> None:  # served by poll/consume
        with self._commit_lock:
            self._commit_in_flight = False
        failed = [tp for tp in partitions if tp.error is not None]
        if error is not None or failed:
            log.warning("commit failed, the next one covers it: %s %s", error, failed)
