"""The Transport/Reader contract (bus.transport), on the in-memory broker and on real Kafka."""

from __future__ import annotations

import asyncio

import pytest

from bus.errors import BrokerRefused, MeshError
from bus.transport import Record
from tests.contract.conftest import (
    POLL_S,
    READ_TIMEOUT_S,
    Readers,
    Topics,
    TransportFactory,
    read_count,
    read_until,
    unique,
    values,
)

HEADERS = [("ce_id", b"id-1"), ("binary", b"\x00\xff\x10"), ("twice", b"a"), ("twice", b"b")]


# --- sending and receiving -----------------------------------------------------------------


async def test_sent_record_reaches_a_group_reader_intact(
    transport_factory: TransportFactory, topics: Topics, readers: Readers
) -> None:
    topic = await topics.create(partitions=2)
    transport = transport_factory()
    await transport.send(topic, b"with-key", headers=HEADERS, key=b"key-1", partition=1)
    await transport.send(topic, b"bare", headers=[], partition=0)

    reader = await readers.start(transport_factory().group_reader([topic], unique("g")))
    got = {record.value: record for record in await read_count(reader, 2)}

    assert set(got) == {b"with-key", b"bare"}
    keyed, bare = got[b"with-key"], got[b"bare"]
    assert (keyed.topic, keyed.partition, keyed.offset) == (topic, 1, 0)
    assert keyed.key == b"key-1"
    assert list(keyed.headers) == HEADERS  # order, duplicates and binary values kept
    assert (bare.topic, bare.partition, bare.offset) == (topic, 0, 0)
    assert bare.key is None
    assert list(bare.headers) == []


async def test_each_group_gets_every_record(
    transport_factory: TransportFactory, topics: Topics, readers: Readers
) -> None:
    topic = await topics.create()
    transport = transport_factory()
    for value in (b"a", b"b"):
        await transport.send(topic, value, headers=[])
    one = await readers.start(transport.group_reader([topic], unique("g")))
    two = await readers.start(transport.group_reader([topic], unique("g")))
    assert values(await read_count(one, 2)) == [b"a", b"b"]
    assert values(await read_count(two, 2)) == [b"a", b"b"]


async def test_partition_count(transport_factory: TransportFactory, topics: Topics) -> None:
    transport = transport_factory()
    assert await transport.partition_count(await topics.create(partitions=3)) == 3
    assert await transport.partition_count(await topics.create(partitions=1)) == 1


# --- assigned readers ----------------------------------------------------------------------


async def test_assigned_reader_starts_at_the_end(
    transport_factory: TransportFactory, topics: Topics, readers: Readers
) -> None:
    topic = await topics.create(partitions=2)
    transport = transport_factory()
    for value in (b"old-1", b"old-2"):
        await transport.send(topic, value, headers=[], partition=1)
    reader = await readers.start(transport_factory().assigned_reader(topic, 1))
    await transport.send(topic, b"other-partition", headers=[], partition=0)
    await transport.send(topic, b"new", headers=[], partition=1)

    records = await read_count(reader, 1)
    assert values(records) == [b"new"]  # nothing from before start(), nothing from partition 0
    assert (records[0].partition, records[0].offset) == (1, 2)


async def test_assigned_reader_from_beginning_reads_old_records(
    transport_factory: TransportFactory, topics: Topics, readers: Readers
) -> None:
    topic = await topics.create()
    transport = transport_factory()
    for value in (b"old-1", b"old-2"):
        await transport.send(topic, value, headers=[])
    reader = await readers.start(
        transport_factory().assigned_reader(topic, 0, from_beginning=True)
    )
    assert values(await read_count(reader, 2)) == [b"old-1", b"old-2"]
    await transport.send(topic, b"new", headers=[])
    assert values(await read_count(reader, 1)) == [b"new"]


# --- consumer groups -----------------------------------------------------------------------


