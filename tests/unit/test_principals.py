"""Who may speak for an end user (bus.security.principals): the edge's assertion, the receiver's
decision, and what a caller's own client lets it send."""

from __future__ import annotations

import dataclasses

import pytest

from bus.envelope import KIND_EVENT, Envelope, ReplyTo, from_record, new_request, to_headers
from bus.errors import MeshError
from bus.security.access import AccessPolicy
from bus.security.identity import Identity
from bus.security.keys import KeyRing, encode_b64url, generate_ed25519, hmac_key
from bus.security.principals import (
    MAX_ASSERTION_TTL_MS,
    BadPrincipalAssertion,
    PrincipalAssertionExpired,
    PrincipalAssertionNotEdge,
    PrincipalNotAllowed,
    assert_principal,
    assertion_bytes,
    check_principal,
    parse_assertion,
    principal_for_call,
)
from bus.security.signing import BadSignature, sign, verify

NOW = 1_700_000_000_000
ALICE = '{"method":"jwt","sub":"alice"}'
ADMIN = '{"method":"jwt","sub":"admin"}'
TOPIC = "inventory.requests"
EDGE_KEY, EDGE_PUBLIC = generate_ed25519("gateway", "gw-1")
ORDERS_KEY, ORDERS_PUBLIC = generate_ed25519("orders", "orders-1")
RING = KeyRing([EDGE_PUBLIC, ORDERS_PUBLIC])
ACCESS = AccessPolicy.from_dict({"gateway": ["*"], "orders": ["*"]}, edges=["gateway"])


def request(source: str = "orders", principal: str | None = ALICE,
            assertion: str | None = None, deadline_ms: int = NOW + 5_000) -> Envelope:
    return new_request(source=source, operation="inventory.stock", value=b"{}",
                       reply_to=ReplyTo("mesh.replies", 0), deadline_ms=deadline_ms, at_ms=NOW,
                       principal=principal, principal_assertion=assertion)


def admit(envelope: Envelope, now_ms: int = NOW) -> None:
    check_principal(envelope, RING, ACCESS.is_edge, now_ms)


def edge_says(principal: str = ALICE, expires_ms: int = NOW + 5_000) -> str:
    return assert_principal(principal, expires_ms, EDGE_KEY)


# --- the assertion ---------------------------------------------------------------------


def test_an_assertion_round_trips_and_binds_principal_bytes_and_expiry() -> None:
    text = edge_says()
    parsed = parse_assertion(text)
    assert (parsed.algorithm, parsed.key_id, parsed.expires_ms) == ("ed25519", "gw-1", NOW + 5_000)
    assert parsed.encode() == text
    assert EDGE_PUBLIC.public_key is not None
    EDGE_PUBLIC.public_key.verify(parsed.signature, assertion_bytes(ALICE, NOW + 5_000))
    assert assertion_bytes(ALICE, NOW) != assertion_bytes(ALICE, NOW + 1)
    # Length-prefixed: moving a digit from the expiry into the principal changes the bytes.
    assert assertion_bytes("a1", 23) != assertion_bytes("a", 123)


@pytest.mark.parametrize("text", [
    "", ":::", "ed25519:gw-1:1", "ed25519:gw-1:1:x:y", "rsa:gw-1:1:" + "A" * 86,
    "ed25519:gw 1:1:" + "A" * 86, "ed25519:gw-1:-1:" + "A" * 86, "ed25519:gw-1:01:" + "A" * 86,
    "ed25519:gw-1:\u0661:" + "A" * 86, "ed25519:gw-1:1:" + "A" * 85, "ed25519:gw-1:1:" + "A" * 43,
    "hmac-sha256:gw-1:1:" + "A" * 86, "ed25519:gw-1:1:" + "+" * 86,
    "ed25519:gw-1:99999999999999999:" + "A" * 86,
])
def test_malformed_assertions_are_bad_assertions(text: str) -> None:
    with pytest.raises(BadPrincipalAssertion):
        parse_assertion(text)
    with pytest.raises(BadPrincipalAssertion):
        admit(request(assertion=text))


