"""Per-pair message keys: a MAC instead of an Ed25519 signature for a message with one receiver.

A service that declares ``message_auth: pair-mac`` in the policy accepts, on messages
addressed to it (requests to it, replies to its calls), a ``mesh_sig`` of the form
``pair-hmac-sha256:<sender key id>:<receiver key id>:<base64url HMAC>``. The HMAC-SHA256 is
over the same ``canonical_bytes(envelope, topic)`` a signature covers, under a key that only
the two ends can compute:

    shared = X25519(own X25519 secret, peer's X25519 public)     (static-static)
    K(s->r) = HKDF-SHA256(shared, salt="meshgate-pair-v1",
                          info = lp(s kid) lp(s pub) lp(r kid) lp(r pub))

where each X25519 key is the birational image of the service's published Ed25519 key
(RFC 7748 / libsodium's ``crypto_sign_ed25519_*_to_curve25519``): no new key kind to
distribute or rotate. ``lp`` is an 8-byte big-endian length then the bytes. Directional (the
sender's key comes first), bound to both keys and ids, derived once per pair and cached.

What it proves, and what it does not (docs/decisions.md, "Per-pair message keys"):
- A holder of service C's key can only compute keys of pairs with C in them: it cannot make
  A accept a message as coming from B (nor B as from A). Same as signatures.
- Key-compromise impersonation: a holder of C's key CAN make C itself accept a message as
  from any service (C can compute K(A->C)). With signatures it cannot. This is why it is an
  opt-in per receiving service, never the default.
- Only the two ends can check a MAC: the operator's tools need the receiver's secret, and
  then learn "one of the two wrote this", never which (no non-repudiation).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

import nacl.bindings
import nacl.exceptions

from bus.envelope import Envelope
from bus.security.keys import (
    ED25519,
    KEY_ID_PATTERN,
    KeyRing,
    SigningKey,
    VerifyKey,
    decode_b64url,
    encode_b64url,
)
from bus.security.signing import (
    PAIR_SIGNATURE_PREFIX,
    BadSignature,
    MalformedSignature,
    canonical_bytes,
)

PAIR_HMAC: Final = "pair-hmac-sha256"
PAIR_PREFIX: Final = PAIR_SIGNATURE_PREFIX
DOMAIN: Final = b"meshgate-pair-v1"
MAC_BYTES: Final = 32
MAX_CACHED_PAIRS: Final = 4096
_LENGTH = struct.Struct(">Q")


class NotForThisService(BadSignature):
    """A pair MAC made for a key this process does not hold (another service's, or an old
    key of its own it no longer has)."""

    code = "pair_key_unknown"


@dataclass(frozen=True)
class PairHeader:
    sender_key_id: str
    receiver_key_id: str
    mac: bytes

    def encode(self) -> str:
        return f"{PAIR_HMAC}:{self.sender_key_id}:{self.receiver_key_id}:{encode_b64url(self.mac)}"


def is_pair_mac(signature: str | None) -> bool:
    return signature is not None and signature.startswith(PAIR_PREFIX)


def parse_pair_header(text: str) -> PairHeader:
    """Parse a pair ``mesh_sig``; raises only ``MalformedSignature``."""
    parts = text.split(":")
    if len(parts) != 4 or parts[0] != PAIR_HMAC:
        raise MalformedSignature(
            "a pair MAC reads 'pair-hmac-sha256:<sender key id>:<receiver key id>:<base64url>'")
    _, sender, receiver, encoded = parts
    if not (KEY_ID_PATTERN.fullmatch(sender) and KEY_ID_PATTERN.fullmatch(receiver)):
        raise MalformedSignature("the pair MAC's key ids are not valid key ids")
    try:
        mac = decode_b64url(encoded)
    except ValueError as exc:
        raise MalformedSignature("the pair MAC is not canonical base64url") from exc
    if len(mac) != MAC_BYTES:
        raise MalformedSignature(f"a pair MAC is {MAC_BYTES} bytes, got {len(mac)}")
    return PairHeader(sender, receiver, mac)


def pair_key(own: SigningKey, own_public: bytes, peer_key_id: str, peer_public: bytes, *,
             sending: bool) -> bytes:
    """K(sender -> receiver) from this side's private key and the peer's public key (pure).

    Raises ``BadSignature`` when the peer's key is not a usable X25519 point (small order,
    non-canonical): such a key could make the shared secret predictable."""
    if own.algorithm != ED25519:
        raise ValueError(f"pair keys need an Ed25519 key, {own.key_id} is {own.algorithm}")
    try:
        _, expanded = nacl.bindings.crypto_sign_seed_keypair(own.secret)
        own_x = nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(expanded)
        peer_x = nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(peer_public)
        shared = nacl.bindings.crypto_scalarmult(own_x, peer_x)
    except (nacl.exceptions.RuntimeError, nacl.exceptions.ValueError,
            nacl.exceptions.TypeError) as exc:
        raise BadSignature(f"key {peer_key_id} cannot make a pair key") from exc
    if not any(shared):  # libsodium checks it too; never trust an all-zero secret
        raise BadSignature(f"key {peer_key_id} gives an all-zero shared secret")
    ends = ((own.key_id, own_public), (peer_key_id, peer_public))
    (sender_id, sender_pub), (receiver_id, receiver_pub) = ends if sending else ends[::-1]
    info = b"".join(_lp(part) for part in (sender_id.encode(), sender_pub,
                                          receiver_id.encode(), receiver_pub))
    return hkdf_sha256(shared, salt=DOMAIN, info=info)


def hkdf_sha256(ikm: bytes, *, salt: bytes, info: bytes) -> bytes:
    """RFC 5869 HKDF with SHA-256, one 32-byte output block."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


