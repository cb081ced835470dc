"""The hostile records sent to the victim's request topic (pure: no I/O; ``now`` is passed).

Each case is one raw Kafka record (headers and value, as an attacker's own producer would
write them) and the category it counts in. ``genuine`` records are not attacks: the control
and the originals that replays copy; they must reach the handler exactly once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from bus.envelope import (
    H_ATTEMPT,
    H_DEADLINE,
    H_ID,
    H_KIND,
    H_REPLY_TO,
    H_SIGNATURE,
    H_SOURCE,
    H_SPECVERSION,
    H_TIME,
    H_TRACEPARENT,
    H_TYPE,
    MAX_HEADER_VALUE,
    Envelope,
    ReplyTo,
    new_request,
    to_headers,
)
from bus.security.batch_sig import BatchHeader, leaf_hash, parse_batch, root_for
from bus.security.batch_signer import seal_batch
from bus.security.identity import Identity
from bus.security.keys import VerifyKey, generate_ed25519
from bus.security.pair_mac import PairHeader, parse_pair_header
from bus.security.principals import assert_principal
from bus.security.signing import canonical_bytes, sign, sign_bytes
from proof.attack.cast import REPLIES, Cast
from proof.attack.legacy_wire import v3_headers, v3_signature

RawHeaders = list[tuple[str, bytes | None]]

FORGED = "forged_signature"
TAMPERED = "tampered"
REPLAYED = "replayed"
STALE = "stale"
UNSIGNED = "unsigned"
NOT_ALLOWED = "topic_not_allowed"
IMPERSONATION = "impersonation"
MALFORMED = "malformed_envelope"
RANDOM = "random_bytes"
OVERSIZED = "oversized_value"
PRINCIPAL_SPOOF = "principal_spoof"
WIRE_FORMAT = "wire_format"
PAIR_FORGED = "pair_mac_forged"
BATCH_FORGED = "batch_signature_forged"
CATEGORIES = (FORGED, TAMPERED, REPLAYED, STALE, UNSIGNED, NOT_ALLOWED, IMPERSONATION,
              MALFORMED, RANDOM, OVERSIZED, PRINCIPAL_SPOOF, WIRE_FORMAT, PAIR_FORGED,
              BATCH_FORGED)
GENUINE = "genuine"
HOUR_MS = 3_600_000
ALICE = '{"method":"jwt","sub":"alice"}'
ADMIN = '{"method":"jwt","scopes":["admin"],"sub":"admin"}'


@dataclass(frozen=True)
class MeshCase:
    category: str  # one of CATEGORIES, or GENUINE / "control" for records that must reach
    label: str
    headers: RawHeaders
    value: bytes | None
    message_id: str | None = None  # the ce_id a handler would see, for attribution

    @property
    def genuine(self) -> bool:
        return self.category in (GENUINE, "control")


def _case(category: str, label: str, envelope: Envelope) -> MeshCase:
    headers: RawHeaders = list(to_headers(envelope))
    return MeshCase(category, label, headers, envelope.value, envelope.id)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Builder:
    """Builds requests to ``cast.topic`` as its caller would send them, and the attacks."""

    def __init__(self, cast: Cast, now_ms: int, value_bytes: int = 64) -> None:
        self.cast = cast
        self.topic = cast.topic
        self.now = now_ms
        self.value = b'{"attack":"' + b"a" * max(0, value_bytes - 13) + b'"}'

    def request(self, source: str | None = None, value: bytes | None = None,
                **fields: object) -> Envelope:
        envelope = new_request(
            source=source or self.cast.caller.service, operation=f"{self.cast.victim.service}.op",
            value=self.value if value is None else value, reply_to=ReplyTo(REPLIES, 0),
            deadline_ms=self.now + 60_000, at_ms=self.now)
        return replace(envelope, **fields)  # type: ignore[arg-type]

    def signed(self, envelope: Envelope | None = None, topic: str | None = None) -> Envelope:
        return sign(envelope or self.request(), topic or self.topic,
                    self.cast.key_of(self.cast.caller))

    # --- genuine -----------------------------------------------------------------------

    def control(self) -> MeshCase:
        return _case("control", "genuine signed request", self.signed())

    # --- attacks -----------------------------------------------------------------------

    def forged(self) -> Iterator[MeshCase]:
        stranger, _ = generate_ed25519(self.cast.caller.service)  # a key nobody trusts
        yield _case(FORGED, "signed by an untrusted key",
                    sign(self.request(), self.topic, stranger))
        caller_key = self.cast.key_of(self.cast.caller)
        genuine = self.signed()
        algorithm, key_id, signature = (genuine.signature or "::").split(":")
        yield _case(FORGED, "random signature bytes, real key id",
                    genuine.with_signature(f"{algorithm}:{key_id}:{_b64(secrets.token_bytes(64))}"))
        # HMAC keyed with the caller's public key under its key id: algorithm confusion.
        public = caller_key.verify_key(self.cast.caller.service).material
        body = self.request()
        confused = hmac.new(public, canonical_bytes(body, self.topic), hashlib.sha256).digest()
        yield _case(FORGED, "hmac with the public key (alg confusion)",
                    body.with_signature(f"hmac-sha256:{key_id}:{_b64(confused)}"))
        yield _case(FORGED, "malleated signature (S + L) of a genuine record",
                    genuine.with_signature(f"{algorithm}:{key_id}:{_malleated(signature)}"))
        yield _case(FORGED, "signature header garbage", body.with_signature("not a signature"))
        yield _case(FORGED, "truncated signature",
                    body.with_signature(f"{algorithm}:{key_id}:{signature[:20]}"))
        yield _case(FORGED, "unknown algorithm",
                    body.with_signature(f"rsa:{key_id}:{signature}"))

    def tampered(self) -> Iterator[MeshCase]:
        good = self.signed()
        yield _case(TAMPERED, "value changed after signing", replace(good, value=b'{"a":1}'))
        yield _case(TAMPERED, "operation changed", replace(good, type=good.type + "x"))
        yield _case(TAMPERED, "deadline extended", replace(good, deadline_ms=self.now + HOUR_MS))
        yield _case(TAMPERED, "reply redirected",
                    replace(good, reply_to=ReplyTo(REPLIES, 1)))
        yield _case(TAMPERED, "principal injected", replace(good, principal='{"sub":"admin"}'))
        yield _case(TAMPERED, "signed for another topic",
                    self.signed(topic="somewhere.else.requests"))
        yield _case(TAMPERED, "time moved (fresh again)", replace(good, time_ms=self.now + 1))

    def replayed(self) -> Iterator[MeshCase]:
        original = self.signed()
        yield _case(GENUINE, "original of the replays", original)
        yield _case(REPLAYED, "exact copy", original)
        again = _case(REPLAYED, "copy with a new attempt and trace", original)
        yield replace(again, headers=[*(h for h in again.headers if h[0] != H_ATTEMPT),
                                      (H_ATTEMPT, b"2"),
                                      (H_TRACEPARENT, b"00-" + b"1" * 32 + b"-" + b"2" * 16
                                       + b"-01")])
        yield _case(REPLAYED, "same id re-signed with another value",
                    self.signed(replace(original, value=b'{"b":2}', signature=None)))

    def stale(self) -> Iterator[MeshCase]:
        yield _case(STALE, "an hour old", self.signed(self.request(time_ms=self.now - HOUR_MS)))
        yield _case(STALE, "a day old", self.signed(self.request(time_ms=self.now - 24 * HOUR_MS)))
        yield _case(STALE, "an hour in the future",
                    self.signed(self.request(time_ms=self.now + HOUR_MS)))
        yield _case(STALE, "epoch zero", self.signed(self.request(time_ms=0)))

    def unsigned(self) -> Iterator[MeshCase]:
        yield _case(UNSIGNED, "no mesh_sig", self.request())
        yield _case(UNSIGNED, "empty mesh_sig", self.request().with_signature(""))

    def not_allowed(self) -> Iterator[MeshCase]:
        other = self.cast.other
        yield _case(NOT_ALLOWED, "trusted service without the right to produce here",
                    sign(self.request(source=other.service), self.topic, self.cast.key_of(other)))
        victim = self.cast.victim
        yield _case(NOT_ALLOWED, "the victim writing to its own request topic",
                    sign(self.request(source=victim.service), self.topic,
                         self.cast.key_of(victim)))

    def impersonation(self) -> Iterator[MeshCase]:
        other = self.cast.other
        yield _case(IMPERSONATION, "own key, claims to be the caller",
                    sign(self.request(), self.topic, self.cast.key_of(other)))
        victim = self.cast.victim
        yield _case(IMPERSONATION, "victim's key, claims to be the caller",
                    sign(self.request(), self.topic, self.cast.key_of(victim)))

    def principal_spoof(self) -> Iterator[MeshCase]:
        """The trusted, allowed caller is not an edge: it may only forward a principal the
        edge asserted, unchanged. Every request below is validly signed by it."""
        edge_key = self.cast.key_of(self.cast.edge)
        expires = self.now + 60_000  # the edge's deadline: the requests' own
        genuine = assert_principal(ALICE, expires, edge_key)

        def speaking_for(label: str, principal: str, assertion: str | None,
                         category: str = PRINCIPAL_SPOOF) -> MeshCase:
            return _case(category, label, self.signed(self.request(
                principal=principal, principal_assertion=assertion)))

        yield speaking_for("nested call forwarding the edge's assertion", ALICE, genuine,
                           GENUINE)
        yield speaking_for("admin principal, no assertion", ADMIN, None)
        yield speaking_for("assertion by the caller's own key (not an edge)", ADMIN,
                           assert_principal(ADMIN, expires, self.cast.key_of(self.cast.caller)))
        yield speaking_for("assertion by another trusted service (not an edge)", ADMIN,
                           assert_principal(ADMIN, expires, self.cast.key_of(self.cast.other)))
        yield speaking_for("expired edge assertion", ADMIN,
                           assert_principal(ADMIN, self.now - 1_000, edge_key))
        yield speaking_for("edge assertion of other principal bytes (same JSON, reordered)",
                           '{"sub":"alice","method":"jwt"}', genuine)
        yield speaking_for("genuine edge assertion moved onto another principal", ADMIN, genuine)
        algorithm, key_id, _, signature = genuine.split(":")
        yield speaking_for("genuine edge assertion with its expiry pushed back", ALICE,
                           f"{algorithm}:{key_id}:{self.now + HOUR_MS}:{signature}")

    def malformed(self) -> Iterator[MeshCase]:
        good = self.signed()
        base: RawHeaders = list(to_headers(good))

        def variant(label: str, headers: RawHeaders) -> MeshCase:
            return MeshCase(MALFORMED, label, headers, good.value, good.id)

        for name in (H_ID, H_SOURCE, H_TYPE, H_TIME, H_KIND, H_REPLY_TO):
            yield variant(f"missing {name}", [h for h in base if h[0] != name])
        for name in (H_ID, H_SOURCE, H_SIGNATURE, H_TIME):
            first = next(h for h in base if h[0] == name)
            yield variant(f"duplicate {name}", [*base, (name, (first[1] or b"") + b"x")])
        yield variant("oversized ce_type", _set(base, H_TYPE, b"t" * (MAX_HEADER_VALUE + 1)))
        yield variant("non-UTF-8 ce_source", _set(base, H_SOURCE, b"\xff\xfeatk"))
        yield variant("unknown kind", _set(base, H_KIND, b"command"))
        yield variant("non-numeric ce_time", _set(base, H_TIME, b"yesterday"))
        yield variant("non-ASCII digits in deadline", _set(base, H_DEADLINE, "١٢٣".encode()))
        yield variant("reply_to without partition", _set(base, H_REPLY_TO, b"mesh.replies"))
        yield variant("attempt zero", _set(base, H_ATTEMPT, b"0"))
        yield variant("null header value", _set(base, H_ID, None))
        yield variant("no headers at all", [])

    def wire_format(self) -> Iterator[MeshCase]:
        """The version boundary (docs/wire-format.md): records by the trusted, allowed caller's
        own key that a receiver of the previous format (meshgate-sig-v3) would have handled, and
        other spellings of signed fields."""
        key = self.cast.key_of(self.cast.caller)
        body = self.request()
        yield MeshCase(WIRE_FORMAT, "genuine v3 record (epoch-ms ce_time, no ce_specversion)",
                       list(v3_headers(body, self.topic, key)), body.value, body.id)
        v4_with_v3_sig: RawHeaders = list(to_headers(body.with_signature(
            v3_signature(body, self.topic, key))))
        yield MeshCase(WIRE_FORMAT, "v4 headers carrying the v3 signature of the same content",
                       v4_with_v3_sig, body.value, body.id)
        good = self.signed()
        base: RawHeaders = list(to_headers(good))
        at = next(raw for name, raw in base if name == H_TIME) or b""
        for label, text in (("ce_time respelled +00:00 (same instant)",
                             at[:23] + b"+00:00"),
                            ("ce_time without milliseconds", at[:19] + b"Z"),
                            ("ce_time in epoch ms", str(good.time_ms).encode())):
            yield MeshCase(WIRE_FORMAT, label, _set(base, H_TIME, text), good.value, good.id)
        own = self.signed()
        algorithm, key_id, signature_text = (own.signature or "").split(":")
        yield _case(WIRE_FORMAT, "genuine record, its signature respelled in base64url",
                    own.with_signature(f"{algorithm}:{key_id}:{respelled(signature_text)}"))
        yield MeshCase(WIRE_FORMAT, "ce_specversion 0.3", _set(base, H_SPECVERSION, b"0.3"),
                       good.value, good.id)
        yield MeshCase(WIRE_FORMAT, "ce_specversion removed",
                       [h for h in base if h[0] != H_SPECVERSION], good.value, good.id)
        # The signed integers respelled (found by the Java verifier, tests/interop): each copy
        # of its own genuine record, so each one admitted would reach the handler.
        respellings: tuple[tuple[str, str, Callable[[bytes], bytes]], ...] = (
            ("mesh_deadline respelled with a leading zero", H_DEADLINE, _leading_zero),
            ("mesh_reply_to partition respelled with a leading zero", H_REPLY_TO,
             _partition_leading_zero))
        for label, name, respell in respellings:
            own = self.signed()
            headers: RawHeaders = list(to_headers(own))
            text = next(raw for n, raw in headers if n == name) or b""
            yield MeshCase(WIRE_FORMAT, label, _set(headers, name, respell(text)), own.value,
                           own.id)

    def sealed(self, envelope: Envelope | None = None, *, by: Identity | None = None,
               to: VerifyKey | None = None, topic: str | None = None) -> Envelope:
        """``envelope`` with a per-pair MAC by ``by`` (the caller) for ``to`` (the victim)."""
        sender = by or self.cast.caller
        assert sender.pair is not None
        return sender.pair.seal(envelope or self.request(), topic or self.topic,
                                self.cast.key_of(sender), to or self._public(self.cast.victim))

    def _public(self, identity: Identity) -> VerifyKey:
        return self.cast.key_of(identity).verify_key(identity.service)

    def pair_forged(self) -> Iterator[MeshCase]:
        """Per-pair MACs (the victim accepts them) made by whoever is not the caller, and
        every way to reuse a genuine one: each is refused, the genuine one runs once."""
        cast = self.cast
        genuine = self.sealed()
        yield _case(GENUINE, "genuine pair-MAC request", genuine)
        header = parse_pair_header(genuine.signature or "")
        caller_id, victim_id = header.sender_key_id, header.receiver_key_id
        # atk-other's own valid key: the pair (other -> victim) is genuine, the source is not.
        claimed = self.sealed(self.request(), by=cast.other)
        yield _case(PAIR_FORGED, "another service's pair key, claiming the caller", claimed)
        other = parse_pair_header(claimed.signature or "")
        yield _case(PAIR_FORGED, "another service's pair MAC relabelled as the caller's",
                    claimed.with_signature(PairHeader(caller_id, victim_id, other.mac).encode()))
        # Made for the edge (a pair the victim is not in), then sent to the victim.
        for_edge = self.sealed(to=self._public(cast.edge))
        yield _case(PAIR_FORGED, "the caller's MAC for another receiver", for_edge)
        edge_mac = parse_pair_header(for_edge.signature or "").mac
        yield _case(PAIR_FORGED, "the caller's MAC for another receiver, relabelled",
                    for_edge.with_signature(PairHeader(caller_id, victim_id, edge_mac).encode()))
        # Reflection: the victim's own MAC to the caller, turned round.
        body = self.request()
        reflected = self.sealed(body, by=cast.victim, to=self._public(cast.caller))
        mac = parse_pair_header(reflected.signature or "").mac
        yield _case(PAIR_FORGED, "the victim's MAC to the caller, reflected",
                    body.with_signature(PairHeader(caller_id, victim_id, mac).encode()))
        # Keyed with what everyone knows: the two public keys.
        public = self._public(cast.caller).material + self._public(cast.victim).material
        guess = hmac.new(public, canonical_bytes(body, self.topic), hashlib.sha256).digest()
        yield _case(PAIR_FORGED, "HMAC keyed with the public keys",
                    body.with_signature(PairHeader(caller_id, victim_id, guess).encode()))
        yield _case(PAIR_FORGED, "random MAC bytes, real key ids",
                    body.with_signature(PairHeader(caller_id, victim_id,
                                                   secrets.token_bytes(32)).encode()))
        yield _case(PAIR_FORGED, "genuine pair MAC, value changed",
                    replace(self.sealed(), value=self.value + b" "))
        yield _case(PAIR_FORGED, "genuine pair MAC, sent to another topic",
                    self.sealed(topic="some.other.requests"))
        yield _case(PAIR_FORGED, "genuine pair MAC, replayed (same id)", genuine)
        stranger, _ = generate_ed25519(cast.caller.service)
        assert cast.caller.pair is not None
        yield _case(PAIR_FORGED, "pair MAC by an untrusted key",
                    cast.caller.pair.seal(self.request(), self.topic, stranger,
                                          self._public(cast.victim)))


    def batch(self, count: int = 3, *, by: Identity | None = None, source: str | None = None,
              topic: str | None = None) -> list[Envelope]:
        """``count`` requests signed as one batch (docs/wire-format.md §3b) by ``by``'s key."""
        sender = by or self.cast.caller
        return seal_batch([(self.request(source), topic or self.topic) for _ in range(count)],
                          self.cast.key_of(sender))

    def batch_forged(self) -> Iterator[MeshCase]:
        """Batch signatures: two genuine messages of the caller's batch run once each (the
        victim verifies the root once), and every way to stretch a batch is refused."""
        cast = self.cast
        first, second, third = self.batch()
        yield _case(GENUINE, "genuine batch request (first of its batch)", first)
        yield _case(GENUINE, "genuine batch request (second, root already verified)", second)
        header = parse_batch(third.signature or "")
        # The root of first/second/third is verified by now: each copy below must still fail.
        yield _case(BATCH_FORGED, "genuine batch message, value changed (root verified)",
                    replace(third, value=self.value + b" "))
        yield _case(BATCH_FORGED, "a batch message carrying another's path",
                    third.with_signature(second.signature or ""))
        yield _case(BATCH_FORGED, "a batch message claiming a larger batch",
                    third.with_signature(replace(header, count=4).encode()))
        yield _case(BATCH_FORGED, "a batch message with random signature bytes",
                    third.with_signature(replace(header, signature=secrets.token_bytes(64))
                                         .encode()))
        # The same bytes in a second base64url spelling (a spare bit of the last character
        # set): a lenient decoder would read the genuine path or signature and admit the copy.
        path_text = (third.signature or "").rpartition(":")[2]
        yield _case(BATCH_FORGED, "genuine batch message, its path respelled (root verified)",
                    third.with_signature((third.signature or "").removesuffix(path_text)
                                         + respelled(path_text)))
        fresh = self.batch(2)[1]
        signature_text = (fresh.signature or "").split(":")[3]
        yield _case(BATCH_FORGED, "genuine batch message, its signature respelled",
                    fresh.with_signature((fresh.signature or "").replace(
                        f":{signature_text}:", f":{respelled(signature_text)}:")))
        yield _case(BATCH_FORGED, "the caller's batch signed for another topic",
                    self.batch(2, topic="some.other.requests")[0])
        # atk-other's own valid key: its batch is genuine, the source it claims is not.
        claimed = self.batch(2, by=cast.other, source=cast.caller.service)
        yield _case(BATCH_FORGED, "another service's batch key, claiming the caller", claimed[0])
        other = parse_batch(claimed[1].signature or "")
        yield _case(BATCH_FORGED, "another service's batch relabelled with the caller's key id",
                    claimed[1].with_signature(replace(other, key_id=header.key_id).encode()))
        pair = self.batch(2)
        bare = parse_batch(pair[0].signature or "")
        root = root_for(leaf_hash(canonical_bytes(pair[0], self.topic)), 0, 2, bare.path)
        assert root is not None
        yield _case(BATCH_FORGED, "a batch root signed without its domain and count",
                    pair[0].with_signature(replace(
                        bare, signature=sign_bytes(root, cast.key_of(cast.caller))).encode()))
        stranger, _ = generate_ed25519(cast.caller.service)
        yield _case(BATCH_FORGED, "a batch signed by an untrusted key",
                    seal_batch([(self.request(), self.topic) for _ in range(2)], stranger)[0])
        yield _case(BATCH_FORGED, "genuine batch message, replayed (same id)", first)
        yield _case(BATCH_FORGED, "a batch of one in batch form",
                    third.with_signature(BatchHeader(header.key_id, 0, 1, header.signature,
                                                     header.path).encode()))


