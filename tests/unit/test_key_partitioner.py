"""bus.transport.key_partitioner: the partition Kafka's own clients choose for a key."""

from __future__ import annotations

import random
import uuid

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from bus.transport.key_partitioner import KeyPartitioner, murmur2


def test_murmur2_is_aiokafkas_for_keys_of_every_length() -> None:
    rng = random.Random(15)
    for length in range(0, 300):  # every tail (0-3 bytes) and past the cached word counts
        for _ in range(4):
            data = rng.randbytes(length)
            assert murmur2(data) == aiokafka_murmur2(data), length


def test_murmur2_of_known_keys() -> None:
    """Values of Kafka's Java ``Utils.murmur2`` (as unsigned 32 bits)."""
    assert murmur2(b"21") == -973932308 & 0xFFFFFFFF
    assert murmur2(b"") == 275646681


@pytest.mark.parametrize("count", [1, 3, 6, 64])
def test_a_keyed_record_goes_where_aiokafkas_default_puts_it(count: int) -> None:
    partitions = list(range(count))
    ours, theirs = KeyPartitioner(), DefaultPartitioner()
    for _ in range(500):
        key = uuid.uuid4().hex.encode()
        assert ours(key, partitions, partitions[1:]) == theirs(key, partitions,
                                                               partitions[1:])


def test_an_unkeyed_record_goes_to_an_available_partition() -> None:
    ours = KeyPartitioner()
    assert {ours(None, [0, 1, 2, 3], [1, 3]) for _ in range(200)} == {1, 3}
    assert {ours(None, [0, 1], []) for _ in range(200)} == {0, 1}
