"""bus.envelope: headers <-> Envelope, and every way ``from_record`` refuses a record."""

from __future__ import annotations

import random
import string

import pytest

from bus.envelope import (
    H_ATTEMPT,
    H_CONTENT_TYPE,
    H_CORRELATION,
    H_DEADLINE,
    H_ID,
    H_KIND,
    H_REPLY_TO,
    H_SIGNATURE,
    H_SOURCE,
    H_SPECVERSION,
    H_TIME,
    H_TRACEPARENT,
    H_TRACESTATE,
    H_TYPE,
    KIND_ERROR,
    KIND_EVENT,
    KIND_REPLY,
    KIND_REQUEST,
    KINDS,
    MAX_HEADER_VALUE,
    Envelope,
    OldWireFormat,
    ReplyTo,
    from_record,
    new_request,
    reply_for,
    to_headers,
)
from bus.errors import EnvelopeError

HeaderList = list[tuple[str, bytes | None]]
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
ALL_KNOWN = (
    H_SPECVERSION, H_ID, H_SOURCE, H_TYPE, H_TIME, H_CORRELATION, H_REPLY_TO, H_DEADLINE,
    H_ATTEMPT, H_KIND, H_TRACEPARENT, H_TRACESTATE, H_SIGNATURE, H_CONTENT_TYPE,
)


def _request() -> Envelope:
    return new_request(
        source="gateway",
        operation="orders.create",
        value=b'{"customer":"alice"}',
        reply_to=ReplyTo("mesh.replies", 7),
        deadline_ms=1_700_000_010_000,
        traceparent=TRACEPARENT,
        at_ms=1_700_000_000_000,
    )


def _valid_request_headers() -> HeaderList:
    return [
        (H_SPECVERSION, b"1.0"),
        (H_ID, b"m1"),
        (H_SOURCE, b"gateway"),
        (H_TYPE, b"orders.create"),
        (H_TIME, b"2023-11-14T22:13:20.000Z"),
        (H_KIND, b"request"),
        (H_REPLY_TO, b"mesh.replies:3"),
        (H_CORRELATION, b"m1"),
        (H_DEADLINE, b"1700000010000"),
    ]


def _replace(headers: HeaderList, name: str, value: bytes | None) -> HeaderList:
    return [(n, value if n == name else v) for n, v in headers]


def _without(headers: HeaderList, name: str) -> HeaderList:
    return [(n, v) for n, v in headers if n != name]


# --- round trips ---------------------------------------------------------------------------


def test_request_round_trip() -> None:
    request = _request()
    parsed = from_record(to_headers(request), request.value)
    assert parsed == request
    assert parsed.kind == KIND_REQUEST
    assert parsed.reply_to == ReplyTo("mesh.replies", 7)
    assert parsed.correlation_id == request.id
    assert parsed.deadline_ms == 1_700_000_010_000
    assert parsed.time_ms == 1_700_000_000_000


def test_reply_round_trip_keeps_correlation_and_trace() -> None:
    request = _request()
    reply = reply_for(request, source="orders", value=b'{"ok":true}')
    parsed = from_record(to_headers(reply), reply.value)
    assert parsed == reply
    assert parsed.kind == KIND_REPLY
    assert parsed.correlation_id == request.id
    assert parsed.traceparent == TRACEPARENT
    assert parsed.type == "orders.create"
    assert parsed.reply_to is None


def test_error_reply_round_trip() -> None:
    request = _request()
    error = reply_for(request, source="orders", value=b'{"code":"x"}', error=True)
    parsed = from_record(to_headers(error), error.value)
    assert parsed == error
    assert parsed.kind == KIND_ERROR
    assert parsed.correlation_id == request.id


