"""bus.envelope's hot-path shortcuts (issue 15) behave like what they replace: the
hand-written ``Envelope.__init__`` is the dataclass's, the copies are ``dataclasses.replace``,
``new_id`` is ``uuid.uuid4().hex``, a cached ``ReplyTo`` parse is a parse."""

from __future__ import annotations

import dataclasses
import inspect
import uuid
from typing import Any

import pytest

from bus.envelope import KIND_REPLY, Envelope, ReplyTo, new_id, new_request
from bus.errors import EnvelopeError


def sample() -> Envelope:
    return new_request(source="caller", operation="echo.echo", value=b"{}",
                       reply_to=ReplyTo("mesh.replies", 3), deadline_ms=2_000,
                       traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                       at_ms=1_000)


def test_init_takes_the_fields_in_order_with_their_defaults() -> None:
    params = list(inspect.signature(Envelope.__init__).parameters.values())[1:]
    fields = dataclasses.fields(Envelope)
    assert [p.name for p in params] == [f.name for f in fields]
    for param, field in zip(params, fields, strict=True):
        default = field.default
        expected = inspect.Parameter.empty if default is dataclasses.MISSING else default
        assert param.default == expected, field.name


def test_init_stores_every_argument_and_stays_frozen() -> None:
    values = {f.name: f"v{i}" for i, f in enumerate(dataclasses.fields(Envelope))}
    envelope = Envelope(**values)  # type: ignore[arg-type]
    assert dataclasses.asdict(envelope) == values
    with pytest.raises(dataclasses.FrozenInstanceError):
        envelope.id = "other"  # type: ignore[misc]
    assert envelope == Envelope(**values)  # type: ignore[arg-type]
    one = sample()
    assert hash(one) == hash(dataclasses.replace(one))


@pytest.mark.parametrize(("method", "field", "value"), [
    ("with_signature", "signature", "sig"),
    ("with_id", "id", "other-id"),
    ("with_time", "time_ms", 5),
])
def test_copies_equal_dataclasses_replace(method: str, field: str, value: Any) -> None:
    envelope = sample()
    copy = getattr(envelope, method)(value)
    assert copy == dataclasses.replace(envelope, **{field: value})
    assert getattr(envelope, field) != value  # the original is unchanged
    assert type(copy) is Envelope


def test_with_trace_and_with_time_return_the_envelope_when_nothing_changes() -> None:
    envelope = sample()
    assert envelope.with_trace(envelope.traceparent, envelope.tracestate) is envelope
    assert envelope.with_time(envelope.time_ms) is envelope
    traced = envelope.with_trace("00-1af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "a=b")
    assert traced == dataclasses.replace(
        envelope, traceparent="00-1af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        tracestate="a=b")


def test_dataclasses_replace_still_works() -> None:
    envelope = sample()
    reply = dataclasses.replace(envelope, kind=KIND_REPLY, reply_to=None)
    assert (reply.kind, reply.reply_to, reply.id) == (KIND_REPLY, None, envelope.id)


def test_new_id_is_a_uuid4_in_hex() -> None:
    ids = {new_id() for _ in range(2_000)}
    assert len(ids) == 2_000
    for text in ids:
        parsed = uuid.UUID(text)
        assert parsed.hex == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_new_request_takes_its_message_id() -> None:
    envelope = new_request(source="a", operation="b.c", value=b"", reply_to=ReplyTo("r", 0),
                           deadline_ms=1, correlation_id="call", message_id="call")
    assert (envelope.id, envelope.correlation_id) == ("call", "call")


def test_reply_to_parse_is_cached_and_refusals_are_not() -> None:
    assert ReplyTo.decode("mesh.replies:7") is ReplyTo.decode("mesh.replies:7")
    assert ReplyTo.decode("mesh.replies:7") == ReplyTo("mesh.replies", 7)
    for _ in range(2):
        with pytest.raises(EnvelopeError):
            ReplyTo.decode("mesh.replies:07")
