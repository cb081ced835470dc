from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bus.errors import MeshError
from bus.security.keys import (
    ED25519,
    HMAC_SHA256,
    InvalidKey,
    KeyRing,
    SecretSource,
    SigningKey,
    UnknownKeyId,
    VerifyKey,
    decode_b64url,
    encode_b64url,
    fingerprint,
    generate_ed25519,
    hmac_key,
    load_signing_key,
    load_verify_key,
    signing_key_from_bytes,
    signing_key_from_env,
    signing_key_from_source,
    verify_key_from_dict,
    verify_key_to_dict,
)

SECRET = bytes(range(32))


def pem_private(private: Ed25519PrivateKey, password: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def pem_public(private: Ed25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# --- generation ------------------------------------------------------------------------


def test_generated_ed25519_pair_matches() -> None:
    signing, verify_key = generate_ed25519("orders")
    assert signing.algorithm == verify_key.algorithm == ED25519
    assert verify_key.service == "orders"
    assert signing.key_id == verify_key.key_id == fingerprint(verify_key.material)
    assert signing.verify_key("orders") == verify_key


def test_generated_pairs_differ_and_take_an_explicit_id() -> None:
    first, _ = generate_ed25519("orders", "orders-1")
    second, _ = generate_ed25519("orders", "orders-1")
    assert first.key_id == "orders-1"
    assert first.secret != second.secret


def test_hmac_pair_shares_the_secret() -> None:
    signing, verify_key = hmac_key("orders", SECRET, "orders-hmac-1")
    assert signing.algorithm == verify_key.algorithm == HMAC_SHA256
    assert signing.secret == verify_key.material == SECRET


def test_secrets_stay_out_of_reprs() -> None:
    signing, verify_key = hmac_key("orders", SECRET, "orders-hmac-1")
    assert repr(SECRET) not in repr(signing) + repr(verify_key)


@pytest.mark.parametrize("key_id", ["", "a:b", "a b", "é", "k" * 129, "a\n"])
def test_key_ids_must_fit_in_a_signature_header(key_id: str) -> None:
    with pytest.raises(InvalidKey):
        hmac_key("orders", SECRET, key_id)


def test_short_hmac_secret_is_refused() -> None:
    with pytest.raises(InvalidKey, match="at least 32"):
        hmac_key("orders", b"password", "k1")


def test_bad_key_material_is_refused() -> None:
    with pytest.raises(InvalidKey):
        SigningKey("k1", ED25519, bytes(31))
    with pytest.raises(InvalidKey):
        VerifyKey("k1", ED25519, "orders", bytes(33))
    with pytest.raises(InvalidKey):
        VerifyKey("k1", ED25519, "", bytes(32))
    with pytest.raises(InvalidKey):
        SigningKey("k1", "rsa", bytes(32))  # type: ignore[arg-type]


# --- key ring --------------------------------------------------------------------------


def test_key_ring_holds_several_keys_per_service() -> None:
    _, old = generate_ed25519("orders", "orders-1")
    _, new = generate_ed25519("orders", "orders-2")
    _, other = generate_ed25519("inventory", "inventory-1")
    ring = KeyRing([old, new, other])

    assert ring.get("orders-2") == new
    assert ring.for_service("orders") == [old, new]
    assert "inventory-1" in ring
    assert len(ring) == 3
    assert set(ring) == {old, new, other}


def test_unknown_key_id_is_a_permanent_mesh_error() -> None:
    with pytest.raises(UnknownKeyId) as caught:
        KeyRing().get("nope")
    assert isinstance(caught.value, MeshError)
    assert not caught.value.retriable
    assert caught.value.code == "unknown_key_id"
    assert caught.value.key_id == "nope"


def test_removing_a_key_ends_its_trust() -> None:
    _, key = generate_ed25519("orders", "orders-1")
    ring = KeyRing([key])
    ring.remove("orders-1")
    with pytest.raises(UnknownKeyId):
        ring.get("orders-1")
    with pytest.raises(UnknownKeyId):
        ring.remove("orders-1")


def test_readding_a_key_is_harmless_but_reusing_its_id_is_not() -> None:
    _, key = generate_ed25519("orders", "orders-1")
    _, impostor = generate_ed25519("inventory", "orders-1")
    ring = KeyRing([key, key])
    with pytest.raises(InvalidKey, match="already used"):
        ring.add(impostor)
    assert ring.get("orders-1") == key


# --- files -----------------------------------------------------------------------------


def test_load_pem_signing_key_and_pem_verify_key(tmp_path: Path) -> None:
    private = Ed25519PrivateKey.generate()
    (tmp_path / "orders.pem").write_bytes(pem_private(private))
    (tmp_path / "orders.pub.pem").write_bytes(pem_public(private))

    signing = load_signing_key(tmp_path / "orders.pem")
    verify_key = load_verify_key(tmp_path / "orders.pub.pem", "orders")

    assert signing.secret == private.private_bytes_raw()
    assert signing.verify_key("orders") == verify_key
    assert signing.key_id == verify_key.key_id


def test_load_encrypted_pem(tmp_path: Path) -> None:
    private = Ed25519PrivateKey.generate()
    path = tmp_path / "orders.pem"
    path.write_bytes(pem_private(private, b"s3cret"))

    assert load_signing_key(path, password=b"s3cret").secret == private.private_bytes_raw()
    with pytest.raises(InvalidKey):
        load_signing_key(path, password=b"wrong")
    with pytest.raises(InvalidKey):
        load_signing_key(path)


def test_load_raw_key_files(tmp_path: Path) -> None:
    private = Ed25519PrivateKey.generate()
    (tmp_path / "ed.key").write_bytes(private.private_bytes_raw())
    (tmp_path / "ed.pub").write_bytes(private.public_key().public_bytes_raw())
    (tmp_path / "hmac.key").write_bytes(SECRET)

    signing = load_signing_key(tmp_path / "ed.key", key_id="orders-1")
    assert signing.key_id == "orders-1"
    assert load_verify_key(tmp_path / "ed.pub", "orders", key_id="orders-1") == (
        signing.verify_key("orders")
    )
    hmac_signing = load_signing_key(tmp_path / "hmac.key", algorithm=HMAC_SHA256, key_id="h1")
    assert hmac_signing == hmac_key("orders", SECRET, "h1")[0]


def test_unusable_key_files(tmp_path: Path) -> None:
    other_curve = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "ec.pem").write_bytes(
        other_curve.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (tmp_path / "ec.pub.pem").write_bytes(
        other_curve.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    (tmp_path / "short.key").write_bytes(bytes(31))
    (tmp_path / "broken.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\nnope\n")

    for path in ("ec.pem", "short.key", "broken.pem", "missing.pem"):
        with pytest.raises(InvalidKey):
            load_signing_key(tmp_path / path)
    with pytest.raises(InvalidKey):
        load_verify_key(tmp_path / "ec.pub.pem", "orders")
    with pytest.raises(InvalidKey, match="explicit key id"):
        load_signing_key(tmp_path / "short.key", algorithm=HMAC_SHA256)


# --- environment and secret sources ----------------------------------------------------


@pytest.mark.parametrize(
    "encode",
    [
        lambda raw: base64.b64encode(raw).decode(),
        lambda raw: base64.urlsafe_b64encode(raw).decode().rstrip("="),
        lambda raw: "\n" + base64.encodebytes(raw).decode(),
    ],
    ids=["standard", "urlsafe-unpadded", "wrapped"],
)
def test_signing_key_from_base64_env(encode: Callable[[bytes], str]) -> None:
    private = Ed25519PrivateKey.generate()
    env = {"MESH_KEY": encode(private.private_bytes_raw())}
    assert signing_key_from_env("MESH_KEY", env).secret == private.private_bytes_raw()


def test_signing_key_from_pem_env() -> None:
    private = Ed25519PrivateKey.generate()
    env = {"MESH_KEY": pem_private(private).decode()}
    assert signing_key_from_env("MESH_KEY", env).secret == private.private_bytes_raw()


def test_hmac_key_from_env() -> None:
    env = {"MESH_HMAC": base64.b64encode(SECRET).decode()}
    signing = signing_key_from_env("MESH_HMAC", env, algorithm=HMAC_SHA256, key_id="h1")
    assert signing.secret == SECRET


def test_env_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    private = Ed25519PrivateKey.generate()
    monkeypatch.setenv("MESH_KEY", base64.b64encode(private.private_bytes_raw()).decode())
    assert signing_key_from_env("MESH_KEY").secret == private.private_bytes_raw()


@pytest.mark.parametrize("value", [None, "", "  ", "not base64!", "A", "é", "-----BEGIN nope"])
def test_unusable_env_values(value: str | None) -> None:
    env = {} if value is None else {"MESH_KEY": value}
    with pytest.raises(InvalidKey):
        signing_key_from_env("MESH_KEY", env)


class DictSource:
    def __init__(self, secrets: dict[str, bytes]) -> None:
        self.secrets = secrets

    def get(self, name: str) -> bytes:
        try:
            return self.secrets[name]
        except KeyError:
            raise InvalidKey(f"no secret {name}") from None


def test_signing_key_from_a_secret_source() -> None:
    private = Ed25519PrivateKey.generate()
    source: SecretSource = DictSource({"mesh/orders": pem_private(private)})
    assert signing_key_from_source(source, "mesh/orders").secret == private.private_bytes_raw()
    with pytest.raises(InvalidKey):
        signing_key_from_source(source, "mesh/inventory")


def test_raw_bytes_are_taken_verbatim() -> None:
    assert signing_key_from_bytes(SECRET).secret == SECRET


def test_a_pem_is_not_mistaken_for_an_hmac_secret() -> None:
    pem = pem_private(Ed25519PrivateKey.generate())
    with pytest.raises(InvalidKey, match="not PEM"):
        signing_key_from_bytes(pem, algorithm=HMAC_SHA256, key_id="h1")


# --- serialisation for policies --------------------------------------------------------


def test_key_ring_round_trips_through_json() -> None:
    _, old = generate_ed25519("orders", "orders-1")
    _, new = generate_ed25519("orders")
    ring = KeyRing([old, new])
    restored = KeyRing.from_dict(json.loads(json.dumps(ring.to_dict())))
    assert set(restored) == {old, new}


def test_a_verify_key_serialises_to_plain_strings() -> None:
    _, key = generate_ed25519("orders", "orders-1")
    data = verify_key_to_dict(key)
    assert data == {
        "key_id": "orders-1",
        "algorithm": "ed25519",
        "service": "orders",
        "public_key": encode_b64url(key.material),
    }
    assert verify_key_from_dict(data) == key


def test_hmac_secrets_are_never_serialised() -> None:
    _, key = hmac_key("orders", SECRET, "h1")
    with pytest.raises(InvalidKey, match="must not be published"):
        verify_key_to_dict(key)
    with pytest.raises(InvalidKey):
        KeyRing([key]).to_dict()


GOOD = {"key_id": "k1", "algorithm": "ed25519", "service": "orders", "public_key": "A" * 43}


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"keys": "k1"},
        {"keys": [1]},
        {"keys": [{**GOOD, "public_key": None}]},
        {"keys": [{k: v for k, v in GOOD.items() if k != "service"}]},
        {"keys": [{**GOOD, "public_key": "A" * 42}]},
        {"keys": [{**GOOD, "public_key": "A" * 43 + "="}]},
        {"keys": [{**GOOD, "public_key": "!" * 43}]},
        {"keys": [{**GOOD, "algorithm": "hmac-sha256"}]},
        {"keys": [{**GOOD, "key_id": "k:1"}]},
        {"keys": [GOOD, {**GOOD, "public_key": "B" + "A" * 42}]},
    ],
)
def test_malformed_key_rings_are_invalid_keys(data: dict[str, object]) -> None:
    with pytest.raises(InvalidKey):
        KeyRing.from_dict(data)


def test_a_well_formed_key_ring_parses() -> None:
    assert len(KeyRing.from_dict({"keys": [GOOD]})) == 1


@pytest.mark.parametrize("length", range(70))
def test_base64url_round_trips(length: int) -> None:
    raw = bytes(range(256))[:length]
    assert decode_b64url(encode_b64url(raw)) == raw


@pytest.mark.parametrize("text", ["A", "AA==", "AB", "a+b/", "AAA=", "A A"])
def test_base64url_is_strict(text: str) -> None:
    with pytest.raises(ValueError, match="base64url"):
        decode_b64url(text)
