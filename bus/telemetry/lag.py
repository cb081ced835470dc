"""Consumer lag per partition (pure): how far a consumer group's position trails the end.

The position is the worker's own: the lowest offset not yet answered (what it would commit
next), so the lag counts every record the group still owes an answer for, read or not. The
end is the partition's last stable offset as of the consumer's last fetch (with
``read_committed`` a consumer cannot read past it), supplied by the transport adapter.

``LagReport`` is the hand-over between the worker's event loop, which ``update``s it, and
the metric reader's thread, which reads ``snapshot`` (one immutable tuple, replaced whole:
no lock, no torn read).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple, Protocol, runtime_checkable

TopicPartition = tuple[str, int]


@runtime_checkable
class EndOffsets(Protocol):
    """A reader that knows its assigned partitions' end offsets without a broker call."""

    def end_offsets(self) -> dict[TopicPartition, int]: ...


class PartitionLag(NamedTuple):
    topic: str
    partition: int
    lag: int


def consumer_lag(
    positions: Mapping[TopicPartition, int], ends: Mapping[TopicPartition, int]
) -> tuple[PartitionLag, ...]:
    """Lag of every partition with a known end: ``end - position``, never below 0.

    A partition the worker has not read from yet (no position) trails by nothing it knows of
    and is left out; a position past the end (the end is from an older fetch) is 0.
    """
    lags = []
    for (topic, partition), end in sorted(ends.items()):
        position = positions.get((topic, partition))
        if position is None:
            continue
        lags.append(PartitionLag(topic, partition, max(0, end - position)))
    return tuple(lags)


class LagReport:
    """The latest lag of one consumer group's member (see the module notes)."""

    def __init__(self, group: str) -> None:
        self.group = group
        self.snapshot: tuple[PartitionLag, ...] = ()

    def update(
        self, positions: Mapping[TopicPartition, int], ends: Mapping[TopicPartition, int]
    ) -> None:
        self.snapshot = consumer_lag(positions, ends)

    def clear(self) -> None:
        """The member stopped: it reports nothing any more."""
        self.snapshot = ()
