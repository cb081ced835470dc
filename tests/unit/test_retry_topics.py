"""bus.delivery.retry_topics: retry/DLT topic names, routing of failures, and the failure
headers."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bus.delivery.retry_topics import (
    FAILURE_HEADERS,
    H_DLT_REASON,
    H_ERROR_CODE,
    H_ERROR_MESSAGE,
    H_FAILED_AT,
    H_NOT_BEFORE,
    H_ORIGINAL_TOPIC,
    MAX_ERROR_MESSAGE_BYTES,
    REASON_DEADLINE,
    REASON_EXHAUSTED,
    REASON_NOT_RETRIABLE,
    DeadLetterHop,
    Failure,
    FailureHeaders,
    RetryHop,
    RetryTopicPolicy,
    RetryTopics,
    UnknownRetryStage,
    dlt_topic_name,
    failure_extra,
    hop_envelope,
    hop_headers,
    parse_failure_headers,
    retry_topic_name,
    wait_ms,
)
from bus.envelope import (
    H_ATTEMPT,
    KIND_EVENT,
    Envelope,
    ReplyTo,
    from_record,
    new_request,
    to_headers,
)
from bus.errors import (
    EnvelopeError,
    HandlerError,
    MeshError,
    RemoteError,
    TransportError,
    UnknownOperation,
)
from bus.security.signing import canonical_bytes

MAIN = "orders.requests"
NOW = 1_700_000_000_000


@pytest.fixture
def topics() -> RetryTopics:
    return RetryTopics(MAIN, RetryTopicPolicy((1_000, 10_000, 60_000)))


def event(**changes: object) -> Envelope:
    base = Envelope(
        id="e1", source="orders", type="orders.created", kind=KIND_EVENT, value=b'{"n":1}',
        time_ms=NOW - 5_000, traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01",
        signature="ed25519:orders-1:c2ln", extra=(("x-tenant", b"acme"),),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


# --- names and policy -------------------------------------------------------------------


def test_topic_names(topics: RetryTopics) -> None:
    assert topics.retry_topics == (
        "orders.requests.retry.1", "orders.requests.retry.2", "orders.requests.retry.3",
    )
    assert topics.dlt_topic == "orders.requests.dlt"
    assert topics.all_topics() == (*topics.retry_topics, "orders.requests.dlt")
    assert retry_topic_name("a", 7) == "a.retry.7"
    assert dlt_topic_name("a") == "a.dlt"


def test_retry_stages_are_numbered_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        retry_topic_name("a", 0)


def test_stage_and_delay_of_each_topic(topics: RetryTopics) -> None:
    assert [topics.stage_of(t) for t in (MAIN, *topics.retry_topics)] == [0, 1, 2, 3]
    assert [topics.delay_ms_of(t) for t in (MAIN, *topics.retry_topics)] == [
        0, 1_000, 10_000, 60_000,
    ]


@pytest.mark.parametrize(
    "topic", ["orders.requests.dlt", "orders.requests.retry.4", "payments.requests", ""]
)
def test_unknown_stage_is_a_typed_non_retriable_error(topics: RetryTopics, topic: str) -> None:
    with pytest.raises(UnknownRetryStage) as raised:
        topics.stage_of(topic)
    assert isinstance(raised.value, MeshError)
    assert not raised.value.retriable
    with pytest.raises(UnknownRetryStage):
        topics.next_hop(topic, 1, True, now_ms=NOW)


def test_policy_validation_and_constructors() -> None:
    assert RetryTopicPolicy.of_seconds(1, 10, 60, 0.25).delays_ms == (1000, 10000, 60000, 250)
    from_list = RetryTopicPolicy([5, 6])  # type: ignore[arg-type]
    assert from_list.delays_ms == (5, 6)
    assert from_list == RetryTopicPolicy((5, 6))
    assert RetryTopicPolicy(()).stages == 0
    for bad in [(-1,), (1.5,), (True,), ("10",)]:
        with pytest.raises(ValueError, match="integer ms"):
            RetryTopicPolicy(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name"):
        RetryTopics("", RetryTopicPolicy((1,)))


# --- next_hop ---------------------------------------------------------------------------


def test_a_retriable_failure_walks_the_stages_then_the_dlt(topics: RetryTopics) -> None:
    hops: list[RetryHop | DeadLetterHop] = []
    topic, attempt, now = MAIN, 1, NOW
    for _ in range(4):
        hop = topics.next_hop(topic, attempt, True, now_ms=now)
        hops.append(hop)
        if isinstance(hop, RetryHop):
            topic, attempt, now = hop.topic, hop.attempt, hop.not_before_ms + 5
    assert hops == [
        RetryHop("orders.requests.retry.1", 1, 2, NOW + 1_000),
        RetryHop("orders.requests.retry.2", 2, 3, NOW + 1_005 + 10_000),
        RetryHop("orders.requests.retry.3", 3, 4, NOW + 11_010 + 60_000),
        DeadLetterHop("orders.requests.dlt", 4, REASON_EXHAUSTED),
    ]


def test_the_stage_comes_from_the_topic_not_the_attempt(topics: RetryTopics) -> None:
    # A message already tried 3 times by its caller still starts at the first retry stage.
    assert topics.next_hop(MAIN, 3, True, now_ms=NOW) == RetryHop(
        "orders.requests.retry.1", 1, 4, NOW + 1_000
    )
    assert topics.next_hop("orders.requests.retry.2", 2, True, now_ms=NOW) == RetryHop(
        "orders.requests.retry.3", 3, 3, NOW + 60_000
    )


@pytest.mark.parametrize("topic", [MAIN, "orders.requests.retry.2"])
def test_a_non_retriable_failure_goes_straight_to_the_dlt(
    topics: RetryTopics, topic: str
) -> None:
    assert topics.next_hop(topic, 2, False, now_ms=NOW) == DeadLetterHop(
        "orders.requests.dlt", 2, REASON_NOT_RETRIABLE
    )


def test_without_delays_every_failure_is_dead() -> None:
    topics = RetryTopics("t", RetryTopicPolicy(()))
    assert topics.all_topics() == ("t.dlt",)
    assert topics.next_hop("t", 1, True, now_ms=NOW) == DeadLetterHop("t.dlt", 1, REASON_EXHAUSTED)


def test_a_retry_that_would_not_be_due_before_the_deadline_is_dead(topics: RetryTopics) -> None:
    assert topics.next_hop(MAIN, 1, True, now_ms=NOW, deadline_ms=NOW + 1_000) == DeadLetterHop(
        "orders.requests.dlt", 1, REASON_DEADLINE
    )
    assert topics.next_hop(MAIN, 1, True, now_ms=NOW, deadline_ms=NOW + 1_001) == RetryHop(
        "orders.requests.retry.1", 1, 2, NOW + 1_000
    )


def test_next_hop_rejects_attempt_zero(topics: RetryTopics) -> None:
    with pytest.raises(ValueError, match="from 1"):
        topics.next_hop(MAIN, 0, True, now_ms=NOW)


# --- Failure ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (HandlerError("out_of_stock", "none left", retriable=True),
         Failure("out_of_stock", "none left", True)),
        (HandlerError("invalid", "bad order"), Failure("invalid", "bad order", False)),
        (RemoteError("busy", "later", retriable=True), Failure("busy", "later", True)),
        (TransportError("broker gone"), Failure("transport", "broker gone", True)),
        (UnknownOperation("no op"), Failure("unknown_operation", "no op", False)),
        (KeyError("sku"), Failure("internal", "KeyError: 'sku'", False)),
    ],
)
def test_failure_of_an_error(error: Exception, expected: Failure) -> None:
    assert Failure.of(error) == expected


# --- failure headers --------------------------------------------------------------------


def test_retry_hop_envelope_bumps_attempt_and_adds_failure_headers(topics: RetryTopics) -> None:
    original = event(extra=(("x-tenant", b"acme"), (H_ERROR_CODE, b"old"), (H_NOT_BEFORE, b"1")))
    hop = topics.next_hop(MAIN, 1, True, now_ms=NOW)
    failure = Failure("out_of_stock", "none left", True)
    moved = hop_envelope(original, hop, original_topic=MAIN, failure=failure, failed_at_ms=NOW)

    assert moved.attempt == 2
    assert moved.signature == original.signature
    # Nothing signed changes, so the original signature still verifies on the main topic.
    assert canonical_bytes(moved, MAIN) == canonical_bytes(original, MAIN)
    assert [name for name, _ in moved.extra].count(H_ERROR_CODE) == 1
    assert ("x-tenant", b"acme") in moved.extra

    parsed = from_record(to_headers(moved), moved.value)
    assert parsed == moved
    assert parse_failure_headers(to_headers(moved)) == FailureHeaders(
        original_topic=MAIN, error_code="out_of_stock", error_message="none left",
        failed_at_ms=NOW, not_before_ms=NOW + 1_000, dlt_reason=None,
    )


def test_dead_letter_headers_carry_the_reason_and_no_not_before(topics: RetryTopics) -> None:
    request = new_request(
        source="gateway", operation="orders.create", value=b"{}", reply_to=ReplyTo("r", 1),
        deadline_ms=NOW + 9_000, at_ms=NOW,
    )
    hop = topics.next_hop("orders.requests.retry.3", 4, True, now_ms=NOW)
    headers = hop_headers(
        replace(request, attempt=4), hop, original_topic=MAIN,
        failure=Failure("busy", "still busy", True), failed_at_ms=NOW + 7,
    )
    names = [name for name, _ in headers]
    assert H_NOT_BEFORE not in names
    assert (H_ATTEMPT, b"4") in headers
    assert (H_DLT_REASON, REASON_EXHAUSTED.encode()) in headers
    info = parse_failure_headers(headers)
    assert info is not None
    assert (info.dlt_reason, info.not_before_ms, info.failed_at_ms) == (
        REASON_EXHAUSTED, None, NOW + 7,
    )
    assert from_record(headers, request.value).reply_to == ReplyTo("r", 1)


def test_long_error_messages_are_truncated_to_valid_utf8() -> None:
    info = FailureHeaders(MAIN, "boom", "é" * 5_000, NOW)
    raw = dict(failure_extra(info))[H_ERROR_MESSAGE]
    assert len(raw) <= MAX_ERROR_MESSAGE_BYTES
    assert raw.decode("utf-8") == "é" * (MAX_ERROR_MESSAGE_BYTES // 2)


def test_a_first_delivery_has_no_failure_headers() -> None:
    assert parse_failure_headers(to_headers(event())) is None


def _failure_headers(**overrides: bytes | None) -> list[tuple[str, bytes | None]]:
    values: dict[str, bytes | None] = {
        H_ORIGINAL_TOPIC: MAIN.encode(), H_ERROR_CODE: b"busy", H_ERROR_MESSAGE: b"m",
        H_FAILED_AT: str(NOW).encode(), H_NOT_BEFORE: str(NOW + 5).encode(),
    }
    values.update(overrides)
    return [("ce_id", b"x"), *values.items()]


def test_parse_failure_headers_reads_what_failure_extra_writes() -> None:
    info = FailureHeaders(MAIN, "busy", "m", NOW, NOW + 5, REASON_EXHAUSTED)
    assert parse_failure_headers(list(failure_extra(info))) == info
    assert {name for name, _ in failure_extra(info)} <= FAILURE_HEADERS


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ([(H_ERROR_CODE, b"busy")], "missing failure headers"),
        (_failure_headers(**{H_FAILED_AT: b"-5"}), "epoch ms"),
        (_failure_headers(**{H_FAILED_AT: b"12x"}), "epoch ms"),
        (_failure_headers(**{H_NOT_BEFORE: "١٢".encode()}), "epoch ms"),  # non-ASCII digits
        (_failure_headers(**{H_ORIGINAL_TOPIC: b""}), "missing failure headers"),
        (_failure_headers(**{H_ERROR_CODE: b"\xff"}), "not UTF-8"),
        (_failure_headers(**{H_ERROR_CODE: None}), "no bytes value"),
        ([*_failure_headers(), (H_FAILED_AT, b"1")], "appears twice"),
    ],
)
def test_parse_failure_headers_rejects_bad_headers(
    headers: list[tuple[str, bytes | None]], message: str
) -> None:
    with pytest.raises(EnvelopeError, match=message):
        parse_failure_headers(headers)


# --- wait_ms ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "now", "expected"),
    [
        ([], NOW, 0),
        ([(H_NOT_BEFORE, str(NOW + 1_500).encode())], NOW, 1_500),
        ([(H_NOT_BEFORE, str(NOW).encode())], NOW, 0),
        ([(H_NOT_BEFORE, str(NOW - 10).encode())], NOW, 0),
        ([(H_NOT_BEFORE, b"soon")], NOW, 0),
        ([(H_NOT_BEFORE, b"\xff")], NOW, 0),
        ([(H_NOT_BEFORE, None)], NOW, 0),
    ],
)
def test_wait_ms(headers: list[tuple[str, bytes | None]], now: int, expected: int) -> None:
    assert wait_ms(headers, now) == expected


def test_wait_ms_is_capped(topics: RetryTopics) -> None:
    far = [(H_NOT_BEFORE, str(NOW + 86_400_000).encode())]
    cap = topics.delay_ms_of("orders.requests.retry.1")
    assert wait_ms(far, NOW, max_wait_ms=cap) == 1_000
    assert wait_ms([(H_NOT_BEFORE, str(NOW + 300).encode())], NOW, max_wait_ms=cap) == 300


def test_wait_ms_of_a_real_retry_record(topics: RetryTopics) -> None:
    hop = topics.next_hop(MAIN, 1, True, now_ms=NOW)
    headers = hop_headers(
        event(), hop, original_topic=MAIN, failure=Failure("busy", "", True), failed_at_ms=NOW
    )
    assert wait_ms(headers, NOW + 400) == 600
    assert wait_ms(headers, NOW + 1_000) == 0
