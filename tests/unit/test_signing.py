from __future__ import annotations

import dataclasses
import hashlib
import hmac
import random
from collections.abc import Callable
from typing import Any

import pytest

from bus.envelope import Envelope, ReplyTo, from_record, new_request, reply_for, to_headers
from bus.errors import MeshError
from bus.security.keys import (
    ED25519,
    HMAC_SHA256,
    Algorithm,
    KeyRing,
    SigningKey,
    UnknownKeyId,
    VerifyKey,
    encode_b64url,
    generate_ed25519,
    hmac_key,
)
from bus.security.signing import (
    BadSignature,
    MalformedSignature,
    MissingSignature,
    SenderMismatch,
    SignatureError,
    StaleMessage,
    canonical_bytes,
    check_fresh,
    parse_signature,
    sign,
    verify,
)

TOPIC = "inventory.requests"
NOW = 1_700_000_000_000


def make_request(source: str = "orders") -> Envelope:
    return new_request(
        source=source,
        operation="reserve",
        value=b'{"sku":"A1","qty":2}',
        reply_to=ReplyTo("orders.replies", 7),
        deadline_ms=NOW + 5_000,
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        at_ms=NOW,
    )


def make_keys(service: str, algorithm: Algorithm, key_id: str) -> tuple[SigningKey, VerifyKey]:
    if algorithm == ED25519:
        return generate_ed25519(service, key_id)
    return hmac_key(service, random.randbytes(32), key_id)


@pytest.fixture(params=[ED25519, HMAC_SHA256])
def algorithm(request: pytest.FixtureRequest) -> Algorithm:
    value: Algorithm = request.param
    return value


@pytest.fixture
def keys(algorithm: Algorithm) -> tuple[SigningKey, VerifyKey]:
    return make_keys("orders", algorithm, "orders-1")


@pytest.fixture
def signed(keys: tuple[SigningKey, VerifyKey]) -> Envelope:
    return sign(make_request(), TOPIC, keys[0])


@pytest.fixture
def ring(keys: tuple[SigningKey, VerifyKey]) -> KeyRing:
    return KeyRing([keys[1]])


# --- round trips -----------------------------------------------------------------------


def test_sign_then_verify_returns_the_senders_key(
    signed: Envelope, ring: KeyRing, keys: tuple[SigningKey, VerifyKey]
) -> None:
    assert verify(signed, TOPIC, ring) == keys[1]


def test_signature_header_names_algorithm_and_key_id(
    signed: Envelope, algorithm: Algorithm
) -> None:
    assert signed.signature is not None
    assert signed.signature.startswith(f"{algorithm}:orders-1:")
    header = parse_signature(signed.signature)
    assert (header.algorithm, header.key_id) == (algorithm, "orders-1")
    assert header.encode() == signed.signature


def test_signing_changes_nothing_but_the_signature(signed: Envelope) -> None:
    assert dataclasses.replace(signed, signature=None) == dataclasses.replace(
        make_request(), id=signed.id, correlation_id=signed.correlation_id
    )


def test_verifies_after_a_trip_through_kafka_headers(signed: Envelope, ring: KeyRing) -> None:
    received = from_record(to_headers(signed), signed.value)
    assert verify(received, TOPIC, ring).key_id == "orders-1"


def test_reply_without_reply_to_or_deadline_round_trips(
    keys: tuple[SigningKey, VerifyKey],
) -> None:
    request = make_request(source="inventory")
    reply = dataclasses.replace(
        reply_for(request, source="orders", value=b"{}"), deadline_ms=None, time_ms=NOW
    )
    signed = sign(reply, "orders.replies", keys[0])
    assert verify(signed, "orders.replies", KeyRing([keys[1]])) == keys[1]


# --- what the signature covers ---------------------------------------------------------

