"""The caller's principal: signed with the request, inherited by nested calls, readable by
handlers; tampering with it breaks the signature."""

from __future__ import annotations

import dataclasses

import pytest

from bus.context import caller_principal, current_message, inherited_principal
from bus.envelope import ReplyTo, from_record, new_request, to_headers
from bus.security.keys import KeyRing, generate_ed25519
from bus.security.signing import BadSignature, sign, verify

ALICE = '{"method":"jwt","sub":"alice"}'
TOPIC = "orders.requests"


def test_the_principal_survives_kafka_headers_and_is_covered_by_the_signature() -> None:
    key, public = generate_ed25519("gateway", "k1")
    ring = KeyRing([public])
    sent = sign(new_request(source="gateway", operation="orders.create", value=b"{}",
                            reply_to=ReplyTo("mesh.replies", 0), deadline_ms=2**40,
                            principal=ALICE), TOPIC, key)
    received = from_record(to_headers(sent), sent.value)
    assert received.principal == ALICE
    verify(received, TOPIC, ring)
    with pytest.raises(BadSignature):
        verify(dataclasses.replace(received, principal='{"method":"jwt","sub":"root"}'),
               TOPIC, ring)
    with pytest.raises(BadSignature):
        verify(dataclasses.replace(received, principal=None), TOPIC, ring)


def test_nested_calls_inherit_the_handled_messages_principal_and_assertion() -> None:
    assert inherited_principal() == (None, None)
    handled = new_request(source="gateway", operation="orders.create", value=b"{}",
                          reply_to=ReplyTo("mesh.replies", 0), deadline_ms=2**40,
                          principal=ALICE, principal_assertion="ed25519:k1:1:sig")
    token = current_message.set(handled)
    try:
        assert inherited_principal() == (ALICE, "ed25519:k1:1:sig")
        assert caller_principal() == {"method": "jwt", "sub": "alice"}
    finally:
        current_message.reset(token)
    assert caller_principal() is None
    assert inherited_principal() == (None, None)


def test_a_principal_that_is_not_a_json_object_reads_as_none() -> None:
    handled = new_request(source="gateway", operation="orders.create", value=b"{}",
                          reply_to=ReplyTo("mesh.replies", 0), deadline_ms=2**40,
                          principal="[1, 2]")
    token = current_message.set(handled)
    try:
        assert caller_principal() is None
    finally:
        current_message.reset(token)
