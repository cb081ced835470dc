"""bus.transport.memory: the in-process broker the unit tests (and users' tests) run on."""

from __future__ import annotations

import asyncio

import pytest

from bus.errors import BrokerRefused
from bus.transport import Record
from bus.transport.memory import MemoryBroker, MemoryTransport


@pytest.fixture
def transport() -> MemoryTransport:
    broker = MemoryBroker()
    broker.create_topic("t", partitions=1)
    broker.create_topic("wide", partitions=4)
    return MemoryTransport(broker)


async def _send(transport: MemoryTransport, *values: bytes, topic: str = "t") -> None:
    for value in values:
        await transport.send(topic, value, headers=[("h", b"1")])


def _values(records: list[Record]) -> list[bytes | None]:
    return [r.value for r in records]


async def test_send_appends_records_with_offsets_and_headers(transport: MemoryTransport) -> None:
    await transport.send("t", b"a", headers=[("x", b"1")], key=b"k")
    await transport.send("t", b"b", headers=[])
    log = transport.broker.log("t")[0]
    assert [(r.offset, r.value, r.key) for r in log] == [(0, b"a", b"k"), (1, b"b", None)]
    assert log[0].headers == (("x", b"1"),)
    assert log[0].topic == "t"
    assert log[0].partition == 0


async def test_partition_count(transport: MemoryTransport) -> None:
    assert await transport.partition_count("t") == 1
    assert await transport.partition_count("wide") == 4


async def test_unknown_topic_is_refused(transport: MemoryTransport) -> None:
    with pytest.raises(BrokerRefused):
        await transport.send("missing", b"x", headers=[])
    with pytest.raises(BrokerRefused):
        await transport.partition_count("missing")


async def test_partition_out_of_range_is_refused(transport: MemoryTransport) -> None:
    with pytest.raises(BrokerRefused):
        await transport.send("wide", b"x", headers=[], partition=4)
    with pytest.raises(BrokerRefused):
        await transport.send("wide", b"x", headers=[], partition=-1)


async def test_explicit_partition(transport: MemoryTransport) -> None:
    await transport.send("wide", b"x", headers=[], partition=2)
    assert [len(p) for p in transport.broker.log("wide")] == [0, 0, 1, 0]


async def test_same_key_same_partition(transport: MemoryTransport) -> None:
    for _ in range(5):
        await transport.send("wide", b"x", headers=[], key=b"customer-7")
    assert sorted(len(p) for p in transport.broker.log("wide")) == [0, 0, 0, 5]


async def test_keyless_records_spread_over_partitions(transport: MemoryTransport) -> None:
    for _ in range(8):
        await transport.send("wide", b"x", headers=[])
    assert [len(p) for p in transport.broker.log("wide")] == [2, 2, 2, 2]


def test_create_topic_is_idempotent() -> None:
    broker = MemoryBroker()
    broker.create_topic("t", partitions=2)
    broker.append("t", 0, None, b"kept", [])
    broker.create_topic("t", partitions=5)
    assert len(broker.log("t")) == 2
    assert broker.log("t")[0][0].value == b"kept"


# --- assigned readers ----------------------------------------------------------------------


async def test_assigned_reader_starts_at_the_end(transport: MemoryTransport) -> None:
    await _send(transport, b"old-1", b"old-2")
    reader = transport.assigned_reader("t", 0)
    await reader.start()
    await _send(transport, b"new")
    records = await reader.read(5.0)
    assert _values(records) == [b"new"]
    assert records[0].offset == 2
    await reader.stop()


async def test_assigned_reader_read_times_out_empty(transport: MemoryTransport) -> None:
    reader = transport.assigned_reader("t", 0)
    await reader.start()
    assert await reader.read(0.01) == []


async def test_assigned_reader_wakes_up_on_append(transport: MemoryTransport) -> None:
    reader = transport.assigned_reader("t", 0)
    await reader.start()
    pending = asyncio.create_task(reader.read(60.0))
    await asyncio.sleep(0)  # let the read start waiting
    await _send(transport, b"x")
    records = await asyncio.wait_for(pending, 5.0)
    assert _values(records) == [b"x"]


async def test_assigned_reader_respects_max_records(transport: MemoryTransport) -> None:
    reader = transport.assigned_reader("t", 0)
    await reader.start()
    await _send(transport, b"1", b"2", b"3")
    assert _values(await reader.read(1.0, max_records=2)) == [b"1", b"2"]
    assert _values(await reader.read(1.0, max_records=2)) == [b"3"]


async def test_independent_assigned_readers_each_see_everything(
    transport: MemoryTransport,
) -> None:
    first = transport.assigned_reader("t", 0)
    second = transport.assigned_reader("t", 0)
    await first.start()
    await second.start()
    await _send(transport, b"x", b"y")
    assert _values(await first.read(1.0)) == [b"x", b"y"]
    assert _values(await second.read(1.0)) == [b"x", b"y"]


# --- group readers -------------------------------------------------------------------------