def test_the_assertion_header_survives_kafka_and_is_covered_by_the_message_signature() -> None:
    sent = sign(request(assertion=edge_says()), TOPIC, ORDERS_KEY)
    received = from_record(to_headers(sent), sent.value)
    assert received.principal_assertion == sent.principal_assertion
    verify(received, TOPIC, RING)
    for changed in (None, edge_says(expires_ms=NOW + 4_000)):
        with pytest.raises(BadSignature):
            verify(dataclasses.replace(received, principal_assertion=changed), TOPIC, RING)


# --- the receiver's decision -------------------------------------------------------------


def test_no_principal_needs_nothing() -> None:
    admit(request(principal=None))


def test_an_edge_may_name_any_principal() -> None:
    admit(request(source="gateway", principal=ADMIN))
    admit(request(source="gateway", assertion=edge_says()))


def test_a_service_forwarding_a_valid_edge_assertion_is_admitted() -> None:
    admit(request(assertion=edge_says()))
    admit(request(assertion=edge_says(), deadline_ms=NOW + 5_000))  # exactly until expiry


def test_a_principal_from_a_service_that_is_not_an_edge_without_assertion() -> None:
    with pytest.raises(PrincipalNotAllowed):
        admit(request(principal=ADMIN))


def test_an_assertion_made_by_a_service_that_is_not_an_edge() -> None:
    forged = assert_principal(ADMIN, NOW + 5_000, ORDERS_KEY)
    with pytest.raises(PrincipalAssertionNotEdge):
        admit(request(principal=ADMIN, assertion=forged))


def test_an_assertion_for_other_principal_bytes() -> None:
    with pytest.raises(BadPrincipalAssertion):
        admit(request(principal=ADMIN, assertion=edge_says(ALICE)))
    same_meaning = '{"sub":"alice","method":"jwt"}'  # exact bytes, not meaning
    with pytest.raises(BadPrincipalAssertion):
        admit(request(principal=same_meaning, assertion=edge_says(ALICE)))


def test_an_assertion_whose_expiry_was_changed() -> None:
    algorithm, key_id, _, signature = edge_says().split(":")
    moved = f"{algorithm}:{key_id}:{NOW + 60_000}:{signature}"
    with pytest.raises(BadPrincipalAssertion):
        admit(request(assertion=moved, deadline_ms=NOW + 60_000))


def test_an_assertion_by_an_unknown_key_or_the_wrong_algorithm() -> None:
    stranger, _ = generate_ed25519("gateway", "gw-2")
    with pytest.raises(BadPrincipalAssertion, match="not trusted"):
        admit(request(assertion=assert_principal(ALICE, NOW + 5_000, stranger)))
    _, key_id, expiry, _ = edge_says().split(":")
    confused = f"hmac-sha256:{key_id}:{expiry}:{encode_b64url(bytes(32))}"
    with pytest.raises(BadPrincipalAssertion, match="claims"):
        admit(request(assertion=confused))


def test_an_hmac_edge_key_asserts_where_its_secret_is_shared() -> None:
    key, public = hmac_key("gateway", bytes(range(32)), "gw-h")
    ring = KeyRing([public])
    check_principal(request(assertion=assert_principal(ALICE, NOW + 5_000, key)), ring,
                    ACCESS.is_edge, NOW)


def test_a_request_may_not_outlive_its_assertion() -> None:
    with pytest.raises(PrincipalAssertionExpired):
        admit(request(assertion=edge_says(expires_ms=NOW - 1)))
    with pytest.raises(PrincipalAssertionExpired):
        admit(request(assertion=edge_says(expires_ms=NOW + 5_000), deadline_ms=NOW + 5_001))


def test_an_expired_request_within_its_assertion_is_left_to_the_deadline_drop() -> None:
    # A backlog: the request's own deadline has passed too, so the worker drops it unhandled
    # as any expired request; quarantining it would turn an outage into parked records.
    expired = request(assertion=edge_says(expires_ms=NOW + 5_000), deadline_ms=NOW + 4_000)
    admit(expired, now_ms=NOW + 10_000)
    assert expired.expired(NOW + 10_000)


