"""Writes the wire-format test vectors (docs/wire-format.md) from the library itself.

``python -m tests.vectors.generate`` rewrites the JSON files next to this module;
``--check`` exits 1 when a file differs from what the library produces now. Everything is
deterministic: keys derive from fixed seeds, times and ids are fixed, Ed25519 signatures are
deterministic (RFC 8032) and HMAC-SHA256 is a function.

- ``keys.json``: every key of the vectors (Ed25519 seed and public key, HMAC secret), hex and
  base64url, with its key id and owning service;
- ``keyring.json``: the Ed25519 verify keys in the keyring format services publish;
- ``messages.json``: valid records (topic, key, headers in wire order, value), the fields the
  signature covers, the exact signed bytes, and the expected signature; with the principal
  assertion's and the replay countersignature's signed bytes where the record carries them;
- ``tampered.json``: records derived from those that a receiver must refuse (with the
  refusal's code) or must still accept (``"expect": "valid"``: unsigned headers changed);
- ``batch.json``: three events signed as one batch (docs/wire-format.md §3b), with the
  batch's root, the root's signed bytes and each message's leaf and path, and the ways a
  batch message must be refused;
- ``pair.json``: per-pair MACs (docs/wire-format.md §3a): a request and a reply sealed for
  their one receiver, with the pair key both ends derive, and the ways a MAC must be refused
  (relabelled, turned round, made for another receiver).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bus.envelope import (
    H_ATTEMPT,
    H_DEADLINE,
    H_PRINCIPAL,
    H_REPLY_TO,
    H_SIGNATURE,
    H_SPECVERSION,
    H_TIME,
    H_TRACEPARENT,
    KIND_ERROR,
    KIND_EVENT,
    KIND_REPLY,
    KIND_REQUEST,
    Envelope,
    ReplyTo,
    to_headers,
)
from bus.security.batch_sig import DOMAIN as BATCH_DOMAIN
from bus.security.batch_sig import leaf_hash, parse_batch, root_message, tree
from bus.security.batch_signer import seal_batch
from bus.security.keys import (
    ED25519,
    HMAC_SHA256,
    KeyRing,
    KeyStatus,
    SigningKey,
    encode_b64url,
    fingerprint,
)
from bus.security.pair_mac import PairHeader, PairKeys, pair_key, parse_pair_header
from bus.security.principals import assert_principal, assertion_bytes
from bus.security.replay_countersign import countersign, countersign_bytes
from bus.security.signing import DOMAIN, canonical_bytes, sign, sign_bytes
from proof.attack.legacy_wire import v3_headers

HERE = Path(__file__).resolve().parent
T0 = 1_767_225_600_123  # 2026-01-01T00:00:00.123Z
DEADLINE = T0 + 10_000
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
PRINCIPAL = ('{"email":"alice@example.com","iss":"http://emulator.meshgate.local/dev-issuer",'
             '"scopes":["orders:write"],"sub":"alice"}')
Json = dict[str, Any]
Headers = list[tuple[str, bytes]]


def _seed(label: str) -> bytes:
    return hashlib.sha256(f"meshgate wire-format test vector: {label}".encode()).digest()


def _ed25519(service: str) -> tuple[str, SigningKey]:
    seed = _seed(f"ed25519 {service}")
    public = SigningKey("x", ED25519, seed).verify_key(service).material
    return service, SigningKey(fingerprint(public), ED25519, seed)


ED_KEYS = dict(_ed25519(name) for name in ("gateway", "orders", "meshgate-operator"))
HMAC_SERVICE = "inventory"
HMAC_KEY = SigningKey("inventory-hmac-2026", HMAC_SHA256, _seed("hmac-sha256 inventory"))


def _keys() -> Json:
    ed = []
    for service, key in ED_KEYS.items():
        public = key.verify_key(service).material
        ed.append({"service": service, "key_id": key.key_id, "algorithm": ED25519,
                   "private_seed_hex": key.secret.hex(),
                   "private_seed_b64url": encode_b64url(key.secret),
                   "public_key_hex": public.hex(), "public_key_b64url": encode_b64url(public)})
    hmac = [{"service": HMAC_SERVICE, "key_id": HMAC_KEY.key_id, "algorithm": HMAC_SHA256,
             "secret_hex": HMAC_KEY.secret.hex(), "secret_b64url": encode_b64url(HMAC_KEY.secret)}]
    return {"about": "keys of the wire-format test vectors (docs/wire-format.md); NEVER use "
                     "them for anything else", "ed25519": ed, "hmac-sha256": hmac}


def _keyring() -> Json:
    ring = KeyRing()
    for service, key in ED_KEYS.items():
        ring.add(key.verify_key(service), KeyStatus("current", T0 - 86_400_000))
    return ring.to_dict()


@dataclasses.dataclass(frozen=True)
class Vector:
    name: str
    description: str
    topic: str
    key: str | None
    envelope: Envelope  # unsigned
    signer: SigningKey
    replay: tuple[SigningKey, str, int] | None = None  # operator key, replay id, replay time


def _request(**changes: Any) -> Envelope:
    base = Envelope(id="7f0c2b8e9d4a4f61a3b5c6d7e8f90a1b", source="gateway", type="orders.create",
                    kind=KIND_REQUEST, value=b'{"customer":"c1","lines":[{"sku":"SKU-1",'
                    b'"quantity":2,"unit_price":"7.50"}]}', time_ms=T0,
                    correlation_id="7f0c2b8e9d4a4f61a3b5c6d7e8f90a1b",
                    reply_to=ReplyTo("mesh.replies", 3), deadline_ms=DEADLINE,
                    traceparent=TRACEPARENT)
    return dataclasses.replace(base, **changes)


def _vectors() -> list[Vector]:
    gateway, orders = ED_KEYS["gateway"], ED_KEYS["orders"]
    assertion = assert_principal(PRINCIPAL, DEADLINE, gateway)
    request = _request()
    reply_common: Json = {"source": "orders", "time_ms": T0 + 42, "reply_to": None,
                          "correlation_id": request.id, "deadline_ms": DEADLINE}
    return [
        Vector("request-ed25519", "a request by the gateway to orders, no principal",
               "orders.requests", request.id, request, gateway),
        Vector("request-ed25519-principal",
               "the same call made for an end user: principal and the edge's assertion",
               "orders.requests", request.id,
               _request(principal=PRINCIPAL, principal_assertion=assertion), gateway),
        Vector("request-hmac-forwarded-principal",
               "a nested call by inventory (HMAC key) forwarding the edge's assertion "
               "unchanged; attempt 2 of the call",
               "orders.requests", "c1d2e3f4a5b60718293a4b5c6d7e8f90",
               _request(id="0a1b2c3d4e5f60718293a4b5c6d7e8f9", source=HMAC_SERVICE,
                        type="orders.quote", correlation_id="c1d2e3f4a5b60718293a4b5c6d7e8f90",
                        reply_to=ReplyTo("mesh.replies", 0), attempt=2, time_ms=T0 + 7,
                        value=b'{"sku":"SKU-1"}', principal=PRINCIPAL,
                        principal_assertion=assertion), HMAC_KEY),
        Vector("reply-ed25519", "orders' reply to request-ed25519, on the partition it named",
               "mesh.replies", None,
               _request(id="5e6f708192a3b4c5d6e7f8091a2b3c4d", kind=KIND_REPLY,
                        value=b'{"order_id":"o-1","total":"15.00"}', **reply_common), orders),
        Vector("error-ed25519", "orders' error reply: the error body {code, message, retriable}",
               "mesh.replies", None,
               _request(id="6f708192a3b4c5d6e7f8091a2b3c4d5e", kind=KIND_ERROR,
                        value=b'{"code":"out_of_stock","message":"SKU-1: 0 left",'
                        b'"retriable":false}', **reply_common), orders),
        Vector("event-ed25519", "an event by orders (no correlation, no reply-to, no deadline)",
               "orders.events", "o-1",
               Envelope(id="8192a3b4c5d6e7f8091a2b3c4d5e6f70", source="orders",
                        type="orders.created", kind=KIND_EVENT,
                        value=b'{"order_id":"o-1","customer":"c1"}', time_ms=T0 + 50,
                        traceparent=TRACEPARENT), orders),
        Vector("event-ed25519-replayed",
               "event-ed25519 replayed from the dead-letter topic by an operator: the original "
               "record unchanged plus the countersignature headers",
               "orders.events", "o-1",
               Envelope(id="8192a3b4c5d6e7f8091a2b3c4d5e6f70", source="orders",
                        type="orders.created", kind=KIND_EVENT,
                        value=b'{"order_id":"o-1","customer":"c1"}', time_ms=T0 + 50,
                        traceparent=TRACEPARENT), orders,
               replay=(ED_KEYS["meshgate-operator"], "r-20260101-0001", T0 + 3_600_000)),
    ]


def _record(vector: Vector) -> tuple[Envelope, Headers]:
    signed = sign(vector.envelope, vector.topic, vector.signer)
    headers = to_headers(signed)
    if vector.replay is not None:
        key, replay_id, at = vector.replay
        headers += countersign(signed, vector.topic, key, replay_id=replay_id, time_ms=at)
    return signed, headers


def _signed_fields(envelope: Envelope, topic: str) -> list[list[str | None]]:
    """The covered fields in order, decoded back from the signed bytes themselves."""
    data, fields = canonical_bytes(envelope, topic), []
    offset = 8 + len(DOMAIN)
    while offset < len(data):
        (length,) = struct.unpack_from(">Q", data, offset)
        name = data[offset + 8:offset + 8 + length].decode()
        offset += 8 + length
        if data[offset] == 0:
            fields.append([name, None])
            offset += 1
            continue
        (length,) = struct.unpack_from(">Q", data, offset + 1)
        fields.append([name, data[offset + 9:offset + 9 + length].decode()])
        offset += 9 + length
    return fields


def _text_headers(headers: Headers) -> list[list[str]]:
    return [[name, raw.decode()] for name, raw in headers]


def _message(vector: Vector) -> Json:
    signed, headers = _record(vector)
    header = signed.signature or ""
    entry: Json = {
        "name": vector.name, "description": vector.description, "topic": vector.topic,
        "key": vector.key, "headers": _text_headers(headers),
        "value": signed.value.decode(), "value_hex": signed.value.hex(),
        "signed_by": {"service": signed.source, "key_id": vector.signer.key_id,
                      "algorithm": vector.signer.algorithm},
        "signed_fields": _signed_fields(signed, vector.topic),
        "signed_bytes_hex": canonical_bytes(signed, vector.topic).hex(),
        "signature_b64url": header.rsplit(":", 1)[1], H_SIGNATURE: header,
    }
    if signed.principal_assertion is not None and signed.principal is not None:
        algorithm, key_id, expires, signature = signed.principal_assertion.split(":")
        entry["principal_assertion"] = {
            "by": {"service": "gateway", "key_id": key_id, "algorithm": algorithm},
            "expires_ms": int(expires),
            "signed_bytes_hex": assertion_bytes(signed.principal, int(expires)).hex(),
            "signature_b64url": signature}
    if vector.replay is not None:
        key, replay_id, at = vector.replay
        entry["replay_countersignature"] = {
            "by": {"service": "meshgate-operator", "key_id": key.key_id,
                   "algorithm": key.algorithm},
            "replay_id": replay_id, "replay_time_ms": at,
            "signed_bytes_hex": countersign_bytes(signed, vector.topic, replay_id, at).hex()}
    return entry


def _set(headers: Headers, name: str, raw: bytes | None) -> Headers:
    """``headers`` with ``name`` set to ``raw`` (removed when None)."""
    if raw is None:
        return [(n, v) for n, v in headers if n != name]
    if any(n == name for n, _ in headers):
        return [(n, raw if n == name else v) for n, v in headers]
    return [*headers, (name, raw)]


def _tampered() -> list[Json]:
    vectors = {vector.name: vector for vector in _vectors()}
    request, with_principal = vectors["request-ed25519"], vectors["request-ed25519-principal"]
    _, good = _record(request)
    _, good_principal = _record(with_principal)
    orders = ED_KEYS["orders"]
    impostor = sign(request.envelope, request.topic, orders)  # source gateway, orders' key
    signature = dict(good)[H_SIGNATURE].decode()
    _, key_id, encoded = signature.split(":")
    Case = tuple[str, str, str, Headers, bytes, str]
    cases: list[Case] = [
        ("attempt-changed", "mesh_attempt is not signed (retry topics republish with the next "
         "attempt): still valid", request.topic, _set(good, H_ATTEMPT, b"3"),
         request.envelope.value, "valid"),
        ("traceparent-changed", "traceparent is not signed: still valid", request.topic,
         _set(good, H_TRACEPARENT, b"00-11111111111111111111111111111111-2222222222222222-01"),
         request.envelope.value, "valid"),
        ("unknown-header-added", "headers the format does not name are not signed: still valid",
         request.topic, [*good, ("x-tenant", b"t1")], request.envelope.value, "valid"),
        ("value-changed", "one byte of the value changed", request.topic, good,
         request.envelope.value.replace(b"2", b"3", 1), "bad_signature"),
        ("other-topic", "the genuine record copied to another topic", "inventory.requests", good,
         request.envelope.value, "bad_signature"),
        ("time-moved", "ce_time one millisecond later", request.topic,
         _set(good, H_TIME, b"2026-01-01T00:00:00.124Z"), request.envelope.value,
         "bad_signature"),
        ("time-respelled", "the same instant spelled with an offset: not the wire's spelling",
         request.topic, _set(good, H_TIME, b"2026-01-01T00:00:00.123+00:00"),
         request.envelope.value, "bad_envelope"),
        ("reply-to-moved", "the reply redirected to another partition", request.topic,
         _set(good, H_REPLY_TO, b"mesh.replies:4"), request.envelope.value, "bad_signature"),
        ("principal-added", "a principal added to a record signed without one", request.topic,
         _set(good, H_PRINCIPAL, PRINCIPAL.encode()), request.envelope.value, "bad_signature"),
        ("principal-changed", "another user named in a signed principal", request.topic,
         _set(good_principal, H_PRINCIPAL, PRINCIPAL.replace("alice", "mallory").encode()),
         with_principal.envelope.value, "bad_signature"),
        ("specversion-missing", "no ce_specversion (RFC 3339 ce_time)", request.topic,
         _set(good, H_SPECVERSION, None), request.envelope.value, "bad_envelope"),
        ("specversion-other", "ce_specversion 1.1", request.topic,
         _set(good, H_SPECVERSION, b"1.1"), request.envelope.value, "bad_envelope"),
        ("sender-mismatch", "validly signed by orders' key but claiming ce_source gateway",
         request.topic, to_headers(impostor), request.envelope.value, "sender_mismatch"),
        ("algorithm-swapped", "an Ed25519 key id under the hmac-sha256 algorithm",
         request.topic, _set(good, H_SIGNATURE, f"hmac-sha256:{key_id}:{encoded}".encode()),
         request.envelope.value, "malformed_signature"),
        ("unknown-key", "a key id nobody trusts", request.topic,
         _set(good, H_SIGNATURE, f"ed25519:ed25519-0000000000000000:{encoded}".encode()),
         request.envelope.value, "unknown_key_id"),
        ("unsigned", "no mesh_sig", request.topic, _set(good, H_SIGNATURE, None),
         request.envelope.value, "missing_signature"),
        ("v3-record", "a genuine record of the previous format (meshgate-sig-v3)", request.topic,
         v3_headers(request.envelope, request.topic, request.signer), request.envelope.value,
         "old_wire_format"),
        ("deadline-respelled", "mesh_deadline with a leading zero (same integer): not its "
         "one spelling", request.topic, _set(good, H_DEADLINE, b"0" + str(DEADLINE).encode()),
         request.envelope.value, "bad_envelope"),
        ("reply-to-respelled", "the mesh_reply_to partition with a leading zero (same "
         "partition): not its one spelling", request.topic,
         _set(good, H_REPLY_TO, b"mesh.replies:03"), request.envelope.value, "bad_envelope"),
    ]
    return [{"name": name, "description": description, "topic": topic,
             "headers": _text_headers(headers), "value": value.decode(), "expect": expect}
            for name, description, topic, headers, value, expect in cases]


def _pair_vector(name: str, description: str, vector: Vector, receiver: str,
                 header: str | None = None, expect: str = "valid") -> Json:
    sender_key, receiver_key = vector.signer, ED_KEYS[receiver]
    receiving = receiver_key.verify_key(receiver)
    sealed = PairKeys([sender_key]).seal(vector.envelope, vector.topic, sender_key, receiving)
    if header is not None:
        sealed = sealed.with_signature(header)
    sender_public = sender_key.verify_key(sealed.source).material
    key = pair_key(sender_key, sender_public, receiving.key_id, receiving.material, sending=True)
    return {"name": name, "description": description, "topic": vector.topic,
            "receiver": {"service": receiver, "key_id": receiver_key.key_id},
            "headers": _text_headers(to_headers(sealed)), "value": sealed.value.decode(),
            "pair_key_hex": key.hex(), "signed_bytes_hex": canonical_bytes(sealed,
                                                                          vector.topic).hex(),
            "expect": expect}


def _pair() -> list[Json]:
    vectors = {vector.name: vector for vector in _vectors()}
    request, reply = vectors["request-ed25519"], vectors["reply-ed25519"]
    gateway, orders = ED_KEYS["gateway"], ED_KEYS["orders"]
    to_orders = PairKeys([gateway]).seal(request.envelope, request.topic, gateway,
                                         orders.verify_key("orders"))
    mac = parse_pair_header(to_orders.signature or "").mac
    to_gateway = PairKeys([orders]).seal(reply.envelope, reply.topic, orders,
                                         gateway.verify_key("gateway"))
    reply_mac = parse_pair_header(to_gateway.signature or "").mac
    operator = ED_KEYS["meshgate-operator"]
    for_operator = PairKeys([gateway]).seal(request.envelope, request.topic, gateway,
                                            operator.verify_key("meshgate-operator"))
    return [
        _pair_vector("request-pair", "request-ed25519 sealed by the gateway for orders",
                     request, "orders"),
        _pair_vector("reply-pair", "reply-ed25519 sealed by orders for the gateway",
                     reply, "gateway"),
        _pair_vector("request-pair-relabelled", "the request's MAC with the key ids swapped "
                     "(as if orders had sent it to the gateway)", request, "orders",
                     PairHeader(orders.key_id, gateway.key_id, mac).encode(),
                     "pair_key_unknown"),
        _pair_vector("reply-pair-reflected", "orders' MAC to the gateway presented to orders "
                     "as the gateway's: the direction is in the key", reply, "orders",
                     PairHeader(gateway.key_id, orders.key_id, reply_mac).encode(),
                     "bad_signature"),
        _pair_vector("request-pair-other-receiver", "a MAC the gateway made for another "
                     "receiver, relabelled for orders", request, "orders",
                     PairHeader(gateway.key_id, orders.key_id,
                                parse_pair_header(for_operator.signature or "").mac).encode(),
                     "bad_signature"),
    ]


def _batch_events() -> list[Envelope]:
    return [Envelope(id=f"3c9a1f0e5b7d4e2a9c8b7a6f5e4d3c{n:02d}", source="orders",
                     type="orders.created", kind=KIND_EVENT,
                     value=b'{"order_id":"o-%d","total":"15.00"}' % n, time_ms=T0 + n,
                     traceparent=TRACEPARENT) for n in range(3)]


BATCH_TOPIC = "orders.events"


def _batch() -> Json:
    """docs/wire-format.md §3b: three events signed as one batch, and the ways a batch
    message must be refused."""
    orders, gateway = ED_KEYS["orders"], ED_KEYS["gateway"]
    events = _batch_events()
    sealed = seal_batch([(event, BATCH_TOPIC) for event in events], orders)
    leaves = [leaf_hash(canonical_bytes(event, BATCH_TOPIC)) for event in events]
    root, paths = tree(leaves)
    records: list[Json] = []

    def add(name: str, description: str, envelope: Envelope, expect: str,
            topic: str = BATCH_TOPIC, **extra: Any) -> None:
        records.append({"name": name, "description": description, "topic": topic,
                        "headers": _text_headers(to_headers(envelope)),
                        "value": envelope.value.decode(), "expect": expect, **extra})

    for index, envelope in enumerate(sealed):
        add(f"batch-{index}", f"message {index} of a batch of 3 events signed by orders",
            envelope, "valid", leaf_hex=leaves[index].hex(), path_hex=paths[index].hex())
    second = parse_batch(sealed[1].signature or "")

    def header(**changes: Any) -> str:
        return dataclasses.replace(second, **changes).encode()

    add("batch-value-changed", "message 1 with its value changed", sealed[1]._with(
        value=b'{"order_id":"o-1","total":"0.01"}'), "bad_signature")
    add("batch-other-topic", "message 1 as if sent to another topic", sealed[1],
        "bad_signature", topic="billing.events")
    add("batch-path-of-another", "message 1 carrying message 2's mesh_sig",
        sealed[1].with_signature(sealed[2].signature or ""), "bad_signature")
    add("batch-count-changed", "message 1 claiming a batch of 4 (the path folds to the "
        "same root, which was signed with count 3)", sealed[1].with_signature(
            header(count=4)), "bad_signature")
    add("batch-path-truncated", "message 1 with the last hash of its path dropped",
        sealed[1].with_signature(header(path=second.path[:-32])), "bad_signature")
    add("batch-bare-root", "the root signed without the batch domain and count",
        sealed[1].with_signature(header(signature=sign_bytes(root, orders))), "bad_signature")
    add("batch-index-respelled", "the index with a leading zero: not its one spelling",
        sealed[1].with_signature(header().replace(":1.3:", ":01.3:")), "malformed_signature")
    add("batch-of-one", "a batch of one (a lone message is signed as 'ed25519')",
        sealed[1].with_signature(header().replace(":1.3:", ":0.1:")), "malformed_signature")
    impostor = seal_batch([(dataclasses.replace(event, source="gateway"), BATCH_TOPIC)
                           for event in events], orders)
    add("batch-sender-mismatch", "a batch signed by orders' key whose events claim the "
        "gateway as their source", impostor[0], "sender_mismatch")
    add("batch-unknown-key", "message 1 naming a key id nobody published",
        sealed[1].with_signature(header(key_id="nobody-2026")), "unknown_key_id")
    add("batch-wrong-signer", "the same batch, its root signed by the gateway's key under "
        "orders' key id", sealed[1].with_signature(header(signature=sign_bytes(
            root_message(3, root), gateway))), "bad_signature")
    return {"signature_domain": DOMAIN.decode(), "batch_domain": BATCH_DOMAIN.decode(),
            "batch": {"signed_by": {"service": "orders", "key_id": orders.key_id},
                      "count": 3, "root_hex": root.hex(),
                      "root_message_hex": root_message(3, root).hex(),
                      "signature_b64url": encode_b64url(second.signature)},
            "records": records}


FILES: dict[str, Callable[[], Any]] = {
    "keys.json": _keys,
    "keyring.json": _keyring,
    "messages.json": lambda: {"signature_domain": DOMAIN.decode(),
                              "messages": [_message(vector) for vector in _vectors()]},
    "tampered.json": lambda: {"signature_domain": DOMAIN.decode(), "records": _tampered()},
    "pair.json": lambda: {"signature_domain": DOMAIN.decode(), "pair_domain": "meshgate-pair-v1",
                          "vectors": _pair()},
    "batch.json": _batch,
}


def render() -> dict[str, str]:
    """Every vector file's text, as the library makes it now."""
    return {name: json.dumps(make(), indent=2) + "\n" for name, make in FILES.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if a file would change")
    args = parser.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = HERE / name
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"vectors: stale: {', '.join(stale)}; run python -m tests.vectors.generate",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