TAMPERINGS: dict[str, Callable[[Envelope], Envelope]] = {
    "value": lambda e: dataclasses.replace(e, value=e.value + b" "),
    "value emptied": lambda e: dataclasses.replace(e, value=b""),
    "ce_id": lambda e: dataclasses.replace(e, id=e.id + "0"),
    "ce_source": lambda e: dataclasses.replace(e, source="orderz"),
    "ce_type": lambda e: dataclasses.replace(e, type="release"),
    "ce_time": lambda e: dataclasses.replace(e, time_ms=e.time_ms + 1),
    "mesh_kind": lambda e: dataclasses.replace(e, kind="event"),
    "mesh_correlation_id": lambda e: dataclasses.replace(e, correlation_id="other"),
    "mesh_correlation_id removed": lambda e: dataclasses.replace(e, correlation_id=None),
    "mesh_correlation_id emptied": lambda e: dataclasses.replace(e, correlation_id=""),
    "mesh_reply_to topic": lambda e: dataclasses.replace(e, reply_to=ReplyTo("evil.replies", 7)),
    "mesh_reply_to partition": lambda e: dataclasses.replace(
        e, reply_to=ReplyTo("orders.replies", 8)
    ),
    "mesh_reply_to removed": lambda e: dataclasses.replace(e, reply_to=None),
    "mesh_deadline": lambda e: dataclasses.replace(e, deadline_ms=(e.deadline_ms or 0) + 1),
    "mesh_deadline removed": lambda e: dataclasses.replace(e, deadline_ms=None),
    "content-type": lambda e: dataclasses.replace(e, content_type="text/plain"),
    "mesh_principal added": lambda e: dataclasses.replace(
        e, principal='{"method":"jwt","sub":"admin"}'
    ),
}


@pytest.mark.parametrize("tamper", TAMPERINGS.values(), ids=TAMPERINGS.keys())
def test_tampering_a_signed_field_breaks_verification(
    signed: Envelope, ring: KeyRing, tamper: Callable[[Envelope], Envelope]
) -> None:
    with pytest.raises(BadSignature):
        verify(tamper(signed), TOPIC, ring)


def test_a_message_signed_for_one_topic_fails_on_another(signed: Envelope, ring: KeyRing) -> None:
    with pytest.raises(BadSignature):
        verify(signed, "inventory.requests.retry", ring)


UNSIGNED_CHANGES: dict[str, Callable[[Envelope], Envelope]] = {
    "mesh_attempt": lambda e: dataclasses.replace(e, attempt=e.attempt + 2),
    "traceparent": lambda e: dataclasses.replace(
        e, traceparent="00-11111111111111111111111111111111-2222222222222222-00"
    ),
    "traceparent removed": lambda e: dataclasses.replace(e, traceparent=None),
    "tracestate": lambda e: dataclasses.replace(e, tracestate="vendor=1"),
    "extra header": lambda e: dataclasses.replace(e, extra=(("x-note", b"hi"),)),
}


@pytest.mark.parametrize("change", UNSIGNED_CHANGES.values(), ids=UNSIGNED_CHANGES.keys())
def test_retry_and_trace_headers_are_not_signed(
    signed: Envelope, ring: KeyRing, change: Callable[[Envelope], Envelope]
) -> None:
    verify(change(signed), TOPIC, ring)


def test_canonical_bytes_are_deterministic() -> None:
    envelope = make_request()
    assert canonical_bytes(envelope, TOPIC) == canonical_bytes(dataclasses.replace(envelope), TOPIC)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ({"id": "ab", "source": "c"}, {"id": "a", "source": "bc"}),
        ({"type": "x", "value": b"y"}, {"type": "xy", "value": b""}),
        ({"correlation_id": None}, {"correlation_id": ""}),
        ({"reply_to": None}, {"reply_to": ReplyTo("", 0)}),
        ({"content_type": "a", "value": b"\x00"}, {"content_type": "a\x00", "value": b""}),
    ],
)
def test_canonical_bytes_never_confuse_field_boundaries_or_absence(
    left: dict[str, Any], right: dict[str, Any]
) -> None:
    base = make_request()
    assert canonical_bytes(dataclasses.replace(base, **left), TOPIC) != canonical_bytes(
        dataclasses.replace(base, **right), TOPIC
    )