class PairKeys:
    """One process's pair keys: its own Ed25519 keys (by key id) and the derived pair keys,
    cached per (own key, peer key, direction) as ready HMAC states.

    ``remember`` adds a key this process signs with (called when the key in force changes),
    so messages sealed for the previous key during a rotation still open."""

    def __init__(self, own: Iterable[SigningKey], *,
                 current: Callable[[], SigningKey | None] | None = None,
                 max_pairs: int = MAX_CACHED_PAIRS) -> None:
        self._own: dict[str, tuple[SigningKey, bytes]] = {}
        self._current = current
        self._pairs: dict[tuple[str, str, bytes, bool], hmac.HMAC] = {}
        self._max_pairs = max_pairs
        for key in own:
            self.remember(key)

    def remember(self, key: SigningKey) -> None:
        if key.algorithm == ED25519 and key.key_id not in self._own:
            self._own[key.key_id] = (key, key.verify_key("_").material)

    def seal(self, envelope: Envelope, topic: str, own: SigningKey, receiver: VerifyKey
             ) -> Envelope:
        """``envelope`` with a pair MAC for ``receiver``'s key, sent to ``topic``."""
        self.remember(own)
        state = self._state(own.key_id, receiver, sending=True)
        mac = _mac(state, canonical_bytes(envelope, topic))
        return envelope.with_signature(PairHeader(own.key_id, receiver.key_id, mac).encode())

    def open(self, envelope: Envelope, topic: str, keyring: KeyRing) -> VerifyKey:
        """Check ``envelope``'s pair MAC as received on ``topic``; return the sender's key.

        Raises ``MalformedSignature``, ``UnknownKeyId`` (sender key not trusted),
        ``NotForThisService`` (made for a key this process does not hold) or
        ``BadSignature``. The caller checks the key's service against ``ce_source``."""
        assert envelope.signature is not None
        header = parse_pair_header(envelope.signature)
        sender = keyring.get(header.sender_key_id)
        if sender.algorithm != ED25519:
            raise BadSignature(f"key {sender.key_id} is {sender.algorithm}: no pair keys")
        if header.receiver_key_id not in self._own and self._current is not None:
            in_force = self._current()  # a key loaded while the process runs
            if in_force is not None:
                self.remember(in_force)
        if header.receiver_key_id not in self._own:
            raise NotForThisService(f"the pair MAC is for key {header.receiver_key_id}, "
                                    "which this service does not hold")
        state = self._state(header.receiver_key_id, sender, sending=False)
        if not hmac.compare_digest(_mac(state, canonical_bytes(envelope, topic)), header.mac):
            raise BadSignature(f"the pair MAC from key {sender.key_id} does not match the message")
        return sender

    def _state(self, own_key_id: str, peer: VerifyKey, *, sending: bool) -> hmac.HMAC:
        cache_key = (own_key_id, peer.key_id, peer.material, sending)
        state = self._pairs.get(cache_key)
        if state is None:
            own, own_public = self._own[own_key_id]
            key = pair_key(own, own_public, peer.key_id, peer.material, sending=sending)
            state = hmac.new(key, digestmod=hashlib.sha256)
            if len(self._pairs) >= self._max_pairs:
                self._pairs.pop(next(iter(self._pairs)))
            self._pairs[cache_key] = state
        return state


def _mac(state: hmac.HMAC, message: bytes) -> bytes:
    running = state.copy()
    running.update(message)
    return running.digest()


def _lp(data: bytes) -> bytes:
    return _LENGTH.pack(len(data)) + data
