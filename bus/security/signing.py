"""Per-message signatures, and the freshness check that goes with them.

The ``mesh_sig`` header reads ``<algorithm>:<key_id>:<base64url signature>``; the signature
covers ``canonical_bytes(envelope, topic)``. A receiver runs ``verify`` (authentic, and sent
by the service it claims), then ``check_fresh``, then a ``bus.security.replay.ReplayGuard``. Every
failure is a non-retriable ``MeshError`` with its own ``code``, meant as the quarantine reason.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import Protocol

from bus.envelope import (
    H_CONTENT_TYPE,
    H_CORRELATION,
    H_DEADLINE,
    H_ID,
    H_KIND,
    H_PRINCIPAL,
    H_PRINCIPAL_SIG,
    H_REPLY_TO,
    H_SOURCE,
    H_SPECVERSION,
    H_TIME,
    H_TYPE,
    SPECVERSION,
    Envelope,
    time_text,
)
from bus.errors import MeshError
from bus.security.batch_roots import BatchRoots
from bus.security.batch_sig import BATCH_PREFIX, leaf_hash, parse_batch, root_for, root_message
from bus.security.keys import (
    ED25519,
    HMAC_SHA256,
    KEY_ID_PATTERN,
    Algorithm,
    KeyRing,
    SigningKey,
    UnknownKeyId,
    VerifyKey,
    decode_b64url,
    encode_b64url,
)
from bus.security.signature_errors import (
    BadSignature,
    MalformedSignature,
    MissingSignature,
    SenderMismatch,
    SignatureError,
)

__all__ = [
    "BadSignature",
    "MalformedSignature",
    "MissingSignature",
    "SenderMismatch",
    "SignatureError",
    "SignatureHeader",
    "StaleMessage",
    "UnknownKeyId",
    "canonical_bytes",
    "check_fresh",
    "parse_signature",
    "sign",
    "sign_bytes",
    "signature_valid",
    "verify",
]

# Versions the encoding below: a future change of fields cannot verify as this one.
# v3: the edge's principal assertion (mesh_principal_sig) joined the signed fields.
# v4: CloudEvents binary mode: ce_specversion joined, ce_time is the RFC 3339 text as sent.
DOMAIN = b"meshgate-sig-v4"
SIGNATURE_BYTES = {ED25519: 64, HMAC_SHA256: 32}

_ABSENT = b"\x00"
_PRESENT = b"\x01"
_LENGTH = struct.Struct(">Q")


class StaleMessage(MeshError):
    """``ce_time`` is outside the freshness window (too old, or too far in the future)."""

    code = "stale_message"


@dataclass(frozen=True)
class SignatureHeader:
    algorithm: Algorithm
    key_id: str
    signature: bytes

    def encode(self) -> str:
        return f"{self.algorithm}:{self.key_id}:{encode_b64url(self.signature)}"


def canonical_bytes(envelope: Envelope, topic: str) -> bytes:
    """The bytes a signature covers: a versioned, length-prefixed list of named fields.

    Each field is ``len(name) name`` then ``0x00`` when absent, or ``0x01 len(value) value``;
    lengths are 8-byte big-endian. Fixed order, so equal inputs give equal bytes and no
    two different inputs share an encoding (no field can bleed into the next).

    Signed: the topic (so a message cannot be replayed onto another topic), the value, and
    the headers that decide what a message means, for whom, and where its answer goes (the
    principal and the edge's assertion of it included), ``ce_time`` as its RFC 3339 text
    (``bus.wire_time``: one spelling per instant, so the text sent is the text signed).
    docs/wire-format.md spells it out byte by byte. Not signed:
    ``mesh_attempt``, because retry topics republish the message with the next attempt
    number and the republisher does not hold the sender's key (so never trust it for
    anything security-relevant); ``traceparent``/``tracestate``, which only correlate
    telemetry and may be rewritten by tracing; and unknown extra headers.
    """
    reply_to = envelope.reply_to
    deadline = envelope.deadline_ms
    parts = [_DOMAIN_FIELD]
    append = parts.append
    # One pass over the text fields, then the value; the hot path of every signature and
    # MAC (each message is encoded once by its sender and once by each receiver).
    for present, absent, text in zip(_PRESENT_PREFIXES, _ABSENT_PREFIXES, (
        topic,
        SPECVERSION,
        envelope.id,
        envelope.source,
        envelope.type,
        time_text(envelope.time_ms),
        envelope.kind,
        envelope.correlation_id,
        None if reply_to is None else reply_to.encode(),
        None if deadline is None else str(deadline),
        envelope.content_type,
        envelope.principal,
        envelope.principal_assertion,
    ), strict=True):
        if text is None:
            append(absent)
        else:
            # surrogatepass: never raise on odd strings; the wire form is strict UTF-8 anyway.
            data = text.encode("utf-8", "surrogatepass")
            append(present)
            append(_pack_length(len(data)))
            append(data)
    value = envelope.value
    append(_VALUE_PREFIX)
    append(_pack_length(len(value)))
    append(value)
    return b"".join(parts)


def sign(envelope: Envelope, topic: str, key: SigningKey) -> Envelope:
    """``envelope`` with its ``mesh_sig`` set, for sending to ``topic``."""
    signature = sign_bytes(canonical_bytes(envelope, topic), key)
    return envelope.with_signature(SignatureHeader(key.algorithm, key.key_id, signature).encode())


class PairOpener(Protocol):
    """Checks a per-pair MAC addressed to this process (``bus.security.pair_mac.PairKeys``)."""

    def open(self, envelope: Envelope, topic: str, keyring: KeyRing) -> VerifyKey: ...


PAIR_SIGNATURE_PREFIX = "pair-hmac-sha256:"


def verify(envelope: Envelope, topic: str, keyring: KeyRing,
           pair: PairOpener | None = None, roots: BatchRoots | None = None) -> VerifyKey:
    """Check ``envelope``'s signature as received on ``topic``; return the key that made it.

    Raises ``MissingSignature``, ``MalformedSignature``, ``UnknownKeyId``, ``BadSignature``,
    or ``SenderMismatch`` when a valid signature's key is owned by another service than
    ``ce_source`` (a service cannot speak for another). A per-pair MAC
    (``bus.security.pair_mac``) is checked by ``pair``, and refused when there is none: only a
    service that declared ``message_auth: pair-mac`` accepts them. A message of a signed batch
    (``bus.security.batch_sig``) is checked through its path to the batch's root; ``roots``
    remembers the roots verified before, so a batch's signature is verified once.
    """
    text = envelope.signature
    if text is not None and text.startswith(PAIR_SIGNATURE_PREFIX):
        if pair is None:
            raise BadSignature("a pair MAC, which this receiver does not accept "
                               "(policy: message_auth is signature)")
        key = pair.open(envelope, topic, keyring)
    elif text is not None and text.startswith(BATCH_PREFIX):
        key = _verify_batch(text, envelope, topic, keyring, roots)
    else:
        header = parse_signature(text)
        key = keyring.get(header.key_id)
        # The key decides the algorithm, never the header: otherwise an Ed25519 public key
        # could be used as an HMAC secret by anyone who knows it.
        if header.algorithm != key.algorithm:
            raise BadSignature(
                f"key {key.key_id} is {key.algorithm}, the signature claims {header.algorithm}"
            )
        if not signature_valid(key, canonical_bytes(envelope, topic), header.signature):
            raise BadSignature(f"signature by key {key.key_id} does not match the message")
    # Checked after the signature, so a mismatch means a real key tried to impersonate.
    if key.service != envelope.source:
        raise SenderMismatch(
            f"key {key.key_id} belongs to {key.service!r}, the message claims another source"
        )
    return key


def _verify_batch(text: str, envelope: Envelope, topic: str, keyring: KeyRing,
                  roots: BatchRoots | None) -> VerifyKey:
    header = parse_batch(text)
    key = keyring.get(header.key_id)
    if key.algorithm != ED25519:
        raise BadSignature(f"key {key.key_id} is {key.algorithm}, a batch is signed with ed25519")
    root = root_for(leaf_hash(canonical_bytes(envelope, topic)), header.index, header.count,
                    header.path)
    if root is None:
        raise BadSignature(f"the path is no inclusion proof for message {header.index} of "
                           f"{header.count}")
    if roots is not None and roots.known(key, header.count, root, header.signature):
        return key
    if not signature_valid(key, root_message(header.count, root), header.signature):
        raise BadSignature(f"batch signature by key {key.key_id} does not match the message")
    if roots is not None:
        roots.remember(key, header.count, root, header.signature)
    return key


def parse_signature(text: str | None) -> SignatureHeader:
    """Parse a ``mesh_sig`` value; raises only ``MissingSignature`` or ``MalformedSignature``."""
    if text is None:
        raise MissingSignature("the message has no signature")
    parts = text.split(":")
    if len(parts) != 3:
        raise MalformedSignature("a signature reads '<algorithm>:<key_id>:<base64url>'")
    algorithm_text, key_id, encoded = parts
    if algorithm_text == ED25519:
        algorithm: Algorithm = ED25519
    elif algorithm_text == HMAC_SHA256:
        algorithm = HMAC_SHA256
    else:
        raise MalformedSignature("the signature names an unknown algorithm")
    if not KEY_ID_PATTERN.fullmatch(key_id):
        raise MalformedSignature("the signature's key id is not a valid key id")
    try:
        signature = decode_b64url(encoded)
    except ValueError as exc:
        raise MalformedSignature("the signature is not canonical base64url") from exc
    if len(signature) != SIGNATURE_BYTES[algorithm]:
        raise MalformedSignature(
            f"an {algorithm} signature is {SIGNATURE_BYTES[algorithm]} bytes, got {len(signature)}"
        )
    return SignatureHeader(algorithm, key_id, signature)


def check_fresh(envelope: Envelope, now_ms: int, window_ms: int) -> None:
    """Raise ``StaleMessage`` unless ``|now_ms - ce_time| <= window_ms`` (both edges fresh).

    The future side bounds clock skew, and stops a sender from future-dating messages so they
    outlive the replay guard's memory.
    """
    if window_ms < 0:
        raise ValueError(f"window_ms must be >= 0, got {window_ms}")
    age = now_ms - envelope.time_ms
    if age > window_ms:
        raise StaleMessage(f"message is {age} ms old, over the {window_ms} ms window")
    if -age > window_ms:
        raise StaleMessage(f"message is {-age} ms in the future, over the {window_ms} ms window")


def sign_bytes(message: bytes, key: SigningKey) -> bytes:
    """``key``'s signature of ``message`` (Ed25519, or HMAC-SHA256 for an HMAC key)."""
    if key.signer is not None:
        return key.signer.sign(message)
    return _hmac(key.secret, message)