def test_event_round_trip_with_every_optional_field() -> None:
    event = Envelope(
        id="e1",
        source="orders",
        type="orders.created",
        kind=KIND_EVENT,
        value=b"\x00\xffbinary",
        time_ms=42,
        attempt=3,
        traceparent=TRACEPARENT,
        tracestate="vendor=1",
        signature="sig-abc",
        content_type="application/octet-stream",
        extra=(("x-custom", b"\xfe\x00"), ("x-other", b"")),
    )
    headers = to_headers(event)
    parsed = from_record(headers, event.value)
    assert parsed == event
    assert parsed.correlation_id is None
    assert parsed.reply_to is None
    assert parsed.deadline_ms is None


def test_to_headers_omits_unset_optional_headers() -> None:
    event = Envelope(id="e", source="s", type="a.b", kind=KIND_EVENT, value=b"", time_ms=1)
    names = [name for name, _ in to_headers(event)]
    assert set(names) == {H_SPECVERSION, H_ID, H_SOURCE, H_TYPE, H_TIME, H_KIND, H_ATTEMPT,
                          H_CONTENT_TYPE}
    assert len(names) == len(set(names))


def test_header_order_does_not_matter() -> None:
    request = _request()
    headers = to_headers(request)
    random.Random(7).shuffle(headers)
    assert from_record(headers, request.value) == request


def test_missing_value_becomes_empty_bytes() -> None:
    assert from_record(_valid_request_headers(), None).value == b""


def test_defaults_for_absent_attempt_and_content_type() -> None:
    parsed = from_record(_valid_request_headers(), b"{}")
    assert parsed.attempt == 1
    assert parsed.content_type == "application/json"


def test_unknown_headers_are_kept_as_extra() -> None:
    headers = [*_valid_request_headers(), ("x-tenant", b"t1")]
    assert from_record(headers, b"").extra == (("x-tenant", b"t1"),)


def test_new_request_correlates_with_its_own_id() -> None:
    request = _request()
    assert request.correlation_id == request.id
    assert request.kind == KIND_REQUEST
    assert _request().id != request.id


def test_reply_for_uses_request_id_when_no_correlation_id() -> None:
    request = Envelope(
        id="r1", source="s", type="a.b", kind=KIND_REQUEST, value=b"", time_ms=1,
        reply_to=ReplyTo("t", 0),
    )
    assert reply_for(request, source="svc", value=b"").correlation_id == "r1"


def test_with_signature_returns_a_signed_copy() -> None:
    request = _request()
    signed = request.with_signature("s1")
    assert signed.signature == "s1"
    assert request.signature is None
    assert from_record(to_headers(signed), signed.value).signature == "s1"


# --- ReplyTo -------------------------------------------------------------------------------


def test_reply_to_round_trip_with_colon_in_topic() -> None:
    assert ReplyTo.decode(ReplyTo("a:b", 12).encode()) == ReplyTo("a:b", 12)


@pytest.mark.parametrize("text", ["", "topic", "topic:", ":3", "topic:-1", "topic:x", "t:1.5"])
def test_reply_to_decode_refuses(text: str) -> None:
    with pytest.raises(EnvelopeError):
        ReplyTo.decode(text)


# --- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [H_SPECVERSION, H_ID, H_SOURCE, H_TYPE, H_TIME, H_KIND])
def test_missing_required_header(name: str) -> None:
    with pytest.raises(EnvelopeError, match="missing headers"):
        from_record(_without(_valid_request_headers(), name), b"")


@pytest.mark.parametrize("name", [H_SPECVERSION, H_ID, H_SOURCE, H_TYPE, H_TIME, H_KIND])
def test_empty_required_header_counts_as_missing(name: str) -> None:
    with pytest.raises(EnvelopeError, match="missing headers"):
        from_record(_replace(_valid_request_headers(), name, b""), b"")


@pytest.mark.parametrize("name", [H_ID, H_KIND, H_REPLY_TO, H_TRACEPARENT, H_CONTENT_TYPE])
def test_duplicate_known_header(name: str) -> None:
    headers = [*_without(_valid_request_headers(), name), (name, b"dup1"), (name, b"dup1")]
    with pytest.raises(EnvelopeError, match="twice"):
        from_record(headers, b"")


