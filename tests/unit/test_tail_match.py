"""``meshgate tail``'s pure side: records decoded and their signatures judged, requests and
replies matched into calls (latency, result, principal, trace), timeouts, retries, replies
read before their request, bounded memory, filters, and the printed forms."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from bus.envelope import Envelope, ReplyTo, new_request, reply_for, to_headers
from bus.security.keys import KeyRing, SigningKey, generate_ed25519
from bus.security.signing import sign
from infra.cli.tail import render
from infra.cli.tail.match import (
    FORGED,
    HIJACK,
    MALFORMED,
    OK,
    REJECTED,
    TIMEOUT,
    UNSIGNED,
    VERIFIED,
    Call,
    CallFilter,
    Matcher,
    Seen,
    decode,
    principal_subject,
    trace_id,
)

GATEWAY, GATEWAY_VERIFY = generate_ed25519("gateway")
ORDERS, ORDERS_VERIFY = generate_ed25519("orders")
INVENTORY, INVENTORY_VERIFY = generate_ed25519("inventory")
KEYRING = KeyRing([GATEWAY_VERIFY, ORDERS_VERIFY, INVENTORY_VERIFY])
T0 = 1_700_000_000_000
TRACE = "0af7651916cd43dd8448eb211c80319c"
PRINCIPAL = json.dumps({"sub": "alice", "method": "jwt", "iss": "https://issuer"})


def request(*, at: int = T0, deadline: int | None = T0 + 5_000, correlation: str | None = None,
            attempt: int = 1, principal: str | None = PRINCIPAL) -> Envelope:
    envelope = new_request(source="gateway", operation="orders.create", value=b'{"a":1}',
                           reply_to=ReplyTo("mesh.replies", 3), deadline_ms=deadline or 0,
                           traceparent=f"00-{TRACE}-b7ad6b7169203331-01", at_ms=at,
                           correlation_id=correlation, attempt=attempt, principal=principal)
    return envelope if deadline is not None else replace(envelope, deadline_ms=None)


def reply(to: Envelope, *, at: int, error: dict[str, object] | None = None) -> Envelope:
    value = json.dumps(error if error is not None else {"total": "1.00"}).encode()
    return replace(reply_for(to, source="orders", value=value, error=error is not None),
                   time_ms=at)


def seen(envelope: Envelope, topic: str, key: SigningKey | None, *, offset: int = 0) -> Seen:
    signed = sign(envelope, topic, key) if key is not None else envelope
    return decode(topic, 0, offset, signed.time_ms, to_headers(signed), signed.value, KEYRING)


def test_a_genuine_call_is_verified_with_its_latency_principal_and_trace() -> None:
    matcher = Matcher(owners={"orders.create": "orders"})
    req = request()
    assert matcher.feed(seen(req, "orders.requests", GATEWAY)) == []
    assert matcher.pending == 1
    [call] = matcher.feed(seen(reply(req, at=T0 + 37), "mesh.replies", ORDERS))
    assert (call.operation, call.caller, call.callee) == ("orders.create", "gateway", "orders")
    assert (call.latency_ms, call.result, call.signature) == (37, OK, VERIFIED)
    assert call.principal == "alice"
    assert call.trace_id == TRACE
    assert call.correlation_id == req.correlation_id
    assert matcher.pending == 0


def test_signatures_are_judged_verified_forged_or_unsigned() -> None:
    req = request()
    assert seen(req, "orders.requests", GATEWAY).signature == VERIFIED
    # Signed for another topic: the signature covers the topic.
    moved = sign(req, "inventory.requests", GATEWAY)
    judged = decode("orders.requests", 0, 0, T0, to_headers(moved), moved.value, KEYRING)
    assert (judged.signature, judged.signature_problem) == (FORGED, "bad_signature")
    # The gateway's key id, another private key.
    impostor = SigningKey(GATEWAY.key_id, "ed25519", generate_ed25519("x")[0].secret)
    assert seen(req, "orders.requests", impostor).signature_problem == "bad_signature"
    # orders' genuine key claiming to be the gateway.
    assert seen(req, "orders.requests", ORDERS).signature_problem == "sender_mismatch"
    stranger, _ = generate_ed25519("gateway")
    assert seen(req, "orders.requests", stranger).signature_problem == "unknown_key_id"
    assert seen(req, "orders.requests", None).signature == UNSIGNED


def test_a_forged_or_unsigned_request_is_shown_at_once_as_rejected() -> None:
    matcher = Matcher(owners={"orders.create": "orders"})
    impostor = SigningKey(GATEWAY.key_id, "ed25519", generate_ed25519("x")[0].secret)
    [forged] = matcher.feed(seen(request(), "orders.requests", impostor))
    assert (forged.signature, forged.result, forged.callee) == (FORGED, REJECTED, "orders")
    assert forged.detail == "bad_signature"
    [unsigned] = matcher.feed(seen(request(), "orders.requests", None))
    assert (unsigned.signature, unsigned.result) == (UNSIGNED, REJECTED)
    assert matcher.pending == 0


def test_a_forged_reply_is_rejected_and_the_call_waits_for_the_genuine_one() -> None:
    matcher = Matcher()
    req = request()
    matcher.feed(seen(req, "orders.requests", GATEWAY))
    [forged] = matcher.feed(seen(reply(req, at=T0 + 5), "mesh.replies", GATEWAY))  # wrong sender
    assert (forged.signature, forged.result, forged.detail) == (FORGED, REJECTED,
                                                                "sender_mismatch")
    [unsigned] = matcher.feed(seen(reply(req, at=T0 + 6), "mesh.replies", None, offset=1))
    assert (unsigned.result, unsigned.detail) == (REJECTED, "missing_signature")
    assert matcher.pending == 1
    [call] = matcher.feed(seen(reply(req, at=T0 + 9), "mesh.replies", ORDERS, offset=2))
    assert (call.result, call.signature, call.callee, call.latency_ms) == (OK, VERIFIED,
                                                                          "orders", 9)


def hijack(to: Envelope, source: str, *, at: int, operation: str | None = None,
           error: bool = False) -> Envelope:
    value = b'{"code":"not_found","message":"no such order"}' if error else b'{"total":"0"}'
    envelope = replace(reply_for(to, source=source, value=value, error=error), time_ms=at)
    return envelope if operation is None else replace(envelope, type=operation)


@pytest.mark.parametrize(("source", "operation", "error", "reason"), [
    ("inventory", None, False, "unexpected_replier"),
    ("inventory", None, True, "unexpected_replier"),
    ("orders", "orders.quote", False, "unexpected_reply_type"),
])
def test_a_validly_signed_reply_from_anyone_but_the_owner_is_a_hijack_never_ok(
    source: str, operation: str | None, error: bool, reason: str,
) -> None:
    matcher = Matcher(owners={"orders.create": "orders"})
    req = request()
    matcher.feed(seen(req, "orders.requests", GATEWAY))
    key = INVENTORY if source == "inventory" else ORDERS
    [hijacked] = matcher.feed(seen(hijack(req, source, at=T0 + 3, operation=operation,
                                          error=error), "mesh.replies", key))
    assert (hijacked.result, hijacked.signature, hijacked.callee) == (HIJACK, VERIFIED, source)
    assert hijacked.detail is not None
    assert hijacked.detail.startswith(f"{reason}: ")
    assert render.style_of(hijacked) == "bold red"
    assert "HIJACK" in render.text_line(hijacked)
    assert matcher.pending == 1  # still waiting: the owner's genuine reply is the call
    [call] = matcher.feed(seen(reply(req, at=T0 + 30), "mesh.replies", ORDERS, offset=1))
    assert (call.result, call.callee, call.latency_ms) == (OK, "orders", 30)
    assert matcher.pending == 0


def test_the_policy_owner_is_the_expected_replier() -> None:
    matcher = Matcher(owners={"orders.create": "inventory"})
    req = request()
    matcher.feed(seen(req, "orders.requests", GATEWAY))
    [hijacked] = matcher.feed(seen(reply(req, at=T0 + 3), "mesh.replies", ORDERS))
    assert hijacked.result == HIJACK
    [call] = matcher.feed(seen(hijack(req, "inventory", at=T0 + 4), "mesh.replies", INVENTORY,
                               offset=1))
    assert (call.result, call.callee) == (OK, "inventory")


def test_replies_read_before_their_request_are_judged_when_it_comes() -> None:
    matcher = Matcher(owners={"orders.create": "orders"}, grace_ms=1_000)
    req = request()
    assert matcher.feed(seen(hijack(req, "inventory", at=T0 + 2), "mesh.replies",
                             INVENTORY)) == []
    assert matcher.feed(seen(reply(req, at=T0 + 5), "mesh.replies", ORDERS, offset=1)) == []
    hijacked, call = matcher.feed(seen(req, "orders.requests", GATEWAY))
    assert (hijacked.result, call.result, call.callee) == (HIJACK, OK, "orders")


def test_a_lone_reply_from_a_service_that_does_not_own_its_operation_is_a_hijack() -> None:
    matcher = Matcher(grace_ms=0)
    matcher.feed(seen(hijack(request(), "inventory", at=T0 + 2), "mesh.replies", INVENTORY))
    [call] = matcher.expire(T0 + 2)
    assert (call.caller, call.callee, call.result) == (None, "inventory", HIJACK)


def test_an_error_reply_shows_its_code() -> None:
    matcher = Matcher()
    req = request()
    matcher.feed(seen(req, "orders.requests", GATEWAY))
    error = {"code": "invalid_input", "message": "no lines", "retriable": False}
    [call] = matcher.feed(seen(reply(req, at=T0 + 12, error=error), "mesh.replies", ORDERS))
    assert (call.result, call.latency_ms, call.detail) == ("invalid_input", 12, "no lines")


def test_retries_share_the_call_and_duplicate_replies_are_not_new_calls() -> None:
    matcher = Matcher()
    first = request()
    retry = request(at=T0 + 100, correlation=first.correlation_id, attempt=2)
    matcher.feed(seen(first, "orders.requests", GATEWAY))
    assert matcher.feed(seen(retry, "orders.requests", GATEWAY, offset=1)) == []
    [call] = matcher.feed(seen(reply(first, at=T0 + 150), "mesh.replies", ORDERS))
    assert (call.attempts, call.latency_ms) == (2, 150)
    assert matcher.feed(seen(reply(retry, at=T0 + 160), "mesh.replies", ORDERS, offset=1)) == []
    assert matcher.duplicates == 1


def test_an_unanswered_request_times_out_after_its_deadline_and_the_grace() -> None:
    matcher = Matcher(owners={"orders.create": "orders"}, grace_ms=1_000)
    matcher.feed(seen(request(deadline=T0 + 5_000), "orders.requests", GATEWAY))
    assert matcher.expire(T0 + 5_999) == []
    [call] = matcher.expire(T0 + 6_000)
    assert (call.result, call.callee, call.latency_ms) == (TIMEOUT, "orders", None)
    assert matcher.pending == 0


def test_a_request_without_deadline_waits_a_minute() -> None:
    matcher = Matcher(grace_ms=0)
    matcher.feed(seen(request(deadline=None), "orders.requests", GATEWAY))
    assert matcher.expire(T0 + 59_999) == []
    assert [c.result for c in matcher.expire(T0 + 60_000)] == [TIMEOUT]


def test_a_reply_read_before_its_request_waits_for_it() -> None:
    matcher = Matcher(grace_ms=1_000)
    req = request()
    assert matcher.feed(seen(reply(req, at=T0 + 20), "mesh.replies", ORDERS)) == []
    [call] = matcher.feed(seen(req, "orders.requests", GATEWAY))
    assert (call.caller, call.latency_ms, call.result) == ("gateway", 20, OK)


def test_a_reply_whose_request_never_comes_is_shown_alone_after_the_grace() -> None:
    matcher = Matcher(grace_ms=1_000)
    req = request()
    matcher.feed(seen(reply(req, at=T0 + 20), "mesh.replies", ORDERS))
    assert matcher.expire(T0 + 1_019) == []
    [call] = matcher.expire(T0 + 1_020)
    assert (call.caller, call.callee, call.latency_ms, call.result) == (None, "orders", None, OK)
    # A late copy of the request is now a new (unanswered) call, not a match.
    assert matcher.feed(seen(req, "orders.requests", GATEWAY)) == []


def test_memory_is_bounded() -> None:
    matcher = Matcher(max_pending=3, max_done=2)
    for i in range(5):
        matcher.feed(seen(request(at=T0 + i), "orders.requests", GATEWAY, offset=i))
    assert (matcher.pending, matcher.dropped) == (3, 2)
    for i in range(5):  # early replies are bounded too
        matcher.feed(seen(reply(request(), at=T0 + i), "mesh.replies", ORDERS, offset=i))
    assert len(matcher._early) == 3
    with pytest.raises(ValueError, match="max_pending"):
        Matcher(max_pending=0)


def test_a_record_that_is_not_an_envelope_is_malformed() -> None:
    matcher = Matcher()
    bad = decode("orders.requests", 2, 9, T0, [("ce_id", b"x")], b"{}", KEYRING)
    [call] = matcher.feed(bad)
    assert call.result == MALFORMED
    assert call.detail is not None
    assert "orders.requests:2@9" in call.detail


def test_principal_and_trace_helpers_never_raise() -> None:
    assert principal_subject(PRINCIPAL) == "alice"
    assert principal_subject("not json") is None
    assert principal_subject('["sub"]') is None
    assert principal_subject(None) is None
    assert trace_id(f"00-{TRACE.upper()}-b7ad6b7169203331-01") == TRACE
    assert trace_id("garbage") is None


def _call(**changes: object) -> Call:
    base: dict[str, object] = dict(at_ms=T0, operation="orders.create", caller="gateway",
                                   callee="orders", latency_ms=8, result=OK,
                                   signature=VERIFIED, principal="alice", trace_id=TRACE)
    base.update(changes)
    return Call(**base)  # type: ignore[arg-type]


def test_filters() -> None:
    call = _call()
    assert CallFilter().accepts(call)
    assert CallFilter(operation="orders.*").accepts(call)
    assert not CallFilter(operation="inventory.*").accepts(call)
    assert CallFilter(service="gateway").accepts(call)
    assert CallFilter(service="orders").accepts(call)
    assert not CallFilter(service="inventory").accepts(call)
    assert CallFilter(trace=TRACE.upper()).accepts(call)
    assert not CallFilter(trace="0" * 32).accepts(call)


def test_text_and_json_lines() -> None:
    line = render.text_line(_call(attempts=2))
    assert line.startswith("22:13:20.000  orders.create")
    for part in ("gateway -> orders", "8 ms", "ok (2 tries)", "verified", "alice"):
        assert part in line
    assert render.header().split()[:2] == ["TIME", "(UTC)"]
    orphan = render.text_line(_call(caller=None, latency_ms=None, principal=None,
                                    signature=FORGED, detail="bad_signature"))
    assert "? -> orders" in orphan
    assert "  -  " in orphan
    assert orphan.endswith("(bad_signature)")
    data = json.loads(render.json_line(_call()))
    assert data == {"time_ms": T0, "operation": "orders.create", "caller": "gateway",
                    "callee": "orders", "latency_ms": 8, "result": "ok",
                    "signature": "verified", "principal": "alice", "trace_id": TRACE,
                    "correlation_id": None, "attempts": 1, "detail": None}
    assert render.style_of(_call(signature=FORGED)) == "bold red"
    assert render.style_of(_call(result=TIMEOUT)) == "yellow"


def test_pair_macs_are_verified_with_the_receivers_key_or_shown_sealed() -> None:
    from bus.security.pair_mac import PairKeys
    from infra.cli.tail.match import SEALED

    req = request()
    sealed = PairKeys([GATEWAY]).seal(req, "orders.requests", GATEWAY, ORDERS_VERIFY)

    def judged(envelope: Envelope, pair: PairKeys | None) -> tuple[str, str | None]:
        view = decode("orders.requests", 0, 0, envelope.time_ms, to_headers(envelope),
                      envelope.value, KEYRING, pair)
        return view.signature, view.signature_problem

    operator = PairKeys([ORDERS, INVENTORY])  # the receivers' secrets, read by the operator
    assert judged(sealed, operator) == (VERIFIED, None)
    assert judged(sealed, None) == (SEALED, None)
    assert judged(sealed, PairKeys([INVENTORY])) == (SEALED, None)
    assert judged(replace(sealed, value=b'{"a":2}'), operator) == (FORGED, "bad_signature")
    # A sealed request answered without a signature is still a refused reply.
    matcher = Matcher(owners={"orders.create": "orders"})
    assert matcher.feed(decode("orders.requests", 0, 0, req.time_ms, to_headers(sealed),
                               sealed.value, KEYRING)) == []
    [call] = matcher.feed(seen(reply(req, at=T0 + 5), "mesh.replies", None))
    assert (call.result, call.detail) == (REJECTED, "missing_signature")
