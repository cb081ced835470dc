"""What the librdkafka reader makes of what librdkafka hands over (pure): records with their
headers as bytes, errors as the bus's, none lost when an error comes with records. The
reader itself runs on the real broker (tests/contract, params rdkafka and rdkafka-sasl)."""

from __future__ import annotations

from confluent_kafka import KafkaError, Message

from bus.errors import BrokerRefused, TransportError
from bus.transport import Record
from bus.transport.rdkafka_reader import sort_out


def message(offset: int, **extra: object) -> Message:
    return Message(topic="t", partition=1, offset=offset, key=b"k", value=b"v%d" % offset,
                   **extra)  # type: ignore[arg-type]


def error(code: int) -> Message:
    return Message(error=KafkaError(code))


def test_records_keep_order_fields_and_headers_as_bytes() -> None:
    got, failed = sort_out([message(3, headers=[("a", b"1"), ("b", None), ("a", "2")]),
                            message(4)], assigned=False)
    assert failed is None
    assert got == [Record("t", 1, 3, b"v3", b"k", (("a", b"1"), ("b", b""), ("a", b"2"))),
                   Record("t", 1, 4, b"v4", b"k", ())]


def test_an_error_among_records_loses_none_of_them() -> None:
    got, failed = sort_out([error(KafkaError.TOPIC_AUTHORIZATION_FAILED), message(0),
                            error(KafkaError.NOT_LEADER_FOR_PARTITION), message(1)],
                           assigned=False)
    assert [r.offset for r in got] == [0, 1]
    assert isinstance(failed, BrokerRefused)  # the first one, not retriable
    assert "TOPIC_AUTHORIZATION_FAILED" in str(failed)


def test_a_retriable_error_is_a_transport_error() -> None:
    got, failed = sort_out([error(KafkaError.NOT_LEADER_FOR_PARTITION)], assigned=False)
    assert got == []
    assert type(failed) is TransportError
    assert failed.retriable


def test_end_of_partition_is_no_error_and_an_assigned_readers_group_is_ignored() -> None:
    group_refused = error(KafkaError.GROUP_AUTHORIZATION_FAILED)
    assert sort_out([error(KafkaError._PARTITION_EOF), group_refused],
                    assigned=True) == ([], None)
    _, failed = sort_out([group_refused], assigned=False)  # a group member needs its group
    assert isinstance(failed, BrokerRefused)
