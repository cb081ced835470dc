"""The Ed25519 backends (bus.security.ed25519): libsodium on the hot path, OpenSSL as reference.

Both must make the same signature bytes and accept every genuine signature (property tests over
random keys and messages), both must judge every wire vector as before, and where libsodium is
stricter (small-order keys and ``R``) it only refuses more.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from bus.envelope import from_record
from bus.errors import MeshError
from bus.security import ed25519
from bus.security.ed25519 import BACKENDS, LIBSODIUM, OPENSSL, Backend
from bus.security.keys import (
    ED25519,
    HMAC_SHA256,
    KeyRing,
    SigningKey,
    VerifyKey,
    decode_b64url,
    generate_ed25519,
)
from bus.security.signing import canonical_bytes, sign, sign_bytes, signature_valid, verify
from infra.stack.functions import FUNCTIONS, for_access
from tests.vectors import generate

VECTORS = Path(generate.__file__).resolve().parent
KEYS = json.loads((VECTORS / "keys.json").read_text())
MESSAGES = json.loads((VECTORS / "messages.json").read_text())
TAMPERED = json.loads((VECTORS / "tampered.json").read_text())
Json = dict[str, Any]

# The group order L of edwards25519 (RFC 8032, 5.1).
ORDER = 2**252 + 27742317777372353535851937790883648493
# The neutral element (0, 1), encoded: a point of small order (1).
IDENTITY = (1).to_bytes(32, "little")

seeds = st.binary(min_size=32, max_size=32)
messages = st.binary(max_size=2048)


@settings(max_examples=300, deadline=None)
@given(seed=seeds, message=messages)
def test_both_backends_make_the_same_signature_and_accept_each_others(seed: bytes,
                                                                      message: bytes) -> None:
    public = ed25519.public_from_seed(seed)
    assert public == Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    signatures = {backend.name: backend.signer(seed).sign(message) for backend in BACKENDS}
    assert len(set(signatures.values())) == 1
    [signature] = set(signatures.values())
    for backend in BACKENDS:
        assert backend.verifier(public).verify(message, signature), backend.name


@settings(max_examples=200, deadline=None)
@given(seed=seeds, message=messages, flip=st.integers(min_value=0))
def test_both_backends_refuse_a_changed_message_or_signature(seed: bytes, message: bytes,
                                                             flip: int) -> None:
    signature = LIBSODIUM.signer(seed).sign(message)
    public = ed25519.public_from_seed(seed)
    changed_message = message + b"\x00" if not message else _flip(message, flip)
    changed_signature = _flip(signature, flip)
    for backend in BACKENDS:
        verifier = backend.verifier(public)
        assert not verifier.verify(changed_message, signature), backend.name
        assert not verifier.verify(message, changed_signature), backend.name
        assert not verifier.verify(message, signature[:-1]), backend.name
        assert not verifier.verify(message, signature + b"\x00"), backend.name


@settings(max_examples=100, deadline=None)
@given(seed=seeds, other=seeds, message=messages)
def test_both_backends_refuse_another_keys_signature(seed: bytes, other: bytes,
                                                     message: bytes) -> None:
    if seed == other:
        return
    signature = OPENSSL.signer(other).sign(message)
    for backend in BACKENDS:
        assert not backend.verifier(ed25519.public_from_seed(seed)).verify(message, signature)


def test_a_non_canonical_s_is_refused_by_both() -> None:
    """``S + L`` satisfies the same equation; RFC 8032 requires ``S < L``, and both check it."""
    seed = bytes(range(32))
    message = b"orders.create"
    signature = LIBSODIUM.signer(seed).sign(message)
    s = int.from_bytes(signature[32:], "little") + ORDER
    assert s < 2**256
    malleated = signature[:32] + s.to_bytes(32, "little")
    for backend in BACKENDS:
        assert not backend.verifier(ed25519.public_from_seed(seed)).verify(message, malleated)


def test_a_small_order_key_is_refused_by_libsodium() -> None:
    """The neutral element as public key and as ``R`` with ``S = 0`` satisfies the
    cofactorless equation for EVERY message. Libsodium refuses small-order keys and ``R``;
    OpenSSL 3.0 (cryptography 50) accepts this universal forgery: the reason libsodium's
    strictness is welcome (the mesh never trusts such a key, so neither is exposed)."""
    forged = IDENTITY + bytes(32)
    for message in (b"any message", b"another one"):
        assert not LIBSODIUM.verifier(IDENTITY).verify(message, forged)
        assert OPENSSL.verifier(IDENTITY).verify(message, forged)


def test_keys_default_to_libsodium_and_compare_equal_across_backends() -> None:
    signing, verifying = generate_ed25519("orders", "k1")
    assert signing.backend is LIBSODIUM
    assert verifying.backend is LIBSODIUM
    on_openssl = SigningKey("k1", ED25519, signing.secret, backend=OPENSSL)
    assert on_openssl == signing
    assert on_openssl.verify_key("orders") == verifying
    assert on_openssl.verify_key("orders").backend is OPENSSL
    # The cryptography objects stay available to tools, made on first use.
    assert signing.private_key is not None
    assert verifying.public_key is not None
    verifying.public_key.verify(sign_bytes(b"m", signing), b"m")
    hmac_only = SigningKey("h1", HMAC_SHA256, bytes(32))
    assert hmac_only.signer is None
    assert hmac_only.private_key is None


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
def test_sign_and_verify_envelopes_on_each_backend(backend: Backend) -> None:
    signing, _ = generate_ed25519("gateway", "k1")
    key = SigningKey("k1", ED25519, signing.secret, backend=backend)
    ring = KeyRing([key.verify_key("gateway")])
    [vector] = MESSAGES["messages"][:1]
    envelope = from_record(*_record(vector))
    signed = sign(envelope, vector["topic"], key)
    assert verify(signed, vector["topic"], ring).key_id == "k1"
    with pytest.raises(MeshError, match="does not match"):
        verify(signed, vector["topic"] + "x", ring)


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
@pytest.mark.parametrize("vector", MESSAGES["messages"], ids=lambda v: v["name"])
def test_every_message_vector_on_each_backend(backend: Backend, vector: Json) -> None:
    envelope = from_record(*_record(vector))
    expected = bytes.fromhex(vector["signed_bytes_hex"])
    assert canonical_bytes(envelope, vector["topic"]) == expected
    key = _signing_keys(backend)[vector["signed_by"]["key_id"]]
    assert sign_bytes(expected, key) == decode_b64url(vector["signature_b64url"])
    ring = _keyring(backend)
    assert verify(envelope, vector["topic"], ring).key_id == key.key_id
    if "principal_assertion" in vector:
        part = vector["principal_assertion"]
        message = bytes.fromhex(part["signed_bytes_hex"])
        by = ring.get(part["by"]["key_id"])
        signature = sign_bytes(message, _signing_keys(backend)[by.key_id])
        assert signature_valid(by, message, signature)


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
@pytest.mark.parametrize("vector", TAMPERED["records"], ids=lambda v: v["name"])
def test_every_tampered_vector_on_each_backend(backend: Backend, vector: Json) -> None:
    try:
        verify(from_record(*_record(vector)), vector["topic"], _keyring(backend))
    except MeshError as exc:
        outcome = exc.code
    else:
        outcome = "valid"
    assert outcome == vector["expect"]


def _flip(data: bytes, at: int) -> bytes:
    index = at % (len(data) * 8)
    changed = bytearray(data)
    changed[index // 8] ^= 1 << (index % 8)
    return bytes(changed)


def _record(vector: Json) -> tuple[list[tuple[str, bytes]], bytes]:
    return ([(name, text.encode()) for name, text in vector["headers"]],
            vector["value"].encode())


def _signing_keys(backend: Backend) -> dict[str, SigningKey]:
    keys = {entry["key_id"]: SigningKey(entry["key_id"], ED25519,
                                        bytes.fromhex(entry["private_seed_hex"]),
                                        backend=backend)
            for entry in KEYS["ed25519"]}
    keys.update({entry["key_id"]: SigningKey(entry["key_id"], HMAC_SHA256,
                                             bytes.fromhex(entry["secret_hex"]))
                 for entry in KEYS["hmac-sha256"]})
    return keys


def _keyring(backend: Backend) -> KeyRing:
    published = KeyRing.from_dict(json.loads((VECTORS / "keyring.json").read_text()))
    ring = KeyRing(VerifyKey(key.key_id, key.algorithm, key.service, key.material,
                             backend=backend) for key in published)
    for entry in KEYS["hmac-sha256"]:
        ring.add(VerifyKey(entry["key_id"], HMAC_SHA256, entry["service"],
                           bytes.fromhex(entry["secret_hex"])))
    return ring


def test_every_lambda_zip_with_the_bus_vendors_libsodium() -> None:
    """``bus.security.keys`` imports PyNaCl: a zip without it would deploy and then fail on
    its first import (proved on the emulator by tests/e2e/test_http_orders.py)."""
    with_bus = [spec for spec in FUNCTIONS if "bus" in spec.packages]
    assert {spec.name for spec in with_bus} >= {"gateway", "authorizer", "service-events"}
    for spec in with_bus:
        assert "pynacl" in for_access(spec, msk_iam=True).requirements, spec.name
        assert "pynacl" in for_access(spec, msk_iam=False).requirements, spec.name
