"""A producer whose idempotence state the broker lost (OutOfOrderSequenceNumber after a
broker restart, found by make chaos) is replaced: the failed send is a retriable
TransportError and the next send goes through a new producer."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.errors import OutOfOrderSequenceNumber, UnknownTopicOrPartitionError

from bus.config import BusSettings
from bus.errors import BrokerRefused, TransportError, is_retriable
from bus.transport.kafka import KafkaTransport
from bus.transport.partitions import TopicPartitions


class FakeProducer:
    def __init__(self, error: Exception | None) -> None:
        self.error = error
        self.sent = 0
        self.stopped = False

    async def send_and_wait(self, *args: Any, **kwargs: Any) -> None:
        if self.error is not None:
            raise self.error
        self.sent += 1

    async def stop(self) -> None:
        self.stopped = True


def transport_with(producer: FakeProducer, replacement: FakeProducer) -> KafkaTransport:
    transport = KafkaTransport(BusSettings(service_name="t"))

    async def one_partition(topic: str) -> frozenset[int]:
        return frozenset({0})

    transport._topics = TopicPartitions(one_partition)
    transport._producer = producer

    async def ready() -> Any:
        transport._producer = transport._producer or replacement
        return transport._producer

    transport._ready_producer = ready  # type: ignore[method-assign]
    return transport


async def test_a_producer_that_lost_its_sequence_is_replaced() -> None:
    broken, fresh = FakeProducer(OutOfOrderSequenceNumber()), FakeProducer(None)
    transport = transport_with(broken, fresh)
    with pytest.raises(TransportError) as failed:
        await transport.send("orders.requests", b"{}", headers=[])
    assert is_retriable(failed.value)
    assert broken.stopped
    await transport.send("orders.requests", b"{}", headers=[])
    assert fresh.sent == 1


async def test_other_refusals_keep_the_producer() -> None:
    refusing, fresh = FakeProducer(UnknownTopicOrPartitionError()), FakeProducer(None)
    transport = transport_with(refusing, fresh)
    with pytest.raises((TransportError, BrokerRefused)):
        await transport.send("orders.requests", b"{}", headers=[])
    assert not refusing.stopped
    assert transport._producer is refusing