def test_other_kinds_are_checked_against_the_clock() -> None:
    event = dataclasses.replace(request(assertion=edge_says()), kind=KIND_EVENT,
                                reply_to=None, deadline_ms=None)
    admit(event, now_ms=NOW + 4_999)
    with pytest.raises(PrincipalAssertionExpired):
        admit(event, now_ms=NOW + 5_000)


def test_an_assertion_longer_than_any_edge_call_is_refused() -> None:
    far = NOW + MAX_ASSERTION_TTL_MS + 120_000
    with pytest.raises(BadPrincipalAssertion, match="over"):
        admit(request(assertion=edge_says(expires_ms=far), deadline_ms=far))


def test_an_assertion_without_a_principal() -> None:
    with pytest.raises(BadPrincipalAssertion):
        admit(request(principal=None, assertion=edge_says()))


def test_principal_errors_are_distinct_and_not_retriable() -> None:
    errors = [PrincipalNotAllowed, BadPrincipalAssertion, PrincipalAssertionNotEdge,
              PrincipalAssertionExpired]
    assert all(issubclass(error, MeshError) and not error.retriable for error in errors)
    assert len({error.code for error in errors}) == len(errors)


# --- what the caller's client sends ------------------------------------------------------


def call(own: str | None, inherited: tuple[str | None, str | None], *, edge: bool,
         expires_ms: int = NOW + 5_000) -> tuple[str | None, str | None]:
    return principal_for_call(own, inherited, service="gateway" if edge else "orders",
                              edge=edge, key=EDGE_KEY if edge else ORDERS_KEY,
                              expires_ms=expires_ms, now_ms=NOW)


def test_an_edge_asserts_the_principal_it_names_until_the_calls_deadline() -> None:
    principal, assertion = call(ALICE, (None, None), edge=True)
    assert principal == ALICE
    assert assertion is not None
    assert parse_assertion(assertion).expires_ms == NOW + 5_000
    admit(request(assertion=assertion))
    assert call(None, (None, None), edge=True) == (None, None)
    with pytest.raises(BadPrincipalAssertion, match="shorten"):
        call(ALICE, (None, None), edge=True, expires_ms=NOW + MAX_ASSERTION_TTL_MS + 1)


def test_a_nested_call_forwards_principal_and_assertion_unchanged() -> None:
    inherited = (ALICE, edge_says())
    assert call(None, inherited, edge=False) == inherited
    assert call(ALICE, inherited, edge=False) == inherited  # naming the same one is fine
    assert call(None, (None, None), edge=False) == (None, None)


def test_a_service_that_is_not_an_edge_cannot_name_a_principal() -> None:
    with pytest.raises(PrincipalNotAllowed, match="not an edge"):
        call(ADMIN, (ALICE, edge_says()), edge=False)
    with pytest.raises(PrincipalNotAllowed):
        call(ADMIN, (None, None), edge=False)
    with pytest.raises(PrincipalNotAllowed, match="no edge's assertion"):
        call(None, (ALICE, None), edge=False)


def test_an_identity_knows_whether_it_is_an_edge() -> None:
    gateway = Identity("gateway", EDGE_KEY, RING, ACCESS)
    orders = Identity("orders", ORDERS_KEY, RING, ACCESS)
    principal, assertion = gateway.on_behalf_of(ALICE, (None, None), expires_ms=NOW + 1_000,
                                                now_ms=NOW)
    assert assertion is not None
    with pytest.raises(PrincipalNotAllowed):
        orders.on_behalf_of(ALICE, (None, None), expires_ms=NOW + 1_000, now_ms=NOW)
    assert orders.on_behalf_of(None, (principal, assertion), expires_ms=NOW + 1_000,
                               now_ms=NOW) == (ALICE, assertion)
    # Insecure (open) identities: everyone is an edge, and nothing is signed.
    assert Identity.insecure("orders").on_behalf_of(ADMIN, (None, None), expires_ms=NOW,
                                                    now_ms=NOW) == (ADMIN, None)