def test_duplicate_unknown_header_is_allowed() -> None:
    headers = [*_valid_request_headers(), ("x-a", b"1"), ("x-a", b"2")]
    assert from_record(headers, b"").extra == (("x-a", b"1"), ("x-a", b"2"))


@pytest.mark.parametrize("name", [H_ID, H_SOURCE, H_TRACEPARENT, H_CORRELATION])
def test_non_utf8_header(name: str) -> None:
    headers = [*_valid_request_headers(), (H_TRACEPARENT, TRACEPARENT.encode())]
    with pytest.raises(EnvelopeError, match="UTF-8"):
        from_record(_replace(headers, name, b"\xff\xfe"), b"")


def test_oversized_header_value() -> None:
    headers = _replace(_valid_request_headers(), H_SOURCE, b"s" * (MAX_HEADER_VALUE + 1))
    with pytest.raises(EnvelopeError, match="bytes"):
        from_record(headers, b"")


def test_header_value_at_the_limit_is_accepted() -> None:
    headers = _replace(_valid_request_headers(), H_SOURCE, b"s" * MAX_HEADER_VALUE)
    assert from_record(headers, b"").source == "s" * MAX_HEADER_VALUE


@pytest.mark.parametrize("kind", [b"REQUEST", b"command", b" reply", b"events"])
def test_bad_kind(kind: bytes) -> None:
    with pytest.raises(EnvelopeError, match=H_KIND):
        from_record(_replace(_valid_request_headers(), H_KIND, kind), b"")


@pytest.mark.parametrize("attempt", [b"0", b"-1", b"one", b"1.0", b" 1", b""])
def test_bad_attempt(attempt: bytes) -> None:
    with pytest.raises(EnvelopeError, match=H_ATTEMPT):
        from_record([*_valid_request_headers(), (H_ATTEMPT, attempt)], b"")


def test_request_without_reply_to() -> None:
    with pytest.raises(EnvelopeError, match=H_REPLY_TO):
        from_record(_without(_valid_request_headers(), H_REPLY_TO), b"")


@pytest.mark.parametrize("reply_to", [b"no-partition", b"t:", b":1", b"t:x", b"t:-2", b""])
def test_request_with_bad_reply_to(reply_to: bytes) -> None:
    with pytest.raises(EnvelopeError, match=H_REPLY_TO):
        from_record(_replace(_valid_request_headers(), H_REPLY_TO, reply_to), b"")


def test_event_with_bad_reply_to_is_refused_too() -> None:
    headers = _replace(_valid_request_headers(), H_KIND, b"event")
    with pytest.raises(EnvelopeError, match=H_REPLY_TO):
        from_record(_replace(headers, H_REPLY_TO, b"nonsense"), b"")


@pytest.mark.parametrize("kind", [b"reply", b"error"])
def test_reply_without_correlation_id(kind: bytes) -> None:
    headers = _replace(_without(_valid_request_headers(), H_REPLY_TO), H_KIND, kind)
    with pytest.raises(EnvelopeError, match=H_CORRELATION):
        from_record(_without(headers, H_CORRELATION), b"")
    with pytest.raises(EnvelopeError, match=H_CORRELATION):
        from_record(_replace(headers, H_CORRELATION, b""), b"")


@pytest.mark.parametrize("bad", [b"soon", b"1.5", b"1e3", b"-", b" 12", b"0x10"])
@pytest.mark.parametrize("name", [H_DEADLINE])
def test_non_integer_time_or_deadline(name: str, bad: bytes) -> None:
    with pytest.raises(EnvelopeError, match=name):
        from_record(_replace(_valid_request_headers(), name, bad), b"")


