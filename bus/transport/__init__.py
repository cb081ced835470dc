"""The transport seam: what the mesh client needs from a message broker.

Two implementations sit behind these protocols: ``bus.transport.kafka`` (aiokafka, the real broker)
and ``bus.transport.memory`` (in-process, for unit tests and users' own tests).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None
    headers: Sequence[tuple[str, bytes]] = field(default=())


def positions_after(records: Sequence[Record]) -> dict[tuple[str, int], int]:
    """The next position to read per partition once ``records`` are handled."""
    positions: dict[tuple[str, int], int] = {}
    for record in records:
        key = (record.topic, record.partition)
        positions[key] = max(positions.get(key, 0), record.offset + 1)
    return positions


class Reader(Protocol):
    """Reads records, either from a self-assigned partition or as a consumer-group member."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def read(self, timeout_s: float, max_records: int = 100) -> list[Record]:
        """Records that arrived, waiting at most ``timeout_s`` for the first one."""
        ...

    async def commit(self, records: Sequence[Record]) -> None:
        """Mark ``records`` handled (group readers); a no-op for assigned readers."""
        ...

    async def commit_offsets(self, positions: Mapping[tuple[str, int], int]) -> None:
        """Commit the next position to read per (topic, partition) (group readers)."""
        ...


class Transport(Protocol):
    async def send(
        self,
        topic: str,
        value: bytes,
        *,
        headers: Sequence[tuple[str, bytes]],
        key: bytes | None = None,
        partition: int | None = None,
    ) -> None:
        """Send one record and wait until the broker has acknowledged it."""
        ...

    async def partition_count(self, topic: str) -> int: ...

    def assigned_reader(
        self, topic: str, partition: int, *, from_beginning: bool = False
    ) -> Reader:
        """A reader on one partition, no consumer group, starting at the partition's end
        (or at its first record with ``from_beginning``)."""
        ...

    def group_reader(self, topics: Sequence[str], group_id: str) -> Reader:
        """A consumer-group member that starts at the committed offset (earliest if none)."""
        ...

    async def close(self) -> None: ...