def test_canonical_bytes_bind_the_topic_unambiguously() -> None:
    envelope = dataclasses.replace(make_request(), id="x")
    assert canonical_bytes(envelope, "ab") != canonical_bytes(
        dataclasses.replace(envelope, id="bx"), "a"
    )


# --- identity and rotation -------------------------------------------------------------


def test_both_keys_of_a_rotation_verify_and_a_removed_key_does_not(algorithm: Algorithm) -> None:
    old_signing, old_verify = make_keys("orders", algorithm, "orders-2024")
    new_signing, new_verify = make_keys("orders", algorithm, "orders-2025")
    ring = KeyRing([old_verify, new_verify])
    by_old = sign(make_request(), TOPIC, old_signing)
    by_new = sign(make_request(), TOPIC, new_signing)

    assert verify(by_old, TOPIC, ring) == old_verify
    assert verify(by_new, TOPIC, ring) == new_verify

    ring.remove("orders-2024")
    with pytest.raises(UnknownKeyId):
        verify(by_old, TOPIC, ring)
    assert verify(by_new, TOPIC, ring) == new_verify


def test_a_service_cannot_sign_as_another(algorithm: Algorithm) -> None:
    orders_signing, orders_verify = make_keys("orders", algorithm, "orders-1")
    inventory_signing, inventory_verify = make_keys("inventory", algorithm, "inventory-1")
    ring = KeyRing([orders_verify, inventory_verify])
    impostor = sign(make_request(source="orders"), TOPIC, inventory_signing)

    with pytest.raises(SenderMismatch):
        verify(impostor, TOPIC, ring)
    assert verify(sign(make_request(), TOPIC, orders_signing), TOPIC, ring) == orders_verify


def test_claiming_another_key_id_of_the_same_service_fails(algorithm: Algorithm) -> None:
    signing, first = make_keys("orders", algorithm, "orders-1")
    _, second = make_keys("orders", algorithm, "orders-2")
    signed = sign(make_request(), TOPIC, signing)
    assert signed.signature is not None
    relabelled = signed.with_signature(signed.signature.replace(":orders-1:", ":orders-2:"))
    with pytest.raises(BadSignature):
        verify(relabelled, TOPIC, KeyRing([first, second]))


def test_an_ed25519_public_key_cannot_be_used_as_an_hmac_secret() -> None:
    _, public = generate_ed25519("orders", "orders-1")
    envelope = make_request()
    forged = hmac.new(public.material, canonical_bytes(envelope, TOPIC), hashlib.sha256).digest()
    attack = envelope.with_signature(f"hmac-sha256:orders-1:{encode_b64url(forged)}")
    with pytest.raises(BadSignature):
        verify(attack, TOPIC, KeyRing([public]))


def test_unknown_key_id(signed: Envelope) -> None:
    with pytest.raises(UnknownKeyId) as caught:
        verify(signed, TOPIC, KeyRing())
    assert caught.value.key_id == "orders-1"


def test_unsigned_message_is_missing_a_signature(ring: KeyRing) -> None:
    with pytest.raises(MissingSignature):
        verify(make_request(), TOPIC, ring)


# --- malformed signature headers -------------------------------------------------------