async def test_group_reader_starts_at_the_beginning(transport: MemoryTransport) -> None:
    await _send(transport, b"a", b"b")
    reader = transport.group_reader(["t"], "g")
    await reader.start()
    assert _values(await reader.read(1.0)) == [b"a", b"b"]


async def test_group_members_share_a_cursor(transport: MemoryTransport) -> None:
    await _send(transport, b"0", b"1", b"2", b"3", b"4")
    first = transport.group_reader(["t"], "g")
    second = transport.group_reader(["t"], "g")
    await first.start()
    await second.start()
    got_first = await first.read(1.0, max_records=2)
    got_second = await second.read(1.0, max_records=2)
    got_rest = await first.read(1.0)
    assert _values(got_first) == [b"0", b"1"]
    assert _values(got_second) == [b"2", b"3"]
    assert _values(got_rest) == [b"4"]
    assert await second.read(0.01) == []


async def test_different_groups_each_get_every_record(transport: MemoryTransport) -> None:
    await _send(transport, b"a", b"b")
    one = transport.group_reader(["t"], "g1")
    two = transport.group_reader(["t"], "g2")
    await one.start()
    await two.start()
    assert _values(await one.read(1.0)) == [b"a", b"b"]
    assert _values(await two.read(1.0)) == [b"a", b"b"]


async def test_group_reader_reads_all_partitions_of_all_topics(transport: MemoryTransport) -> None:
    for partition in range(4):
        await transport.send("wide", f"w{partition}".encode(), headers=[], partition=partition)
    await _send(transport, b"t0")
    reader = transport.group_reader(["t", "wide"], "g")
    await reader.start()
    records = await reader.read(1.0)
    assert sorted(v for v in _values(records) if v) == [b"t0", b"w0", b"w1", b"w2", b"w3"]


async def test_uncommitted_records_are_handed_out_again_after_stop(
    transport: MemoryTransport,
) -> None:
    await _send(transport, b"0", b"1", b"2", b"3")
    reader = transport.group_reader(["t"], "g")
    await reader.start()
    records = await reader.read(1.0)
    assert _values(records) == [b"0", b"1", b"2", b"3"]
    await reader.commit(records[:2])
    assert transport.broker.committed("g", "t", 0) == 2
    await reader.stop()

    successor = transport.group_reader(["t"], "g")
    await successor.start()
    assert _values(await successor.read(1.0)) == [b"2", b"3"]


async def test_committed_records_are_not_handed_out_again(transport: MemoryTransport) -> None:
    await _send(transport, b"0", b"1")
    reader = transport.group_reader(["t"], "g")
    await reader.start()
    await reader.commit(await reader.read(1.0))
    await reader.stop()
    successor = transport.group_reader(["t"], "g")
    await successor.start()
    assert await successor.read(0.01) == []
    await _send(transport, b"2")
    assert _values(await successor.read(1.0)) == [b"2"]


async def test_commit_never_moves_backwards(transport: MemoryTransport) -> None:
    await _send(transport, b"0", b"1", b"2")
    reader = transport.group_reader(["t"], "g")
    await reader.start()
    records = await reader.read(1.0)
    await reader.commit(records)
    await reader.commit(records[:1])
    assert transport.broker.committed("g", "t", 0) == 3


async def test_group_reader_wakes_up_on_append(transport: MemoryTransport) -> None:
    reader = transport.group_reader(["t"], "g")
    await reader.start()
    pending = asyncio.create_task(reader.read(60.0))
    await asyncio.sleep(0)  # let the read start waiting
    await _send(transport, b"x")
    assert _values(await asyncio.wait_for(pending, 5.0)) == [b"x"]



async def test_only_the_appended_topics_readers_wake(transport: MemoryTransport) -> None:
    broker = transport.broker
    reader = transport.group_reader(["t"], "g")
    await reader.start()
    pending = asyncio.create_task(reader.read(60.0))
    anywhere = asyncio.create_task(broker.wait_for_change(60.0))
    await asyncio.sleep(0)  # both waiting
    await _send(transport, b"elsewhere", topic="wide")
    await asyncio.wait_for(anywhere, 5.0)  # a wait for any topic wakes
    await asyncio.sleep(0.01)
    assert not pending.done()  # the reader of "t" does not
    await _send(transport, b"x")
    assert _values(await asyncio.wait_for(pending, 5.0)) == [b"x"]


async def test_waits_time_out_and_leave_no_waiter_behind(transport: MemoryTransport) -> None:
    broker = transport.broker
    await asyncio.wait_for(broker.wait_for_change(0.01, ["t", "wide"]), 5.0)
    woken = asyncio.create_task(broker.wait_for_change(60.0, ["t"]))
    cancelled = asyncio.create_task(broker.wait_for_change(60.0, ["wide"]))
    await asyncio.sleep(0)
    await _send(transport, b"x")
    await asyncio.wait_for(woken, 5.0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert broker._waiters == {}
