"""Which offsets may be committed while records are handled concurrently (pure).

A partition's committable position is its lowest offset still in flight, or one past the
highest finished offset when nothing is in flight: committing never skips a record that has
not been answered yet.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

TopicPartition = tuple[str, int]


@dataclass
class _Partition:
    committed: int  # the position last committed (at first: the first offset seen)
    next_position: int  # one past the highest offset finished with nothing before it
    in_flight: list[int] = field(default_factory=list)  # a heap
    done: set[int] = field(default_factory=set)  # finished offsets still inside the heap


class OffsetTracker:
    def __init__(self) -> None:
        self._partitions: dict[TopicPartition, _Partition] = {}

    def started(self, tp: TopicPartition, offset: int) -> None:
        partition = self._partitions.get(tp)
        if partition is None:
            partition = self._partitions[tp] = _Partition(committed=offset, next_position=offset)
        heapq.heappush(partition.in_flight, offset)

    def finished(self, tp: TopicPartition, offset: int) -> None:
        partition = self._partitions[tp]
        partition.done.add(offset)
        while partition.in_flight and partition.in_flight[0] in partition.done:
            lowest = heapq.heappop(partition.in_flight)
            partition.done.discard(lowest)
            partition.next_position = max(partition.next_position, lowest + 1)

    @property
    def in_flight(self) -> int:
        return sum(len(p.in_flight) for p in self._partitions.values())

    def committable(self) -> dict[TopicPartition, int]:
        """Positions that moved past the last committed ones."""
        ready: dict[TopicPartition, int] = {}
        for tp, partition in self._partitions.items():
            position = partition.in_flight[0] if partition.in_flight else partition.next_position
            if position > partition.committed:
                ready[tp] = position
        return ready

    def positions(self) -> dict[TopicPartition, int]:
        """Per partition: the lowest offset not answered yet (what would be committed)."""
        return {tp: p.in_flight[0] if p.in_flight else p.next_position
                for tp, p in self._partitions.items()}

    def committed(self, positions: dict[TopicPartition, int]) -> None:
        """The broker accepted ``positions`` (from ``committable``)."""
        for tp, position in positions.items():
            partition = self._partitions.get(tp)
            if partition is not None:
                partition.committed = max(partition.committed, position)

    def forget(self, tp: TopicPartition) -> None:
        """The partition was revoked: its positions are another member's now."""
        self._partitions.pop(tp, None)