SIG64 = encode_b64url(bytes(64))
SIG32 = encode_b64url(bytes(32))
MALFORMED = [
    "",
    ":",
    "::",
    ":::",
    "ed25519",
    "ed25519:",
    "ed25519:orders-1",
    "ed25519:orders-1:",
    f":orders-1:{SIG64}",
    f"ed25519::{SIG64}",
    f"rsa:orders-1:{SIG64}",
    f"ED25519:orders-1:{SIG64}",
    f"hmac-sha512:orders-1:{SIG64}",
    f"ed25519:orders-1:{SIG64}:",
    f"ed25519:orders-1:{SIG64}:extra",
    f"ed25519:orders-1:{SIG64}=",
    f"ed25519:orders-1:{SIG64}==",
    f"ed25519:orders-1:{encode_b64url(bytes(63))}",
    f"ed25519:orders-1:{encode_b64url(bytes(65))}",
    f"ed25519:orders-1:{SIG32}",
    f"hmac-sha256:orders-1:{SIG64}",
    f"hmac-sha256:orders-1:{encode_b64url(bytes(31))}",
    f"ed25519:orders-1:+{SIG64[1:]}",
    f"ed25519:orders-1:/{SIG64[1:]}",
    f"ed25519:orders-1:{SIG64[:-1]}B",  # unused trailing bits set: non-canonical
    f"ed25519:orders-1:{SIG64[:-1]}",
    f"ed25519:orders-1:{SIG64[:-2]}",
    f"ed25519:orders 1:{SIG64}",
    f"ed25519:ordérs-1:{SIG64}",
    f"ed25519:{'k' * 129}:{SIG64}",
    f" ed25519:orders-1:{SIG64}",
    f"ed25519:orders-1:{SIG64}\n",
    f"ed25519:orders-1: {SIG64}",
    f"ed25519:orders-1:{SIG64[:40]} {SIG64[40:]}",
    f"ed25519:orders-1:{SIG64}\x00",
    f"ed25519:orders-1:{'٣' * 86}",
    f"ed25519:orders-1:{'A' * 10_000}",
    f"ed25519:orders-1:{SIG64.encode().hex()}",
    "ed25519:orders-1:\udcff",
]


@pytest.mark.parametrize("text", MALFORMED)
def test_malformed_signatures_are_reported_as_such(text: str) -> None:
    _, public = generate_ed25519("orders", "orders-1")
    with pytest.raises(MalformedSignature):
        verify(make_request().with_signature(text), TOPIC, KeyRing([public]))


def test_random_signature_headers_only_raise_signature_errors(
    signed: Envelope, ring: KeyRing
) -> None:
    rng = random.Random(1234)
    assert signed.signature is not None
    alphabet = signed.signature + ":=+/ \x00é-_"
    candidates = [
        "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 120))) for _ in range(500)
    ]
    for _ in range(500):
        chars = list(signed.signature)
        chars[rng.randrange(len(chars))] = rng.choice(alphabet)
        candidates.append("".join(chars))
    for text in candidates:
        if text == signed.signature:
            continue
        with pytest.raises((SignatureError, UnknownKeyId)):
            verify(signed.with_signature(text), TOPIC, ring)


# --- errors ----------------------------------------------------------------------------


def test_verification_errors_are_distinct_and_not_retriable() -> None:
    errors = [
        MissingSignature,
        MalformedSignature,
        UnknownKeyId,
        BadSignature,
        SenderMismatch,
        StaleMessage,
    ]
    assert all(issubclass(error, MeshError) and not error.retriable for error in errors)
    assert len({error.code for error in errors}) == len(errors)


# --- freshness -------------------------------------------------------------------------


@pytest.mark.parametrize("offset_ms", [-1_000, -999, 0, 999, 1_000])
def test_fresh_inside_the_window_edges_included(offset_ms: int) -> None:
    check_fresh(dataclasses.replace(make_request(), time_ms=NOW + offset_ms), NOW, 1_000)


@pytest.mark.parametrize("offset_ms", [-1_001, 1_001, -(10**12), 10**12])
def test_stale_outside_the_window_in_either_direction(offset_ms: int) -> None:
    with pytest.raises(StaleMessage):
        check_fresh(dataclasses.replace(make_request(), time_ms=NOW + offset_ms), NOW, 1_000)


def test_zero_window_accepts_only_now() -> None:
    check_fresh(make_request(), NOW, 0)
    with pytest.raises(StaleMessage):
        check_fresh(make_request(), NOW + 1, 0)


def test_negative_window_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="window_ms"):
        check_fresh(make_request(), NOW, -1)