async def test_group_members_share_the_work(
    transport_factory: TransportFactory, topics: Topics, readers: Readers
) -> None:
    topic = await topics.create(partitions=2)
    group = unique("g")
    first = await readers.start(transport_factory("member-a").group_reader([topic], group))
    second = await readers.start(transport_factory("member-b").group_reader([topic], group))
    await transport_factory.settle_group(group, members=2)  # no rebalance while we read

    sent = [f"r{i}".encode() for i in range(20)]
    transport = transport_factory()
    for i, value in enumerate(sent):
        await transport.send(topic, value, headers=[], partition=i % 2)

    got: dict[str, list[Record]] = {"first": [], "second": []}
    try:
        async with asyncio.timeout(READ_TIMEOUT_S):
            while sum(map(len, got.values())) < len(sent):
                for name, reader in (("first", first), ("second", second)):
                    batch = await reader.read(POLL_S, max_records=5)
                    await reader.commit(batch)
                    got[name].extend(batch)
    except TimeoutError:
        raise AssertionError(f"not every record was read: {got}") from None

    assert got["first"], "the first member got nothing"
    assert got["second"], "the second member got nothing"
    everything = values(got["first"]) + values(got["second"])
    assert sorted(v or b"" for v in everything) == sorted(sent)  # each exactly once


async def test_uncommitted_records_go_to_the_next_member(
    transport_factory: TransportFactory, topics: Topics, readers: Readers
) -> None:
    topic = await topics.create()
    group = unique("g")
    transport = transport_factory()
    for value in (b"0", b"1", b"2", b"3"):
        await transport.send(topic, value, headers=[])

    first = await readers.start(transport_factory("member-a").group_reader([topic], group))
    records = await read_count(first, 4)
    assert values(records) == [b"0", b"1", b"2", b"3"]
    await first.commit(records[:2])
    second = await readers.start(transport_factory("member-b").group_reader([topic], group))
    await first.stop()  # Kafka: leaves the group; the partition moves to the second member

    assert values(await read_count(second, 2)) == [b"2", b"3"]


async def test_committed_records_are_not_redelivered(
    transport_factory: TransportFactory, topics: Topics, readers: Readers
) -> None:
    topic = await topics.create()
    group = unique("g")
    transport = transport_factory()
    for value in (b"0", b"1"):
        await transport.send(topic, value, headers=[])
    first = await readers.start(transport_factory("member-a").group_reader([topic], group))
    await first.commit(await read_count(first, 2))
    await first.stop()

    second = await readers.start(transport_factory("member-b").group_reader([topic], group))
    await transport.send(topic, b"marker", headers=[])
    got = await read_until(second, lambda got: b"marker" in values(got))
    assert values(got) == [b"marker"]  # nothing committed came back before it


# --- refusals ------------------------------------------------------------------------------


async def test_send_to_missing_topic_raises_a_mesh_error(
    transport_factory: TransportFactory,
) -> None:
    with pytest.raises(MeshError):
        await transport_factory().send(unique("missing-"), b"x", headers=[])


async def test_send_to_missing_topic_is_refused_for_good(
    transport_factory: TransportFactory,
) -> None:
    with pytest.raises(BrokerRefused) as raised:
        await transport_factory().send(unique("missing-"), b"x", headers=[])
    assert raised.value.retriable is False


async def test_partition_count_of_missing_topic_is_refused(
    transport_factory: TransportFactory,
) -> None:
    with pytest.raises(BrokerRefused):
        await transport_factory().partition_count(unique("missing-"))


@pytest.mark.parametrize("partition", [2, -1])
async def test_send_to_missing_partition_is_refused(
    transport_factory: TransportFactory, topics: Topics, partition: int
) -> None:
    topic = await topics.create(partitions=2)
    with pytest.raises(BrokerRefused):
        await transport_factory().send(topic, b"x", headers=[], partition=partition)


async def test_assigned_reader_on_missing_partition_is_refused(
    transport_factory: TransportFactory, topics: Topics, readers: Readers
) -> None:
    topic = await topics.create(partitions=1)
    with pytest.raises(BrokerRefused):
        await readers.start(transport_factory().assigned_reader(topic, 3))


async def test_group_reader_on_missing_topic_is_refused(
    transport_factory: TransportFactory, readers: Readers
) -> None:
    with pytest.raises(BrokerRefused):
        await readers.start(transport_factory().group_reader([unique("missing-")], unique("g")))
