"""Replaying a dead letter (pure): ``bus.delivery.dlq.Replayer`` refuses what receivers would
refuse, and sends the original record plus an operator countersignature that admission
(``bus.security.inbound`` with ``bus.security.replay_countersign``) accepts exactly once."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bus.delivery.dlq import (
    DeadLetter,
    NotReplayable,
    Replayer,
    ReplayPlan,
    dead_letter_from_record,
)
from bus.delivery.retry_topics import (
    FAILURE_HEADERS,
    DeadLetterHop,
    Failure,
    hop_headers,
)
from bus.envelope import (
    H_REPLAY_ID,
    H_REPLAY_SIG,
    H_REPLAY_TIME,
    KIND_EVENT,
    Envelope,
    ReplyTo,
    from_record,
    new_id,
    new_request,
    to_headers,
)
from bus.errors import MeshError
from bus.security.access import AccessPolicy
from bus.security.inbound import InboundGuard
from bus.security.keys import KeyRing, SigningKey, generate_ed25519
from bus.security.replay import ReplayGuard
from bus.security.replay_countersign import countersign, parse_stamp
from bus.security.signing import sign
from bus.transport import Record

MAIN = "orders.events"
DLT = f"{MAIN}.dlt"
T0 = 1_700_000_000_000
WINDOW = 300_000
KEYS = {name: generate_ed25519(name) for name in ("publisher", "gateway", "operator")}
KEYRING = KeyRing(verify for _, verify in KEYS.values())
ACCESS = AccessPolicy.from_dict({"publisher": [MAIN], "gateway": ["orders.requests"]}, None,
                                {"operator": [MAIN]})
REPLAYER = Replayer(KEYRING, ACCESS, "operator", KEYS["operator"][0])


def key(name: str) -> SigningKey:
    return KEYS[name][0]


def event(source: str = "publisher", **fields: object) -> Envelope:
    envelope = Envelope(id=new_id(), source=source, type="order.created", kind=KIND_EVENT,
                        value=b'{"order":"o-1"}', time_ms=T0)
    return replace(envelope, **fields)  # type: ignore[arg-type]


def signed(envelope: Envelope | None = None, topic: str = MAIN, by: str = "publisher"
           ) -> Envelope:
    return sign(envelope or event(), topic, key(by))


def dead(envelope: Envelope, *, dlt: str = DLT, original_topic: str = MAIN,
         offset: int = 0) -> DeadLetter:
    """``envelope`` as a subscriber parks it on ``dlt`` after its last attempt."""
    headers = hop_headers(replace(envelope, attempt=3), DeadLetterHop(dlt, 3, "exhausted"),
                          original_topic=original_topic,
                          failure=Failure("busy", "not ready", True), failed_at_ms=T0 + 50)
    return dead_letter_from_record(Record(dlt, 0, offset, envelope.value, b"k1", headers))


def guard() -> InboundGuard:
    return InboundGuard(KEYRING, ACCESS, ReplayGuard(WINDOW, 1000), WINDOW, 1 << 20)


def record(plan: ReplayPlan, offset: int) -> Record:
    return Record(plan.topic, 0, offset, plan.value, plan.key, plan.headers)


# --- the tool: what it sends --------------------------------------------------------------


def test_a_replay_is_the_original_record_countersigned_by_the_operator() -> None:
    original = signed(event(extra=(("x-tenant", b"acme"),)))
    plan = REPLAYER.plan(dead(original), now_ms=T0 + 3_600_000, replay_id="r1")

    assert (plan.topic, plan.key, plan.value, plan.replay_id) == (MAIN, b"k1", original.value,
                                                                  "r1")
    sent = from_record(plan.headers, plan.value)
    # Everything the sender signed, and its own signature, unchanged; no failure headers.
    assert replace(sent, extra=()) == replace(original, extra=())
    assert not {name for name, _ in sent.extra} & FAILURE_HEADERS
    stamp = parse_stamp(sent.extra)
    assert stamp is not None
    assert (stamp.replay_id, stamp.time_ms) == ("r1", T0 + 3_600_000)
    assert stamp.signature.startswith(f"ed25519:{key('operator').key_id}:")
    assert ("x-tenant", b"acme") in sent.extra


def test_receivers_admit_a_replay_on_its_own_time_under_its_own_key() -> None:
    original = signed()
    now = T0 + 3_600_000  # an hour later
    first = REPLAYER.plan(dead(original), now_ms=now)
    admitted = guard().admit(record(first, 10), now)
    assert admitted.id == original.id
    # What the consumer's durable record deduplicates it on (bus.delivery.replay_memory): its own
    # replay id, distinct from the original's and from any later replay of it.
    stamp = parse_stamp(admitted.extra)
    assert stamp is not None
    assert stamp.dedupe_key == f"replay:{first.replay_id}"
    second = REPLAYER.plan(dead(original), now_ms=now + 1)
    again = parse_stamp(guard().admit(record(second, 12), now + 1).extra)
    assert again is not None
    assert again.dedupe_key != stamp.dedupe_key


def test_a_replayed_replay_is_countersigned_afresh() -> None:
    original = signed()
    plan = REPLAYER.plan(dead(original), now_ms=T0, replay_id="r1")
    again = dead(from_record(plan.headers, plan.value))
    replan = REPLAYER.plan(again, now_ms=T0 + 5, replay_id="r2")
    stamp = parse_stamp(from_record(replan.headers, replan.value).extra)
    assert stamp is not None
    assert stamp.replay_id == "r2"
    assert guard().admit(record(replan, 0), T0 + 5).id == original.id


def test_among_letters_sharing_an_id_only_a_genuine_one_is_sent() -> None:
    original = signed()
    forged = replace(original, principal='{"sub":"admin"}')
    letters = [dead(original, offset=0), dead(forged, offset=1)]
    plan = REPLAYER.plan_first(letters, now_ms=T0)
    assert from_record(plan.headers, plan.value).principal is None
    with pytest.raises(NotReplayable) as refused:
        REPLAYER.plan_first([dead(forged)], now_ms=T0)
    assert refused.value.reason == "bad_signature"


# --- the tool: what it refuses (nothing is planned, so nothing can be sent) ---------------

stranger, _ = generate_ed25519("publisher")
REFUSED = {
    "forged unsigned admin letter": (
        dead(event(source="gateway", principal='{"sub":"root","roles":["admin"]}')),
        "missing_signature"),
    "tampered value": (dead(replace(signed(), value=b'{"order":"o-2"}')), "bad_signature"),
    "tampered principal": (dead(replace(signed(), principal='{"sub":"admin"}')),
                           "bad_signature"),
    "signed by an untrusted key": (dead(sign(event(), MAIN, stranger)), "unknown_key_id"),
    "garbage signature": (dead(signed().with_signature("ed25519:x:y")), "malformed_signature"),
    "another service's key": (dead(signed(by="gateway")), "sender_mismatch"),
    "sender may not produce there": (dead(signed(event(source="gateway"), by="gateway")),
                                     "not_allowed"),
    "failure header names another topic": (dead(signed(), original_topic="admin.events"),
                                           "wrong_topic"),
    "signed for another topic": (
        dead(signed(topic="admin.events"), dlt="admin.events.dlt"),
        "wrong_topic"),
    "signed for another topic, headers agree with the DLT": (
        dead(signed(topic="admin.events")), "bad_signature"),
    "not a dead-letter topic": (dead(signed(), dlt=MAIN), "not_a_dead_letter_topic"),
    "a retry topic": (dead(signed(), dlt=f"{MAIN}.retry.1"), "not_a_dead_letter_topic"),
    "a request": (dead(sign(new_request(
        source="publisher", operation="orders.create", value=b"{}",
        reply_to=ReplyTo("mesh.replies", 0), deadline_ms=T0 + 1000, at_ms=T0), MAIN,
        key("publisher"))), "not_an_event"),
}


@pytest.mark.parametrize("label", sorted(REFUSED))
def test_the_tool_refuses(label: str) -> None:
    letter, reason = REFUSED[label]
    with pytest.raises(NotReplayable) as refused:
        REPLAYER.plan(letter, now_ms=T0)
    assert refused.value.reason == reason
    assert str(refused.value).startswith(f"{reason}: ")


def test_the_tool_refuses_unreadable_and_headerless_letters() -> None:
    junk = dead_letter_from_record(Record(DLT, 0, 0, b"junk", None, [("ce_id", b"x")]))
    with pytest.raises(NotReplayable, match="not a valid envelope"):
        REPLAYER.plan(junk, now_ms=T0)
    original = signed()
    bare = dead_letter_from_record(Record(DLT, 0, 1, original.value, None,
                                          to_headers(original)))
    with pytest.raises(NotReplayable) as refused:
        REPLAYER.plan(bare, now_ms=T0)
    assert refused.value.reason == "not_a_dead_letter"


def test_the_operator_must_be_allowed_and_sign_with_its_own_published_key() -> None:
    letter = dead(signed())
    nowhere = Replayer(KEYRING, AccessPolicy.from_dict({"publisher": [MAIN]}), "operator",
                       key("operator"))
    with pytest.raises(NotReplayable) as refused:
        nowhere.plan(letter, now_ms=T0)
    assert refused.value.reason == "replay_not_allowed"
    as_service = Replayer(KEYRING, ACCESS, "operator", key("gateway"))
    with pytest.raises(NotReplayable) as refused:
        as_service.plan(letter, now_ms=T0)
    assert refused.value.reason == "operator_key_unknown"


# --- receivers: countersignatures that are refused ----------------------------------------


def countersigned(envelope: Envelope, *, by: str = "operator", topic: str = MAIN,
                  replay_id: str = "r1", at: int = T0) -> Record:
    stamp = countersign(envelope, topic, key(by), replay_id=replay_id, time_ms=at)
    return Record(MAIN, 0, 0, envelope.value, None, [*to_headers(envelope), *stamp])


def refusal(rec: Record, now: int = T0) -> str:
    with pytest.raises(MeshError) as refused:
        guard().admit(rec, now)
    return refused.value.code


def test_receivers_refuse_bad_countersignatures() -> None:
    original = signed()
    good = countersigned(original)
    assert guard().admit(good, T0).id == original.id
    # A real service's key is not an operator's.
    assert refusal(countersigned(original, by="gateway")) == "replay_not_allowed"
    assert refusal(countersigned(original, by="publisher")) == "replay_not_allowed"
    # Countersigned for another topic, or with its id or time changed after signing.
    assert refusal(countersigned(original, topic="admin.events")) == (
        "bad_replay_countersignature")
    renamed = [(n, b"r2" if n == H_REPLAY_ID else v) for n, v in good.headers]
    assert refusal(replace(good, headers=renamed)) == "bad_replay_countersignature"
    moved = [(n, str(T0 + 1).encode() if n == H_REPLAY_TIME else v) for n, v in good.headers]
    assert refusal(replace(good, headers=moved)) == "bad_replay_countersignature"
    partial = [(n, v) for n, v in good.headers if n != H_REPLAY_SIG]
    assert refusal(replace(good, headers=partial)) == "bad_replay_countersignature"
    twice = [*good.headers, (H_REPLAY_ID, b"r3")]
    assert refusal(replace(good, headers=twice)) == "bad_replay_countersignature"
    stranger_stamp = countersign(original, MAIN, generate_ed25519("operator")[0],
                                 replay_id="r1", time_ms=T0)
    assert refusal(Record(MAIN, 0, 0, original.value, None,
                          [*to_headers(original), *stranger_stamp])) == (
        "bad_replay_countersignature")
    # The countersignature binds the original: moved onto another message, it fails.
    other = signed()
    stamp_headers = [(n, v) for n, v in good.headers if n in (H_REPLAY_ID, H_REPLAY_TIME,
                                                               H_REPLAY_SIG)]
    assert refusal(Record(MAIN, 0, 0, other.value, None,
                          [*to_headers(other), *stamp_headers])) == (
        "bad_replay_countersignature")


def test_receivers_refuse_a_countersigned_request_and_a_future_dated_replay() -> None:
    request = sign(new_request(source="publisher", operation="orders.create", value=b"{}",
                               reply_to=ReplyTo("mesh.replies", 0), deadline_ms=T0 + 1000,
                               at_ms=T0), MAIN, key("publisher"))
    assert refusal(countersigned(request)) == "replay_not_allowed"
    # Judged on the replay's time: one dated past the clock-skew bound is refused.
    assert refusal(countersigned(signed(), at=T0 + WINDOW + 1), now=T0) == "stale_message"
    # The countersignature never stands in for the original's own signature.
    assert refusal(countersigned(replace(signed(), value=b"{}"))) == "bad_signature"
