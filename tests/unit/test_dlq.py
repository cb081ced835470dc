"""bus.delivery.dlq over the memory transport: listing dead letters (replays:
test_dlq_replay.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import pytest

from bus.delivery.dlq import (
    DeadLetter,
    dead_letter_from_record,
    list_dead_letters,
)
from bus.delivery.retry_topics import (
    REASON_EXHAUSTED,
    REASON_NOT_RETRIABLE,
    Failure,
    RetryTopicPolicy,
    RetryTopics,
    hop_headers,
)
from bus.envelope import (
    Envelope,
    ReplyTo,
    new_request,
    to_headers,
)
from bus.errors import BrokerRefused, TransportError
from bus.transport import Record
from bus.transport.memory import MemoryBroker, MemoryTransport

MAIN = "orders.requests"
T0 = 1_700_000_000_000
IDLE_S = 0.05
TOPICS = RetryTopics(MAIN, RetryTopicPolicy((1_000,)))
DLT = TOPICS.dlt_topic


@pytest.fixture
def transport() -> MemoryTransport:
    broker = MemoryBroker()
    broker.create_topic(MAIN, partitions=2)
    broker.create_topic(DLT, partitions=3)
    return MemoryTransport(broker)


def request(n: int) -> Envelope:
    return new_request(
        source="gateway", operation="orders.create", value=f'{{"n":{n}}}'.encode(),
        reply_to=ReplyTo("mesh.replies", 3), deadline_ms=T0 + 5_000,
        traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01", at_ms=T0,
    )


async def kill(
    transport: MemoryTransport, envelope: Envelope, partition: int, *, retriable: bool = True,
    attempt: int = 2, key: bytes | None = None,
) -> None:
    """Put ``envelope`` on the DLT the way a worker gives up on it."""
    topic = MAIN if attempt == 1 else TOPICS.retry_topics[0]
    hop = TOPICS.next_hop(topic, attempt, retriable, now_ms=T0 + 100)
    headers = hop_headers(
        replace(envelope, attempt=attempt, signature="ed25519:gateway-1:c2ln"), hop,
        original_topic=MAIN, failure=Failure("out_of_stock", f"none left for {envelope.id}",
                                             retriable),
        failed_at_ms=T0 + 100,
    )
    await transport.send(DLT, envelope.value, headers=headers, key=key, partition=partition)


async def test_lists_every_partition_from_the_beginning_in_order(
    transport: MemoryTransport,
) -> None:
    first, second, third = request(1), request(2), request(3)
    await kill(transport, first, 2)
    await kill(transport, second, 0, retriable=False, attempt=1)
    await kill(transport, third, 2, key=b"k3")
    await transport.send(DLT, b"junk", headers=[("ce_id", b"x")], partition=1)

    letters = await list_dead_letters(transport, DLT, 10, idle_timeout_s=IDLE_S)

    assert [(d.partition, d.offset) for d in letters] == [(0, 0), (1, 0), (2, 0), (2, 1)]
    assert [d.id for d in letters] == [second.id, None, first.id, third.id]
    dead = letters[0]
    assert dead.envelope is not None
    assert (dead.envelope.type, dead.envelope.value, dead.envelope.attempt) == (
        "orders.create", b'{"n":2}', 1,
    )
    assert (dead.original_topic, dead.error_code, dead.error_message) == (
        MAIN, "out_of_stock", f"none left for {second.id}",
    )
    assert (dead.failed_at_ms, dead.reason, dead.parse_error, dead.failure_error) == (
        T0 + 100, REASON_NOT_RETRIABLE, None, None,
    )
    assert (letters[2].reason, letters[3].key, letters[3].topic) == (
        REASON_EXHAUSTED, b"k3", DLT,
    )
    junk = letters[1]
    assert junk.envelope is None
    assert junk.parse_error is not None
    assert "missing headers" in junk.parse_error
    assert (junk.value, junk.original_topic, junk.error_code) == (b"junk", None, None)


async def test_limit_takes_the_first_letters_by_partition_then_offset(
    transport: MemoryTransport,
) -> None:
    envelopes = [request(n) for n in range(5)]
    for n, envelope in enumerate(envelopes):
        await kill(transport, envelope, n % 2)
    letters = await list_dead_letters(transport, DLT, 2, idle_timeout_s=IDLE_S)
    assert [d.id for d in letters] == [envelopes[0].id, envelopes[2].id]
    assert await list_dead_letters(transport, DLT, 0, idle_timeout_s=IDLE_S) == []
    with pytest.raises(ValueError, match="limit"):
        await list_dead_letters(transport, DLT, -1, idle_timeout_s=IDLE_S)


async def test_an_empty_dlt_lists_nothing(transport: MemoryTransport) -> None:
    assert await list_dead_letters(transport, DLT, 10, idle_timeout_s=IDLE_S) == []


async def test_a_missing_dlt_is_a_broker_refusal(transport: MemoryTransport) -> None:
    with pytest.raises(BrokerRefused):
        await list_dead_letters(transport, "nope.dlt", 10, idle_timeout_s=IDLE_S)


class _Reader:
    def __init__(self, records: list[Record], fail: bool, stopped: list[int]) -> None:
        self._records, self._fail, self._stopped = records, fail, stopped

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self._stopped.append(1)

    async def read(self, timeout_s: float, max_records: int = 100) -> list[Record]:
        if self._fail:
            raise TransportError("fetch failed")
        batch, self._records = self._records[:max_records], self._records[max_records:]
        return batch

    async def commit(self, records: Sequence[Record]) -> None:
        return None

    async def commit_offsets(self, positions: Mapping[tuple[str, int], int]) -> None:
        return None


class _FlakyTransport(MemoryTransport):
    """Partition 1 of every topic fails to fetch; counts the readers stopped."""

    def __init__(self, broker: MemoryBroker) -> None:
        super().__init__(broker)
        self.stopped: list[int] = []

    def assigned_reader(  # type: ignore[override]
        self, topic: str, partition: int, *, from_beginning: bool = False
    ) -> _Reader:
        records = list(self.broker.log(topic)[partition])
        return _Reader(records, partition == 1, self.stopped)


async def test_a_failing_partition_raises_its_mesh_error_and_stops_every_reader(
    transport: MemoryTransport,
) -> None:
    flaky = _FlakyTransport(transport.broker)
    await kill(flaky, request(1), 0)
    with pytest.raises(TransportError, match="fetch failed"):
        await list_dead_letters(flaky, DLT, 10, idle_timeout_s=IDLE_S)
    assert len(flaky.stopped) == 3


def test_bad_failure_headers_are_reported_not_raised() -> None:
    envelope = request(1)
    headers = (*to_headers(envelope), ("mesh_error_code", b"x"))
    dead = dead_letter_from_record(Record(DLT, 0, 4, envelope.value, None, headers))
    assert isinstance(dead, DeadLetter)
    assert dead.envelope is not None
    assert dead.failure_error is not None
    assert "missing failure headers" in dead.failure_error
    assert dead.original_topic is None
