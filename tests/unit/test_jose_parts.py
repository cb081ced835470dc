"""functions.gateway.auth.jose: a JWK's key, a compact JWS's parts, one signature check.

The whole verifier is compared with PyJWT in ``test_jose_against_pyjwt``; here each part is
held to its own rule, with the keys made by ``cryptography`` as the reference.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from bus.security.b64url import encode_b64url
from functions.gateway.auth import MalformedBearer
from functions.gateway.auth.jose import compact, signatures
from functions.gateway.auth.jose.keys import public_key

RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
P256 = ec.generate_private_key(ec.SECP256R1()).public_key()
P521 = ec.generate_private_key(ec.SECP521R1()).public_key()
ED25519 = ed25519.Ed25519PrivateKey.generate().public_key()
ED448 = ed448.Ed448PrivateKey.generate().public_key()


def jwk(key: Any) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPublicKey):
        return dict(RSAAlgorithm.to_jwk(key, as_dict=True))
    if isinstance(key, ec.EllipticCurvePublicKey):
        return dict(ECAlgorithm.to_jwk(key, as_dict=True))
    return dict(OKPAlgorithm.to_jwk(key, as_dict=True))


@pytest.mark.parametrize("key", [RSA, P256, P521, ED25519, ED448],
                         ids=["rsa", "p256", "p521", "ed25519", "ed448"])
def test_a_public_jwk_gives_the_same_key(key: Any) -> None:
    loaded = public_key(jwk(key))
    assert loaded is not None
    if isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        assert loaded.public_numbers() == key.public_numbers()  # type: ignore[union-attr]
    else:
        assert loaded.public_bytes_raw() == key.public_bytes_raw()  # type: ignore[union-attr]


UNUSABLE: list[tuple[str, dict[str, Any]]] = [
    ("rsa 1024 bits", jwk(rsa.generate_private_key(public_exponent=65537,
                                                   key_size=1024).public_key())),
    ("rsa exponent 1", {**jwk(RSA), "e": "AQ"}),
    ("rsa without n", {k: v for k, v in jwk(RSA).items() if k != "n"}),
    ("ec x too short", {**jwk(P256), "x": encode_b64url(b"\x01" * 31)}),
    ("ec off the curve", {**jwk(P256), "y": encode_b64url(b"\x01" * 32)}),
    ("ec unknown curve", {**jwk(P256), "crv": "secp256k1"}),
    ("ec curve of other length", {**jwk(P256), "crv": "P-384"}),
    ("okp x25519", {**jwk(ED25519), "crv": "X25519"}),
    ("okp wrong length", {**jwk(ED25519), "x": encode_b64url(b"\x01" * 31)}),
    ("padded base64url", {**jwk(ED25519), "x": jwk(ED25519)["x"] + "="}),
    ("standard alphabet", {**jwk(RSA), "n": "+" + jwk(RSA)["n"][1:]}),
    ("private rsa", {**jwk(RSA), "d": "AQ"}),
    ("private okp", {**jwk(ED25519), "d": jwk(ED25519)["x"]}),
    ("symmetric", {"kty": "oct", "k": "c2VjcmV0"}),
    ("kty not a string", {**jwk(RSA), "kty": ["RSA"]}),
    ("number member", {**jwk(ED25519), "x": 5}),
]


@pytest.mark.parametrize("document", [d for _, d in UNUSABLE], ids=[n for n, _ in UNUSABLE])
def test_an_unusable_jwk_gives_none(document: dict[str, Any]) -> None:
    assert public_key(document) is None


def test_pyjwt_loaded_the_short_rsa_key() -> None:
    """The one JWK refused here that PyJWT loaded (with a warning at each use)."""
    short = UNUSABLE[0][1]
    assert RSAAlgorithm.from_jwk(short).key_size == 1024


# -- a compact JWS ----------------------------------------------------------------------------


def token(header: dict[str, Any], payload: bytes = b"{}", signature: bytes = b"sig") -> str:
    return ".".join(encode_b64url(part) for part in (json.dumps(header).encode(), payload,
                                                       signature))


def test_the_parts_and_the_signing_input() -> None:
    value = token({"alg": "ES256", "kid": "k"}, b'{"sub":"a"}', b"\x01\x02")
    jws = compact.parse(value)
    assert jws.header == {"alg": "ES256", "kid": "k"}
    assert jws.payload == b'{"sub":"a"}'
    assert jws.signature == b"\x01\x02"
    assert jws.signing_input == value.rpartition(".")[0].encode()


HEADER = b'{"alg":"ES256" }'  # 16 bytes: 22 characters, the last with 4 unused bits
NON_CANONICAL = encode_b64url(HEADER)[:-1] + chr(ord(encode_b64url(HEADER)[-1]) + 1)


def test_the_non_canonical_header_decodes_leniently_to_the_same_bytes() -> None:
    assert base64.urlsafe_b64decode(NON_CANONICAL + "==") == HEADER
    assert compact.parse(encode_b64url(HEADER) + ".e30.c2ln").header == {"alg": "ES256"}


@pytest.mark.parametrize("value", [
    "a.b", "a.b.c.d", token({"alg": "ES256"}) + "=",
    NON_CANONICAL + ".e30.c2ln",
    f"{encode_b64url(b'{}')}.e30.c2ln".replace("e30", "e30="),
    f"{encode_b64url(b'not json')}.e30.c2ln",
    f"{encode_b64url(bytes([0xff]))}.e30.c2ln",
    f"{encode_b64url(b'[1]')}.e30.c2ln",
    encode_b64url(b'{"alg":1,"alg":2}') + ".e30.c2ln",
])
def test_what_is_not_a_compact_jws(value: str) -> None:
    with pytest.raises(MalformedBearer):
        compact.parse(value)


def test_the_payload_json_is_read_strictly() -> None:
    assert compact.json_object(b'{"a": [1, 2.5, "x"]}', "payload") == {"a": [1, 2.5, "x"]}
    for data in (b'{"a": NaN}', b'{"a": 1, "a": 1}', b"[]", b'"a"', b"{" * 100_000,
                 '{"a": "é"}'.encode("utf-16")):
        with pytest.raises(MalformedBearer):
            compact.json_object(data, "payload")


# -- one signature ------------------------------------------------------------------------------


def test_a_key_of_another_type_never_verifies() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    signature = ECAlgorithm(ECAlgorithm.SHA256).sign(b"m", private)
    assert signatures.verifies("ES256", private.public_key(), b"m", signature)
    assert not signatures.verifies("ES256", P521, b"m", signature)  # another curve
    assert not signatures.verifies("RS256", private.public_key(), b"m", signature)
    assert not signatures.verifies("EdDSA", private.public_key(), b"m", signature)
    assert not signatures.verifies("ES256", private.public_key(), b"m", signature + b"\x00")
    assert not signatures.verifies("HS256", private.public_key(), b"m", signature)
    assert not signatures.verifies("ES256", private.public_key(), b"m", b"")
