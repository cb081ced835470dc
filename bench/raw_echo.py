"""The raw-aiokafka side of the mesh-vs-raw bench: client options, the caller, the responder.

The client options mirror what ``bus.transport.kafka.KafkaTransport`` sets (acks=all, idempotent
producer, read_committed consumers without auto-commit), with linger_ms and fetch_max_wait_ms
taken from the very ``BusSettings`` the mesh side gets, so both sides run the same clients.

The responder (``python -m bench.raw_echo --topic T --group G ...``) gives the delivery
guarantee of ``bus.runtime.worker.ServiceWorker``: it replies to the topic and partition named in
the ``reply_to`` header, waits for the broker's acks, and only then lets the batch's offsets
be committed. As one would write it with aiokafka directly, it sends the replies of a
fetched batch concurrently and commits from a background task (``--commit background``);
``--commit sync`` commits before the next fetch, as the worker does.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bus.config import BusSettings
from bus.transport.connection import aiokafka_kwargs
from proof.procs import announce_ready, report, stop_event

# KafkaTransport leaves fetch_min_bytes at aiokafka's default (BusSettings has no field for
# it), so the raw side must too: the broker answers a fetch as soon as one byte is there.
FETCH_MIN_BYTES = 1
POLL_MS = 500
H_CORRELATION = "correlation_id"
H_REPLY_TO = "reply_to"


def producer_options(settings: BusSettings) -> dict[str, Any]:
    """The producer settings of ``KafkaTransport``, for an AIOKafkaProducer."""
    return {
        **aiokafka_kwargs(settings.bootstrap_servers, settings.kafka),
        "client_id": "bench-raw-producer",
        "linger_ms": settings.linger_ms,
        "acks": "all",
        "enable_idempotence": True,
        "max_request_size": settings.max_message_bytes + 64 * 1024,  # as KafkaTransport
    }


def consumer_options(settings: BusSettings) -> dict[str, Any]:
    """The consumer settings of ``KafkaTransport``, for an AIOKafkaConsumer."""
    return {
        **aiokafka_kwargs(settings.bootstrap_servers, settings.kafka),
        "client_id": "bench-raw-consumer",
        "enable_auto_commit": False,
        "fetch_max_wait_ms": settings.fetch_max_wait_ms,
        "fetch_min_bytes": FETCH_MIN_BYTES,
        "isolation_level": "read_committed",
    }


def _header(headers: Any, name: str) -> bytes | None:
    for key, value in headers or ():
        if key == name:
            return bytes(value)
    return None


class RawCaller:
    """Request/reply with plain aiokafka: one producer, one consumer assigned to one reply
    partition (no group), replies matched by the correlation id header."""

    def __init__(self, settings: BusSettings, request_topic: str, reply_topic: str,
                 reply_partitions: int) -> None:
        self.request_topic = request_topic
        self.reply = TopicPartition(reply_topic, random.randrange(reply_partitions))
        self._reply_to = f"{reply_topic}:{self.reply.partition}".encode()
        self.producer = AIOKafkaProducer(**producer_options(settings))
        self._consumer = AIOKafkaConsumer(**consumer_options(settings),
                                          auto_offset_reset="latest")
        self._pending: dict[bytes, asyncio.Future[bytes]] = {}
        self._task: asyncio.Task[None] | None = None
        self.ignored = 0

    async def start(self) -> None:
        await self.producer.start()
        await self._consumer.start()
        self._consumer.assign([self.reply])
        await self._consumer.seek_to_end(self.reply)
        await self._consumer.position(self.reply)
        self._task = asyncio.create_task(self._listen(), name="raw-replies")

    async def _listen(self) -> None:
        while True:  # ends when close() cancels it
            batches = await self._consumer.getmany(timeout_ms=POLL_MS, max_records=100)
            for messages in batches.values():
                for message in messages:
                    correlation = _header(message.headers, H_CORRELATION)
                    future = self._pending.pop(correlation or b"", None)
                    if future is None or future.done():
                        self.ignored += 1
                        continue
                    future.set_result(message.value)

    async def request(self, value: bytes, timeout_s: float) -> bytes:
        correlation = uuid.uuid4().hex.encode()
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[correlation] = future
        try:
            await self.producer.send_and_wait(
                self.request_topic, value, key=correlation,
                headers=[(H_CORRELATION, correlation), (H_REPLY_TO, self._reply_to)],
            )
            return await asyncio.wait_for(future, timeout_s)
        finally:
            self._pending.pop(correlation, None)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task], timeout=5)
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()
        try:
            await self._consumer.stop()
        finally:
            await self.producer.stop()


class Committer:
    """Commits offsets in the background, one OffsetCommit at a time, each covering every
    batch whose replies were acknowledged since the previous one.

    Same guarantee as committing synchronously after each batch (an offset is committed only
    once its reply is acked), without putting the commit's round trip (group coordinator
    append, ~5 ms linger on Kafka 4.x) in front of the next fetch.
    """

    def __init__(self, consumer: Any) -> None:
        self._consumer = consumer
        self._offsets: dict[TopicPartition, int] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.commits = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="raw-committer")

    def add(self, offsets: dict[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            self._offsets[tp] = max(self._offsets.get(tp, 0), offset)
        self._wake.set()

    async def _commit_pending(self) -> None:
        offsets, self._offsets = self._offsets, {}
        if offsets:
            await self._consumer.commit(offsets)
            self.commits += 1

    async def _run(self) -> None:
        while True:  # ends when stop() cancels it
            await self._wake.wait()
            self._wake.clear()
            await self._commit_pending()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task], timeout=5)
            failure = task.exception() if task.done() and not task.cancelled() else None
            if failure is not None:
                raise failure
        await self._commit_pending()


async def serve(args: argparse.Namespace) -> dict[str, Any]:
    settings = BusSettings(bootstrap_servers=args.bootstrap, linger_ms=args.linger_ms,
                           fetch_max_wait_ms=args.fetch_max_wait_ms,
                           max_message_bytes=args.max_message_bytes,
                           kafka=BusSettings.resolve().kafka)  # MESH_KAFKA_*, as a worker
    stop = stop_event(args.max_seconds)
    producer = AIOKafkaProducer(**producer_options(settings))
    consumer = AIOKafkaConsumer(args.topic, group_id=args.group, auto_offset_reset="earliest",
                                **consumer_options(settings))
    committer = Committer(consumer)
    handled = rejected = batches = 0
    await producer.start()
    try:
        await consumer.start()
        committer.start()
        announce_ready()
        while not stop.is_set():
            fetched = await consumer.getmany(timeout_ms=POLL_MS, max_records=100)
            acks: list[asyncio.Future[Any]] = []
            offsets: dict[TopicPartition, int] = {}
            for tp, messages in fetched.items():
                for message in messages:
                    offsets[tp] = message.offset + 1
                    correlation = _header(message.headers, H_CORRELATION)
                    topic, _, partition = (_header(message.headers, H_REPLY_TO) or b"") \
                        .decode().rpartition(":")
                    if correlation is None or not topic or not partition.isdigit():
                        rejected += 1
                        continue
                    acks.append(await producer.send(
                        topic, message.value, partition=int(partition),
                        headers=[(H_CORRELATION, correlation)],
                    ))
            if acks:
                await asyncio.gather(*acks)  # replies acknowledged: now they may be committed
                handled += len(acks)
            if offsets:
                batches += 1
                if args.commit == "sync":  # what bus.runtime.worker.ServiceWorker does
                    await consumer.commit(offsets)
                else:
                    committer.add(offsets)
    finally:
        try:
            await committer.stop()
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()
            await producer.stop()
    return {"handled": handled, "rejected": rejected, "batches": batches,
            "background_commits": committer.commits}


def main() -> None:
    parser = argparse.ArgumentParser(description="Raw aiokafka echo responder for the bench.")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--linger-ms", type=int, default=0)
    parser.add_argument("--fetch-max-wait-ms", type=int, default=10)
    parser.add_argument("--commit", choices=("background", "sync"), default="background",
                        help="commit offsets in the background (default) or after each "
                             "batch before the next fetch, like ServiceWorker")
    parser.add_argument("--max-message-bytes", type=int,
                        default=BusSettings.model_fields["max_message_bytes"].default)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    report(asyncio.run(serve(parser.parse_args())))


if __name__ == "__main__":
    main()
