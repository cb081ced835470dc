"""The transports' shared partition cache (bus.transport.partitions), without a broker."""

from __future__ import annotations

import pytest

from bus.errors import BrokerRefused
from bus.transport import partitions as module
from bus.transport.partitions import TopicPartitions


class Metadata:
    """Answers each look from a script: the topic appears after ``missing`` looks."""

    def __init__(self, found: frozenset[int], missing: int = 0) -> None:
        self.found, self.missing, self.looks = found, missing, 0

    async def __call__(self, topic: str) -> frozenset[int]:
        self.looks += 1
        return frozenset() if self.looks <= self.missing else self.found


async def test_a_new_topic_is_waited_for_then_cached() -> None:
    metadata = Metadata(frozenset({0, 1}), missing=2)
    topics = TopicPartitions(metadata)
    assert await topics.known("t") == {0, 1}
    assert await topics.known("t") == {0, 1}
    assert metadata.looks == 3


async def test_a_missing_topic_is_refused_after_the_wait(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    monkeypatch.setattr(module, "METADATA_WAIT_S", 0.05)
    monkeypatch.setattr(module, "METADATA_RETRY_S", 0.01)
    topics = TopicPartitions(Metadata(frozenset(), missing=10**6))
    with pytest.raises(BrokerRefused, match="does not exist"):
        await topics.check("t", None)


async def test_an_unknown_partition_is_looked_up_again_then_refused() -> None:
    metadata = Metadata(frozenset({0}))
    topics = TopicPartitions(metadata)
    await topics.check("t", 0)
    with pytest.raises(BrokerRefused, match="no partition 3"):
        await topics.check("t", 3)
    assert metadata.looks == 2  # the cached view, then one fresh look for partition 3


async def test_a_grown_topic_is_seen_at_the_fresh_look() -> None:
    metadata = Metadata(frozenset({0}))
    topics = TopicPartitions(metadata)
    await topics.check("t", None)
    metadata.found = frozenset({0, 1})
    await topics.check("t", 1)
    assert await topics.known("t") == {0, 1}
