"""An offset commit that fails (the group coordinator frozen or failing over, a rebalance)
does not stop the event subscriber: it goes on, the next commit covers the events, and a
redelivery of them is a counted duplicate, not a second run. Found by the cluster-freeze
chaos scenario, where the subscriber died of ``commit: no answer from the broker in 15s``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from bus.errors import TransportError
from bus.transport import Record
from bus.transport.memory import MemoryBroker, MemoryTransport, _GroupReader
from tests.unit.test_subscriber_replays import TOPIC, Rig, record


class FlakyCommits(_GroupReader):
    """A group reader whose first ``failures`` commits fail as the Kafka adapter's do."""

    def __init__(self, broker: MemoryBroker, topics: Sequence[str], group_id: str,
                 failures: int) -> None:
        super().__init__(broker, topics, group_id)
        self.failures = failures

    async def commit(self, records: Sequence[Record]) -> None:
        if records and self.failures:
            self.failures -= 1
            raise TransportError("commit: no answer from the broker in 15s")
        await super().commit(records)


class FlakyTransport(MemoryTransport):
    def __init__(self, broker: MemoryBroker, failures: int) -> None:
        super().__init__(broker)
        self.failures = failures

    def group_reader(self, topics: Sequence[str], group_id: str) -> FlakyCommits:
        return FlakyCommits(self.broker, topics, group_id,
                            self.failures if TOPIC in topics else 0)


async def until(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not check():  # noqa: ASYNC110 - polls the memory broker
            await asyncio.sleep(0.01)


async def test_a_failed_commit_does_not_stop_the_subscriber() -> None:
    rig = Rig()
    sub = rig.subscriber()
    sub._transport = FlakyTransport(rig.broker, failures=1)  # its group readers' commits
    stop = asyncio.Event()
    task = asyncio.create_task(sub.run(stop))
    first = rig.event("first")
    rig.broker.append(TOPIC, 0, None, first.value, record(first).headers)
    await until(lambda: rig.ran == ["first"] or task.done())
    second = rig.event("second")
    rig.broker.append(TOPIC, 0, None, second.value, record(second).headers)
    await until(lambda: rig.ran == ["first", "second"] or task.done())
    assert not task.done(), task.exception()
    await until(lambda: rig.broker.committed(sub.group_of(TOPIC), TOPIC, 0) == 2)
    stop.set()
    await asyncio.wait_for(task, 10)

    again = rig.subscriber()  # the same records handed out again: counted, not run
    await again._process(record(first, offset=0))
    assert rig.ran == ["first", "second"]
    assert again.counts.duplicates == 1
