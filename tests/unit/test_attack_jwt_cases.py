"""``make attack``'s tokens aimed at the verifier written on ``cryptography``: each is refused
by the gateway's verifier for the reason it was built to probe, and each is what it claims
to be (the DER and respelled signatures are the genuine signature's own bytes)."""

from __future__ import annotations

import asyncio
import base64
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from jwt.algorithms import ECAlgorithm

from functions.gateway.auth import AuthError
from functions.gateway.auth.jwks import JwksCache, StaticJwks
from functions.gateway.auth.jwt_bearer import JwtVerifier
from proof.attack.edge_cases import as_der, respelled_signature

ISSUER, AUDIENCE, KID = "https://idp.example.test/", "meshgate-api", "ec-1"
KEY = ec.generate_private_key(ec.SECP256R1())


def verdict(token: str) -> str:
    public = ECAlgorithm.to_jwk(KEY.public_key(), as_dict=True)
    keys = JwksCache(StaticJwks({"keys": [{**public, "kid": KID, "use": "sig"}]}))
    verifier = JwtVerifier(keys, issuer=ISSUER, audience=AUDIENCE)
    try:
        asyncio.run(verifier.verify(token))
    except AuthError as error:
        return error.reason
    return "ok"


def genuine() -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "exp": now + 600}
    return jwt.encode(claims, KEY, algorithm="ES256", headers={"kid": KID})


def signature(token: str) -> bytes:
    text = token.rpartition(".")[2]
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_the_genuine_token_is_the_control() -> None:
    assert verdict(genuine()) == "ok"


def test_the_der_signature_is_the_genuine_one_refused() -> None:
    token = genuine()
    der = as_der(token)
    r, s = decode_dss_signature(signature(der))
    raw = signature(token)
    assert (r, s) == (int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    assert verdict(der) == "bad_signature"


def test_the_respelled_signature_is_the_genuine_bytes_refused() -> None:
    token = genuine()
    other = respelled_signature(token)
    assert other != token
    assert signature(other) == signature(token)  # a lenient decoder sees no difference
    assert verdict(other) == "malformed_token"


def test_the_psychic_signature_is_refused() -> None:
    """r = s = 0 (CVE-2022-21449), over a genuine header and payload."""
    head_payload = genuine().rpartition(".")[0]
    token = f"{head_payload}.{base64.urlsafe_b64encode(bytes(64)).rstrip(b'=').decode()}"
    assert verdict(token) == "bad_signature"
