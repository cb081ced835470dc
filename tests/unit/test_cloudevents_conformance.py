"""Mesh records are CloudEvents 1.0 in the Kafka binding's binary mode, as the CloudEvents
Python SDK reads them (no broker here: the same check on records read back from the real
broker is tests/integration/test_cloudevents_conformance.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from cloudevents.v1.kafka import KafkaMessage as V1KafkaMessage
from cloudevents.v1.kafka import from_binary as v1_from_binary
from hypothesis import given
from hypothesis import strategies as st

from bus.envelope import (
    KIND_EVENT,
    Envelope,
    from_record,
    new_request,
    reply_for,
    to_headers,
)
from bus.envelope import ReplyTo as Reply
from bus.wire_time import MAX_MS, MIN_MS, format_ms, parse_ms

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
MESSAGES = json.loads((VECTORS / "messages.json").read_text())["messages"]
CORE = {"specversion", "id", "source", "type", "time", "datacontenttype"}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def at(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def sdk_event(headers: list[tuple[str, bytes]], key: bytes | None, value: bytes) -> CloudEvent:
    event = from_binary(KafkaMessage(dict(headers), key, value), JSONFormat(), CloudEvent)
    assert isinstance(event, CloudEvent)
    return event


def assert_conforms(envelope: Envelope, key: bytes | None, data: Any) -> None:
    """What an SDK sees in the record the mesh writes for ``envelope``."""
    headers = to_headers(envelope)
    event = sdk_event(headers, key, envelope.value)
    assert event.get_specversion() == "1.0"
    assert event.get_id() == envelope.id
    assert event.get_source() == envelope.source
    assert event.get_type() == envelope.type
    assert event.get_time() == at(envelope.time_ms)
    assert event.get_datacontenttype() == "application/json"
    assert event.get_data() == data
    # No extension attribute but the SDK's own reading of the record key.
    assert set(event.get_attributes()) == CORE | ({"partitionkey"} if key is not None else set())
    # The older SDK API reads the same.
    legacy = v1_from_binary(V1KafkaMessage(dict(headers), key, envelope.value))
    assert legacy["specversion"] == "1.0"
    assert legacy["time"] == format_ms(envelope.time_ms)
    assert legacy.data == data


def test_a_request_a_reply_an_error_and_an_event_conform() -> None:
    request = new_request(source="gateway", operation="orders.create", value=b'{"a":1}',
                          reply_to=Reply("mesh.replies", 2), deadline_ms=10**13)
    assert_conforms(request, (request.correlation_id or "").encode(), {"a": 1})
    reply = reply_for(request, source="orders", value=b'{"ok":true}')
    assert_conforms(reply, None, {"ok": True})
    error = reply_for(request, source="orders",
                      value=b'{"code":"x","message":"m","retriable":false}', error=True)
    assert_conforms(error, None, {"code": "x", "message": "m", "retriable": False})
    event = Envelope(id="e1", source="orders", type="orders.created", kind=KIND_EVENT,
                     value=b'{"order_id":"o-1"}', time_ms=request.time_ms)
    assert_conforms(event, b"o-1", {"order_id": "o-1"})


@pytest.mark.parametrize("vector", MESSAGES, ids=lambda v: v["name"])
def test_every_vector_is_a_cloudevent(vector: dict[str, Any]) -> None:
    headers = [(name, text.encode()) for name, text in vector["headers"]]
    key = None if vector["key"] is None else vector["key"].encode()
    event = sdk_event(headers, key, vector["value"].encode())
    envelope = from_record(headers, vector["value"].encode())
    assert (event.get_id(), event.get_source(), event.get_type()) == (
        envelope.id, envelope.source, envelope.type)
    assert event.get_time() == at(envelope.time_ms)
    assert event.get_data() == json.loads(vector["value"])


@pytest.mark.parametrize("ms", [0, 1, 999, 1_767_225_600_123, 951_782_400_000,  # 2000-02-29
                                -62_135_596_800_000, 253_402_300_799_999, -1])
def test_wire_time_round_trips_and_agrees_with_the_standard_library(ms: int) -> None:
    text = format_ms(ms)
    assert len(text) == 24
    assert parse_ms(text) == ms
    expected = at(ms)
    assert text == expected.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert datetime.fromisoformat(text) == expected


@pytest.mark.parametrize("ms", [-62_135_596_800_001, 253_402_300_800_000])
def test_wire_time_refuses_years_outside_0001_to_9999(ms: int) -> None:
    with pytest.raises(ValueError, match="0001-9999"):
        format_ms(ms)


@given(st.integers(min_value=MIN_MS, max_value=MAX_MS))
def test_every_instant_has_one_text_and_back(ms: int) -> None:
    text = format_ms(ms)
    assert parse_ms(text) == ms
    assert datetime.fromisoformat(text) == at(ms)


@given(st.text(alphabet="0123456789-T:.Z+z \u0664", min_size=23, max_size=25))
def test_parse_accepts_exactly_the_texts_format_writes(text: str) -> None:
    try:
        ms = parse_ms(text)
    except ValueError:
        return
    assert format_ms(ms) == text


@given(st.integers(min_value=MIN_MS, max_value=MAX_MS), st.integers(0, 23),
       st.sampled_from("0123456789-T:.Z+z \u0664"))
def test_one_character_changed_is_another_instant_or_refused(ms: int, at_index: int,
                                                            char: str) -> None:
    text = format_ms(ms)
    changed = text[:at_index] + char + text[at_index + 1:]
    try:
        parsed = parse_ms(changed)
    except ValueError:
        return
    assert format_ms(parsed) == changed
    assert (parsed == ms) == (changed == text)