@pytest.mark.parametrize("bad", [
    b"1700000000000",  # epoch ms, the old wire format
    b"2023-11-14T22:13:20Z",  # RFC 3339, but not the fixed width: no milliseconds
    b"2023-11-14T22:13:20.000000Z",
    b"2023-11-14T22:13:20.000+00:00",
    b"2023-11-14t22:13:20.000z",
    b"2023-11-14 22:13:20.000Z",
    b"2023-02-29T22:13:20.000Z",  # not a calendar date
    b"2023-13-01T00:00:00.000Z",
    b"0000-01-01T00:00:00.000Z",
    b"2023-11-14T24:00:00.000Z",
    b"2023-11-14T23:59:60.000Z",  # leap seconds are not sent
    "2023-11-14T22:13:2\u0664.000Z".encode(),  # a non-ASCII digit
    b"+023-11-14T22:13:20.000Z",
])
def test_time_must_be_fixed_width_rfc3339(bad: bytes) -> None:
    with pytest.raises(EnvelopeError, match=H_TIME):
        from_record(_replace(_valid_request_headers(), H_TIME, bad), b"")


def test_time_parses_to_epoch_ms() -> None:
    headers = _replace(_valid_request_headers(), H_TIME, b"1970-01-01T00:00:00.001Z")
    assert from_record(headers, b"").time_ms == 1
    assert from_record(_valid_request_headers(), b"").time_ms == 1_700_000_000_000


@pytest.mark.parametrize("version", [b"1.1", b"0.3", b"1.0 ", b"1"])
def test_other_specversions_are_refused(version: bytes) -> None:
    with pytest.raises(EnvelopeError, match=H_SPECVERSION):
        from_record(_replace(_valid_request_headers(), H_SPECVERSION, version), b"")


def test_a_v3_record_is_refused_as_the_old_wire_format() -> None:
    """Epoch-ms ce_time and no ce_specversion: what meshgate-sig-v3 senders send."""
    v3 = _replace(_without(_valid_request_headers(), H_SPECVERSION), H_TIME, b"1700000000000")
    with pytest.raises(OldWireFormat, match="deploy every service") as caught:
        from_record(v3, b"")
    assert caught.value.code == "old_wire_format"


@pytest.mark.parametrize(("name", "text"), [
    (H_DEADLINE, b"01700000010000"), (H_DEADLINE, b"-0"), (H_DEADLINE, b"-01"),
    (H_DEADLINE, b"00"), (H_REPLY_TO, b"mesh.replies:03"), (H_REPLY_TO, b"mesh.replies:00"),
])
def test_signed_integers_have_one_spelling(name: str, text: bytes) -> None:
    """The signature covers the text as sent, the receiver the parsed integer: a respelled
    copy (same integer, other text) would verify if the parser accepted it."""
    with pytest.raises(EnvelopeError, match=name):
        from_record(_replace(_valid_request_headers(), name, text), b"")


@pytest.mark.parametrize("attempt", [b"01", b"-0", b"00"])
def test_attempt_has_one_spelling(attempt: bytes) -> None:
    with pytest.raises(EnvelopeError, match=H_ATTEMPT):
        from_record([*_valid_request_headers(), (H_ATTEMPT, attempt)], b"")


def test_zero_is_spelled_zero() -> None:
    headers = _replace(_replace(_valid_request_headers(), H_DEADLINE, b"0"), H_REPLY_TO,
                       b"mesh.replies:0")
    parsed = from_record(headers, b"")
    assert parsed.deadline_ms == 0
    assert parsed.reply_to == ReplyTo("mesh.replies", 0)


def test_negative_integers_parse() -> None:
    headers = _replace(_valid_request_headers(), H_DEADLINE, b"-5")
    assert from_record(headers, b"").deadline_ms == -5


@pytest.mark.parametrize("name", [H_ID, H_TRACEPARENT, "x-custom"])
def test_header_with_none_value(name: str) -> None:
    with pytest.raises(EnvelopeError):
        from_record([*_valid_request_headers(), (name, None)], b"")


def test_double_minus_integer_raises_envelope_error() -> None:
    with pytest.raises(EnvelopeError):
        from_record(_replace(_valid_request_headers(), H_TIME, b"--5"), b"")


