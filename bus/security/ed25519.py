"""Ed25519 sign and verify behind one small seam: libsodium (PyNaCl) on the hot path,
OpenSSL (``cryptography``) as the reference.

Both make and check the same RFC 8032 signatures (Ed25519 signing is deterministic, so the
bytes are identical), so choosing a backend changes nothing on the wire. Measured here
(``python -m bench.signing_cost``, 400-byte message): OpenSSL 3.0 sign 33 us, verify 107 us;
libsodium sign 22 us, verify 64 us.

Where libsodium is stricter than OpenSSL (it refuses more; a genuine signature by an honest
key verifies in both, property-tested in tests/unit/test_ed25519_backends.py): it refuses
every signature under a public key of small order or in a non-canonical encoding, and every
signature whose ``R`` is of small order. Both refuse a non-canonical ``S`` (``S >= L``), and
both check the equation without the cofactor. OpenSSL accepts a signature under a
small-order public key for many messages; no key pair made by ``generate_ed25519`` has one,
and the mesh never trusts a key it was not given, so this only ever refuses forgeries.

A backend makes one object per key (parsed or expanded once), never per message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, NamedTuple, Protocol

import nacl.bindings
import nacl.exceptions
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SIGNATURE_BYTES: Final = 64
KEY_BYTES: Final = 32


class Signer(Protocol):
    """One private key, ready to sign."""

    def sign(self, message: bytes) -> bytes: ...


class Verifier(Protocol):
    """One public key, ready to check signatures."""

    def verify(self, message: bytes, signature: bytes) -> bool: ...


def public_from_seed(seed: bytes) -> bytes:
    """The raw public key of the raw 32-byte private key (seed)."""
    _check_length("an Ed25519 private key", seed)
    public, _ = nacl.bindings.crypto_sign_seed_keypair(seed)
    return public


class _SodiumSigner:
    __slots__ = ("_expanded",)

    def __init__(self, seed: bytes) -> None:
        _check_length("an Ed25519 private key", seed)
        # libsodium signs with seed || public (64 bytes): derived once per key.
        _, self._expanded = nacl.bindings.crypto_sign_seed_keypair(seed)

    def sign(self, message: bytes) -> bytes:
        # crypto_sign returns signature || message; the signature is the first 64 bytes.
        return nacl.bindings.crypto_sign(message, self._expanded)[:SIGNATURE_BYTES]


class _SodiumVerifier:
    __slots__ = ("_public",)

    def __init__(self, public: bytes) -> None:
        _check_length("an Ed25519 public key", public)  # the binding does not check it
        self._public = public

    def verify(self, message: bytes, signature: bytes) -> bool:
        if len(signature) != SIGNATURE_BYTES:
            return False
        try:
            nacl.bindings.crypto_sign_open(signature + message, self._public)
        except nacl.exceptions.BadSignatureError:
            return False
        return True


class _OpenSSLSigner:
    __slots__ = ("_key",)

    def __init__(self, seed: bytes) -> None:
        _check_length("an Ed25519 private key", seed)
        self._key = Ed25519PrivateKey.from_private_bytes(seed)

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


class _OpenSSLVerifier:
    __slots__ = ("_key",)

    def __init__(self, public: bytes) -> None:
        _check_length("an Ed25519 public key", public)
        self._key = Ed25519PublicKey.from_public_bytes(public)

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


class Backend(NamedTuple):
    """Where Ed25519 runs: ``signer(seed)`` and ``verifier(public)`` take the raw 32 bytes."""

    name: str
    signer: Callable[[bytes], Signer]
    verifier: Callable[[bytes], Verifier]


LIBSODIUM: Final = Backend("libsodium", _SodiumSigner, _SodiumVerifier)
OPENSSL: Final = Backend("openssl", _OpenSSLSigner, _OpenSSLVerifier)
BACKENDS: Final = (LIBSODIUM, OPENSSL)
DEFAULT: Final = LIBSODIUM


def _check_length(what: str, raw: bytes) -> None:
    if len(raw) != KEY_BYTES:
        raise ValueError(f"{what} is {KEY_BYTES} bytes, got {len(raw)}")