def signature_valid(key: VerifyKey, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``key``'s signature of ``message`` (constant time for HMAC)."""
    if key.verifier is not None:
        return key.verifier.verify(message, signature)
    return hmac.compare_digest(_hmac(key.material, message), signature)


def _hmac(secret: bytes, message: bytes) -> bytes:
    return hmac.new(secret, message, hashlib.sha256).digest()


def _length_prefixed(data: bytes) -> bytes:
    return _LENGTH.pack(len(data)) + data


# The names never change: their length-prefixed encodings are computed once.
_FIELD_NAMES = ("topic", H_SPECVERSION, H_ID, H_SOURCE, H_TYPE, H_TIME, H_KIND, H_CORRELATION,
                H_REPLY_TO, H_DEADLINE, H_CONTENT_TYPE, H_PRINCIPAL, H_PRINCIPAL_SIG, "value")
_FIELD_PREFIXES = tuple(_length_prefixed(name.encode()) for name in _FIELD_NAMES)
_DOMAIN_FIELD = _length_prefixed(DOMAIN)
# Each text field's name followed by its presence byte, ready to append.
_PRESENT_PREFIXES = tuple(prefix + _PRESENT for prefix in _FIELD_PREFIXES[:-1])
_ABSENT_PREFIXES = tuple(prefix + _ABSENT for prefix in _FIELD_PREFIXES[:-1])
_VALUE_PREFIX = _FIELD_PREFIXES[-1] + _PRESENT  # the value is always present (maybe empty)
_pack_length = _LENGTH.pack