def test_superscript_digit_attempt_raises_envelope_error() -> None:
    headers = [*_valid_request_headers(), (H_ATTEMPT, "\u00b2".encode())]
    with pytest.raises(EnvelopeError):
        from_record(headers, b"")


def test_superscript_digit_reply_partition_raises_envelope_error() -> None:
    headers = _replace(_valid_request_headers(), H_REPLY_TO, "t:\u00b2".encode())
    with pytest.raises(EnvelopeError):
        from_record(headers, b"")


# --- junk ----------------------------------------------------------------------------------


def _junk_value(rng: random.Random) -> bytes | None:
    choice = rng.randrange(8)
    if choice == 0:
        return None
    if choice == 1:
        return rng.randbytes(rng.randrange(0, 24))
    if choice == 2:
        return "".join(rng.choices(string.printable, k=rng.randrange(0, 12))).encode()
    if choice == 3:
        return str(rng.randint(-(10**15), 10**15)).encode()
    if choice == 4:
        return rng.choice(sorted(KINDS)).encode()
    if choice == 5:
        return f"topic-{rng.randrange(3)}:{rng.randrange(-2, 40)}".encode()
    if choice == 6:
        return b"x" * rng.choice([MAX_HEADER_VALUE, MAX_HEADER_VALUE + 1])
    return rng.choice([b"", b"1", b"0", b"-1", b"\xc3\x28", b"request", b"a:1"])


def _junk_headers(rng: random.Random) -> HeaderList:
    headers: HeaderList = []
    for _ in range(rng.randrange(0, 14)):
        if rng.random() < 0.75:
            name = rng.choice(ALL_KNOWN)
        else:
            name = "".join(rng.choices(string.ascii_letters + "_-.", k=rng.randrange(0, 10)))
        headers.append((name, _junk_value(rng)))
    return headers


def test_random_junk_raises_only_envelope_error() -> None:
    rng = random.Random(20240527)
    parsed = refused = 0
    for _ in range(600):
        headers = _junk_headers(rng)
        value = rng.choice([None, b"", rng.randbytes(rng.randrange(0, 40))])
        try:
            envelope = from_record(headers, value)
        except EnvelopeError:
            refused += 1
        else:
            parsed += 1
            assert envelope.kind in KINDS
    assert refused > 0


def test_mutated_valid_records_raise_only_envelope_error() -> None:
    """Start from a valid record and break one or two headers: reaches the deep checks."""
    rng = random.Random(99)
    parsed = refused = 0
    base = [*_valid_request_headers(), (H_ATTEMPT, b"2"), (H_TRACEPARENT, TRACEPARENT.encode())]
    for _ in range(400):
        headers = list(base)
        for _ in range(rng.randrange(1, 3)):
            action = rng.randrange(3)
            index = rng.randrange(len(headers))
            if action == 0:
                headers[index] = (headers[index][0], _junk_value(rng))
            elif action == 1:
                del headers[index]
            else:
                headers.append((rng.choice(ALL_KNOWN), _junk_value(rng)))
            if not headers:
                break
        try:
            from_record(headers, b"{}")
        except EnvelopeError:
            refused += 1
        else:
            parsed += 1
    assert parsed > 0
    assert refused > 0


# --- deadlines -----------------------------------------------------------------------------


def test_no_deadline_never_expires() -> None:
    event = Envelope(id="e", source="s", type="a.b", kind=KIND_EVENT, value=b"", time_ms=1)
    assert event.remaining_ms(10**15) is None
    assert event.expired(10**15) is False


def test_remaining_and_expired_around_the_deadline() -> None:
    request = _request()  # deadline 1_700_000_010_000
    assert request.remaining_ms(1_700_000_009_000) == 1000
    assert request.expired(1_700_000_009_999) is False
    assert request.remaining_ms(1_700_000_010_000) == 0
    assert request.expired(1_700_000_010_000) is True
    assert request.remaining_ms(1_700_000_010_250) == -250
    assert request.expired(1_700_000_010_250) is True