# The group order L of edwards25519 (RFC 8032, 5.1).
_ED25519_ORDER = 2**252 + 27742317777372353535851937790883648493


def _malleated(signature_b64: str) -> str:
    """The same Ed25519 signature with ``S + L``: it satisfies the verification equation too,
    so only the ``S < L`` check (RFC 8032, required of both backends) refuses it."""
    raw = base64.urlsafe_b64decode(signature_b64 + "=" * (-len(signature_b64) % 4))
    s = int.from_bytes(raw[32:], "little") + _ED25519_ORDER
    return _b64(raw[:32] + s.to_bytes(32, "little"))


_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def respelled(text: str) -> str:
    """Unpadded base64url ``text`` (not a multiple of 4 long) with the lowest spare bit of its
    last character set: lenient decoders read the same bytes from it."""
    assert len(text) % 4 in (2, 3), "a text a multiple of 4 long has no spare bits"
    return text[:-1] + _B64URL[_B64URL.index(text[-1]) ^ 1]


def _leading_zero(raw: bytes) -> bytes:
    return b"0" + raw


def _partition_leading_zero(raw: bytes) -> bytes:
    topic, _, partition = raw.rpartition(b":")
    return topic + b":0" + partition


def _set(headers: RawHeaders, name: str, value: bytes | None) -> RawHeaders:
    return [(n, value if n == name else v) for n, v in headers]


