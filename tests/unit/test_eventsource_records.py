"""The Kafka event source mapping event parser, against recorded MSK and self-managed events."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from bus.envelope import KIND_REQUEST, from_record
from bus.runtime.eventsource.records import MalformedKafkaEvent, kafka_event, parse_event
from bus.transport import Record

EVENTS = Path(__file__).resolve().parent.parent / "events"


def recorded(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return event


def test_msk_batch_over_two_partitions() -> None:
    event = parse_event(recorded("msk_orders_create_batch"))
    assert event.kind == "msk"
    assert event.source.startswith("arn:aws:kafka:us-east-1:123456789012:cluster/meshgate-msk/")
    positions = [(r.record.topic, r.record.partition, r.record.offset) for r in event.records]
    assert positions == [("orders.requests", 0, 41), ("orders.requests", 0, 42),
                         ("orders.requests", 3, 7)]
    first = event.records[0]
    assert first.timestamp_ms == 1795750222090
    assert first.timestamp_type == "CREATE_TIME"
    assert first.record.key is not None
    assert event.records[2].record.key is None
    envelope = from_record(first.record.headers, first.record.value)
    assert envelope.kind == KIND_REQUEST
    assert envelope.type == "orders.create"
    assert envelope.reply_to is not None
    assert envelope.reply_to.encode() == "mesh.replies:5"
    assert first.record.key == (envelope.correlation_id or "").encode()
    assert json.loads(first.record.value or b"")["customer"] == "c1"


def test_self_managed_batch_over_three_partitions() -> None:
    event = parse_event(recorded("self_managed_orders_create_batch"))
    assert event.kind == "self_managed"
    assert event.source == "kafka-1.internal.example:9092,kafka-2.internal.example:9092"
    assert [r.topic_partition for r in event.records] == [
        "orders.requests-1", "orders.requests-2", "orders.requests-2", "orders.requests-5"]
    assert [r.record.offset for r in event.records] == [100, 5, 6, 0]
    assert event.records[3].timestamp_type == "LOG_APPEND_TIME"
    for item in event.records:
        assert from_record(item.record.headers, item.record.value).source == "gateway"


def test_plain_records_headers_and_missing_key_and_value() -> None:
    event = parse_event(recorded("self_managed_plain_records"))
    first, second = event.records
    assert first.record.key == b"recordKey"
    assert first.record.value == b'{"key":"value"}'
    assert list(first.record.headers) == [("headerKey", b"headerValue")]
    assert second.record.key is None
    assert second.record.value is None
    assert list(second.record.headers) == []


def test_partition_given_as_a_string_is_accepted() -> None:
    event = recorded("self_managed_plain_records")
    event["records"]["mytopic-0"][0]["partition"] = "0"
    assert parse_event(event).records[0].record.partition == 0


def test_building_an_event_round_trips() -> None:
    records = [Record("t", 1, 9, b"v1", b"k", (("a", b"\x00\xff"),)),
               Record("t", 0, 3, None, None, ()), Record("t", 1, 10, b"v2")]
    built = [kafka_event(records, bootstrap_servers="h:9092"),
             kafka_event(records, cluster_arn="arn:aws:kafka:x")]
    for original in built:
        event = json.loads(json.dumps(original))
        parsed = parse_event(event)
        by_position = {(r.topic, r.partition, r.offset): r for r in records}
        assert {(r.record.topic, r.record.partition, r.record.offset): r.record
                for r in parsed.records} == by_position
        assert len(parsed.records) == len(records)
    with pytest.raises(ValueError, match="exactly one"):
        kafka_event(records)


def _mutate(path: list[Any], value: Any) -> dict[str, Any]:
    event = copy.deepcopy(recorded("msk_orders_create_batch"))
    target: Any = event
    for step in path[:-1]:
        target = target[step]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return event


_DELETE = object()
FIRST = ["records", "orders.requests-0", 0]


@pytest.mark.parametrize(("path", "value", "says"), [
    (["eventSource"], "aws:sqs", "eventSource"),
    (["eventSourceArn"], _DELETE, "eventSourceArn"),
    (["records"], [], "topic-partition"),
    (["records", "orders.requests-0"], {}, "must be a list"),
    ([*FIRST, "topic"], "", "topic"),
    ([*FIRST, "topic"], "payments.requests", "is from 'payments.requests-0'"),
    ([*FIRST, "partition"], -1, "partition"),
    ([*FIRST, "partition"], True, "partition"),
    ([*FIRST, "offset"], 1.5, "offset"),
    ([*FIRST, "offset"], _DELETE, "offset"),
    ([*FIRST, "value"], "not base64!", "value is not valid base64"),
    ([*FIRST, "key"], 12, "key must be a base64 string"),
    ([*FIRST, "headers"], {"ce_id": [1]}, "headers must be a list"),
    ([*FIRST, "headers", 0], {"ce_id": [256]}, "list of bytes"),
    ([*FIRST, "headers", 0], {"ce_id": "abc"}, "list of bytes"),
    ([*FIRST, "headers", 0], "ce_id", "must be an object"),
    ([*FIRST, "timestamp"], "yesterday", "timestamp"),
    ([*FIRST, "timestampType"], "SOMETIME", "timestampType"),
])
def test_malformed_events_raise_one_clear_error(path: list[Any], value: Any, says: str) -> None:
    with pytest.raises(MalformedKafkaEvent) as caught:
        parse_event(_mutate(path, value))
    assert says in str(caught.value)
    assert caught.value.code == "malformed_kafka_event"
    assert not caught.value.retriable


def test_a_self_managed_event_needs_its_bootstrap_servers() -> None:
    event = recorded("self_managed_plain_records")
    del event["bootstrapServers"]
    with pytest.raises(MalformedKafkaEvent, match="bootstrapServers"):
        parse_event(event)


@pytest.mark.parametrize("event", [None, [], "records", 3])
def test_a_non_object_is_refused(event: object) -> None:
    with pytest.raises(MalformedKafkaEvent, match="JSON object"):
        parse_event(event)


def test_values_are_bytes_exactly() -> None:
    raw = bytes(range(256))
    event = kafka_event([Record("t", 0, 0, raw)], bootstrap_servers="h:1")
    assert event["records"]["t-0"][0]["value"] == base64.b64encode(raw).decode()
    assert parse_event(event).records[0].record.value == raw
