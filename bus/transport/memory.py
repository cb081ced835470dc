"""In-memory transport: the broker semantics the mesh client relies on, inside one process.

For unit tests and for users' own tests; never the proof that a feature works on Kafka.
Members of one consumer group share the group's cursor, so each record goes to one member.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bus.errors import BrokerRefused
from bus.transport import Record, positions_after


@dataclass
class _Group:
    cursor: dict[tuple[str, int], int] = field(default_factory=dict)
    committed: dict[tuple[str, int], int] = field(default_factory=dict)


class MemoryBroker:
    def __init__(self) -> None:
        self._logs: dict[str, list[list[Record]]] = {}
        self._groups: dict[str, _Group] = {}
        # Readers waiting for a record, by topic (None: waiting for any change).
        self._waiters: dict[str | None, set[asyncio.Future[None]]] = {}
        self._round_robin = 0

    def create_topic(self, name: str, partitions: int = 1) -> None:
        self._logs.setdefault(name, [[] for _ in range(partitions)])

    def log(self, topic: str) -> list[list[Record]]:
        try:
            return self._logs[topic]
        except KeyError:
            raise BrokerRefused(f"topic {topic} does not exist") from None

    def partition(self, topic: str, partition: int) -> list[Record]:
        """One partition's log; like Kafka, an unknown topic or partition is refused."""
        partitions = self.log(topic)
        if not 0 <= partition < len(partitions):
            raise BrokerRefused(f"{topic} has no partition {partition}")
        return partitions[partition]

    def append(self, topic: str, partition: int | None, key: bytes | None, value: bytes,
               headers: Sequence[tuple[str, bytes]]) -> Record:
        partitions = self.log(topic)
        if partition is None:
            if key is not None:
                partition = zlib.crc32(key) % len(partitions)
            else:
                self._round_robin += 1
                partition = self._round_robin % len(partitions)
        log = self.partition(topic, partition)
        record = Record(topic, partition, len(log), value, key, tuple(headers))
        log.append(record)
        for waiter in (*self._waiters.pop(topic, ()), *self._waiters.pop(None, ())):
            _settle(waiter)
        return record

    def group(self, group_id: str) -> _Group:
        return self._groups.setdefault(group_id, _Group())

    def committed(self, group_id: str, topic: str, partition: int) -> int:
        return self.group(group_id).committed.get((topic, partition), 0)

    async def wait_for_change(self, timeout_s: float,
                              topics: Sequence[str] | None = None) -> None:
        """Until a record is appended to one of ``topics`` (any topic: None), or
        ``timeout_s``. Only the readers of the appended topic wake, with one future and one
        timer each (``asyncio.wait_for`` per wait, every reader woken by every append, was
        most of an in-memory round trip's cost)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        keys: tuple[str | None, ...] = (None,) if topics is None else tuple(topics)
        for key in keys:
            self._waiters.setdefault(key, set()).add(waiter)
        timer = loop.call_later(timeout_s, _settle, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            for key in keys:
                waiting = self._waiters.get(key)
                if waiting is not None:
                    waiting.discard(waiter)
                    if not waiting:
                        del self._waiters[key]


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _AssignedReader:
    def __init__(self, broker: MemoryBroker, topic: str, partition: int,
                 from_beginning: bool) -> None:
        self._broker, self._topic, self._partition = broker, topic, partition
        self._from_beginning = from_beginning
        self._position = 0

    async def start(self) -> None:
        log = self._broker.partition(self._topic, self._partition)  # refuses a missing one
        self._position = 0 if self._from_beginning else len(log)

    async def stop(self) -> None:
        return None

    async def read(self, timeout_s: float, max_records: int = 100) -> list[Record]:
        log = self._broker.partition(self._topic, self._partition)
        if self._position >= len(log):
            await self._broker.wait_for_change(timeout_s, (self._topic,))
        records = log[self._position : self._position + max_records]
        self._position += len(records)
        return records

    async def commit(self, records: Sequence[Record]) -> None:
        return None

    async def commit_offsets(self, positions: Mapping[tuple[str, int], int]) -> None:
        return None


class _GroupReader:
    def __init__(self, broker: MemoryBroker, topics: Sequence[str], group_id: str) -> None:
        self._broker, self._topics, self._group_id = broker, tuple(topics), group_id

    async def start(self) -> None:
        group = self._broker.group(self._group_id)
        for topic in self._topics:
            for partition in range(len(self._broker.log(topic))):
                key = (topic, partition)
                group.cursor.setdefault(key, group.committed.get(key, 0))

    async def stop(self) -> None:
        group = self._broker.group(self._group_id)
        # Like a rebalance: uncommitted records are handed out again.
        for key in list(group.cursor):
            group.cursor[key] = group.committed.get(key, 0)

    def _take(self, max_records: int) -> list[Record]:
        group = self._broker.group(self._group_id)
        taken: list[Record] = []
        for (topic, partition), position in group.cursor.items():
            log = self._broker.log(topic)[partition]
            batch = log[position : position + max_records - len(taken)]
            group.cursor[(topic, partition)] = position + len(batch)
            taken.extend(batch)
        return taken

    async def read(self, timeout_s: float, max_records: int = 100) -> list[Record]:
        records = self._take(max_records)
        if not records:
            await self._broker.wait_for_change(timeout_s, self._topics)
            records = self._take(max_records)
        return records

    async def commit(self, records: Sequence[Record]) -> None:
        await self.commit_offsets(positions_after(records))

    def end_offsets(self) -> dict[tuple[str, int], int]:
        group = self._broker.group(self._group_id)
        return {(t, p): len(self._broker.log(t)[p]) for t, p in group.cursor}

    async def commit_offsets(self, positions: Mapping[tuple[str, int], int]) -> None:
        group = self._broker.group(self._group_id)
        for key, position in positions.items():
            group.committed[key] = max(group.committed.get(key, 0), position)


class MemoryTransport:
    def __init__(self, broker: MemoryBroker) -> None:
        self.broker = broker

    async def send(
        self,
        topic: str,
        value: bytes,
        *,
        headers: Sequence[tuple[str, bytes]],
        key: bytes | None = None,
        partition: int | None = None,
    ) -> None:
        self.broker.append(topic, partition, key, value, headers)

    async def partition_count(self, topic: str) -> int:
        return len(self.broker.log(topic))

    def assigned_reader(
        self, topic: str, partition: int, *, from_beginning: bool = False
    ) -> _AssignedReader:
        return _AssignedReader(self.broker, topic, partition, from_beginning)

    def group_reader(self, topics: Sequence[str], group_id: str) -> _GroupReader:
        return _GroupReader(self.broker, topics, group_id)

    async def close(self) -> None:
        return None