Family = Callable[[Builder], Iterator[MeshCase]]
FAMILIES: tuple[Family, ...] = (Builder.forged, Builder.tampered, Builder.replayed, Builder.stale,
                                Builder.unsigned, Builder.not_allowed, Builder.impersonation,
                                Builder.malformed, Builder.principal_spoof, Builder.wire_format,
                                Builder.pair_forged, Builder.batch_forged)


def handcrafted(builder: Builder, rounds: int) -> list[MeshCase]:
    """Every hand-written attack ``rounds`` times over (fresh ids and signatures each round)."""
    return [case for _ in range(rounds) for family in FAMILIES for case in family(builder)]


def oversized(builder: Builder, limit: int, count: int, broker_limit: int) -> list[MeshCase]:
    """Genuinely signed requests over the victim's size limit (and one over the broker's)."""
    cases = []
    for n in range(count):
        value = b'{"pad":"' + b"x" * (limit + 1 + n * 997) + b'"}'
        cases.append(_case(OVERSIZED, f"{len(value)} bytes, signed",
                           builder.signed(builder.request(value=value))))
    big = b"y" * (broker_limit + 1)
    cases.append(_case(OVERSIZED, f"{len(big)} bytes (over the broker's limit)",
                       builder.signed(builder.request(value=big))))
    return cases


def random_records(records: list[tuple[RawHeaders, bytes | None]]) -> list[MeshCase]:
    return [MeshCase(RANDOM, f"random #{n}", headers, value)
            for n, (headers, value) in enumerate(records)]


def message_id_of(headers: RawHeaders) -> str | None:
    for name, value in headers:
        if name == H_ID and value is not None:
            return value.decode("utf-8", "replace")
    return None

