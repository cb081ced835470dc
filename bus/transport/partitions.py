"""A transport's view of its topics' partitions: looked up once and cached, looked up again
when a send names a partition the cache does not know, and waited for when a topic created a
moment ago is not in the broker's metadata yet (the controller answers CreateTopics before the
broker's cache catches up, longer on a busy machine), as Kafka's own producer waits for an
unknown topic's metadata. The lookup itself is the transport's (its client's metadata call)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from bus.errors import BrokerRefused

METADATA_WAIT_S = 3.0
METADATA_RETRY_S = 0.1

# One look at the broker's metadata: the topic's partitions, empty while it is not (yet)
# known; raises the transport's own errors for anything else.
LookUp = Callable[[str], Awaitable[frozenset[int]]]


class TopicPartitions:
    def __init__(self, look_up: LookUp) -> None:
        self._look_up = look_up
        self._known: dict[str, frozenset[int]] = {}

    async def fresh(self, topic: str) -> frozenset[int]:
        """The topic's partitions from fresh metadata, waiting up to ``METADATA_WAIT_S`` for
        a topic that is missing; ``BrokerRefused`` when it does not appear."""
        give_up = time.monotonic() + METADATA_WAIT_S
        while True:
            partitions = await self._look_up(topic)
            if partitions:
                self._known[topic] = partitions
                return partitions
            if time.monotonic() >= give_up:
                raise BrokerRefused(f"topic {topic} does not exist")
            await asyncio.sleep(METADATA_RETRY_S)

    async def known(self, topic: str) -> frozenset[int]:
        """The topic's partitions (cached after the first look); BrokerRefused if missing."""
        cached = self._known.get(topic)
        return cached if cached is not None else await self.fresh(topic)

    async def check(self, topic: str, partition: int | None) -> None:
        """Before a send: the topic exists and has ``partition`` (looked up again when the
        cache does not know it: the topic may have grown since)."""
        partitions = await self.known(topic)  # the topic must exist, whatever the partition
        if partition is None or partition in partitions:
            return
        if partition not in await self.fresh(topic):
            raise BrokerRefused(f"{topic} has no partition {partition}")
