"""functions.gateway.auth: bearer JWTs verified against a JWKS served over a real socket.

The key set is served by an in-process ``http.server`` on 127.0.0.1 (ephemeral port) that
counts its requests, so fetching, caching and the one refresh on an unknown key id are
observed on the wire. A fake clock drives TTLs and the refresh rate limit.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from functions.gateway.auth import (
    AuthError,
    InvalidToken,
    KeySetUnavailable,
    MalformedBearer,
    MissingBearer,
    Principal,
    UnknownKey,
)
from functions.gateway.auth.jose import signatures
from functions.gateway.auth.jwks import (
    JwksCache,
    StaticJwks,
    UrlJwks,
    parse_jwks,
    select_key,
)
from functions.gateway.auth.jwt_bearer import JwtVerifier, parse_bearer
from proof.serving import serving

ISSUER = "https://idp.example.test/"
AUDIENCE = "meshgate-api"
RSA_KID, EC_KID, ED_KID = "rsa-1", "ec-1", "ed-1"

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def _jwk(kid: str, alg: str, public: Any, to_jwk: Callable[..., Any]) -> dict[str, Any]:
    data: dict[str, Any] = to_jwk(public, as_dict=True)
    return {**data, "kid": kid, "alg": alg, "use": "sig"}


def rsa_jwk(kid: str = RSA_KID, key: rsa.RSAPrivateKey = RSA_KEY) -> dict[str, Any]:
    return _jwk(kid, "RS256", key.public_key(), RSAAlgorithm.to_jwk)


def jwks_document() -> dict[str, Any]:
    return {
        "keys": [
            rsa_jwk(),
            _jwk(EC_KID, "ES256", EC_KEY.public_key(), ECAlgorithm.to_jwk),
            _jwk(ED_KID, "EdDSA", ED_KEY.public_key(), OKPAlgorithm.to_jwk),
        ]
    }


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class JwksServer:
    """A JWKS endpoint on 127.0.0.1 that counts GETs; ``status`` makes it fail on purpose."""

    document: dict[str, Any] = field(default_factory=jwks_document)
    status: int = 200
    hits: int = 0
    url: str = ""


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    state = JwksServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits += 1
            body = json.dumps(state.document).encode()
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    with serving(server):
        yield state


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cache(jwks_server: JwksServer, clock: FakeClock) -> JwksCache:
    return JwksCache(
        UrlJwks(jwks_server.url, timeout_s=2.0),
        ttl_s=300.0,
        min_refresh_interval_s=30.0,
        clock=clock,
    )


@pytest.fixture
def verifier(cache: JwksCache) -> JwtVerifier:
    return JwtVerifier(cache, issuer=ISSUER, audience=AUDIENCE, leeway_s=5.0)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-42",
        "iat": now,
        "exp": now + 600,
        "scope": "orders:write orders:read",
        "email": "someone@example.test",
        "jti": "token-1",
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def sign(
    payload: dict[str, Any],
    *,
    key: PrivateKey = RSA_KEY,
    alg: str = "RS256",
    kid: str | None = RSA_KID,
) -> str:
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(payload, key, algorithm=alg, headers=headers)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], payload: dict[str, Any], secret: bytes | None) -> str:
    """A compact JWS built without PyJWT (PyJWT refuses to make the forged ones)."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    if secret is None:
        return f"{signing_input}."
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


async def refused(verifier: JwtVerifier, header: str | None) -> AuthError:
    with pytest.raises(AuthError) as caught:
        await verifier.authenticate(header)
    error = caught.value
    # Whatever failed, nothing of the token may show in what the caller or a log sees.
    if header:
        token = header.partition(" ")[2]
        for part in filter(None, token.split(".")):
            assert part not in str(error)
        assert error.__cause__ is None or token not in str(error.__cause__)
    assert "user-42" not in str(error)
    return error


# -- the header ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "", "   "])
async def test_missing_header_is_401(verifier: JwtVerifier, value: str | None) -> None:
    error = await refused(verifier, value)
    assert isinstance(error, MissingBearer)
    assert (error.status, error.reason) == (401, "missing_credentials")
    assert error.www_authenticate() == "Bearer"


@pytest.mark.parametrize(
    "value", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer    ", "Token abc.def.ghi", "abc.def.ghi"]
)
async def test_malformed_header_is_401(verifier: JwtVerifier, value: str) -> None:
    error = await refused(verifier, value)
    assert isinstance(error, MalformedBearer)
    assert (error.status, error.reason) == (401, "malformed_credentials")
    assert error.www_authenticate() == 'Bearer error="invalid_token"'


@pytest.mark.parametrize(
    "token",
    [
        "not-a-jwt",
        "eyJhbGciOi.eyJzdWIiOi",
        "eyJhbGciOi eyJ.eyJzdWIiOi.c2lnbmF0dXJl",
        "abc.def.ghi",  # the right shape, but the header is not JSON
        f"{b64url(b'[1, 2]')}.{b64url(b'{}')}.sig",  # a header that is not an object
        "x" * 9000 + ".eyJzdWIiOi.c2lnbmF0dXJl",
    ],
)
async def test_malformed_token_is_401(verifier: JwtVerifier, token: str) -> None:
    error = await refused(verifier, f"Bearer {token}")
    assert isinstance(error, MalformedBearer)
    assert (error.status, error.reason) == (401, "malformed_token")


def test_parse_bearer_accepts_any_case_scheme() -> None:
    token = sign(claims())
    assert parse_bearer(f"Bearer {token}") == token
    assert parse_bearer(f"  bearer   {token} ") == token


# -- valid tokens -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "alg", "kid"),
    [(RSA_KEY, "RS256", RSA_KID), (EC_KEY, "ES256", EC_KID), (ED_KEY, "EdDSA", ED_KID)],
)
async def test_valid_token_gives_a_principal(
    verifier: JwtVerifier, jwks_server: JwksServer, key: PrivateKey, alg: str, kid: str
) -> None:
    payload = claims(scp=["admin"])
    principal = await verifier.authenticate(f"Bearer {sign(payload, key=key, alg=alg, kid=kid)}")
    assert principal.subject == "user-42"
    assert principal.method == "jwt"
    assert principal.issuer == ISSUER
    assert principal.scopes == {"orders:write", "orders:read", "admin"}
    assert principal.has_scope("orders:read")
    assert principal.claims["aud"] == AUDIENCE
    assert principal.claims["exp"] == payload["exp"]
    assert "email" not in principal.claims  # only the configured subset travels
    assert jwks_server.hits == 1  # the key set really came over the socket


async def test_principal_round_trips_for_mesh_messages(verifier: JwtVerifier) -> None:
    principal = await verifier.verify(sign(claims(aud=[AUDIENCE, "other"])))
    assert principal.claims["aud"] == (AUDIENCE, "other")
    assert Principal.from_json(principal.to_json()) == principal
    with pytest.raises(ValueError, match="principal"):
        Principal.from_json('{"sub": "x", "method": "root"}')


async def test_token_without_kid_uses_the_only_matching_key(verifier: JwtVerifier) -> None:
    principal = await verifier.verify(sign(claims(), key=EC_KEY, alg="ES256", kid=None))
    assert principal.subject == "user-42"


async def test_keys_from_configuration(clock: FakeClock) -> None:
    for document in (jwks_document(), json.dumps(jwks_document())):
        cache = JwksCache(StaticJwks(document), clock=clock)
        verifier = JwtVerifier(cache, issuer=[ISSUER, "https://other/"], audience=AUDIENCE)
        assert (await verifier.verify(sign(claims()))).subject == "user-42"


# -- time, issuer, audience -----------------------------------------------------------------


async def test_expired_is_401(verifier: JwtVerifier) -> None:
    now = int(time.time())
    error = await refused(verifier, f"Bearer {sign(claims(iat=now - 900, exp=now - 60))}")
    assert isinstance(error, InvalidToken)
    assert (error.status, error.reason) == (401, "token_expired")


async def test_expiry_within_leeway_passes(verifier: JwtVerifier) -> None:
    now = int(time.time())
    assert await verifier.verify(sign(claims(iat=now - 900, exp=now - 2)))


async def test_not_yet_valid_is_401(verifier: JwtVerifier) -> None:
    now = int(time.time())
    error = await refused(verifier, f"Bearer {sign(claims(nbf=now + 120))}")
    assert (error.status, error.reason) == (401, "token_not_yet_valid")
    assert await verifier.verify(sign(claims(nbf=now + 2)))  # inside the leeway


async def test_missing_exp_is_401(verifier: JwtVerifier) -> None:
    error = await refused(verifier, f"Bearer {sign(claims(exp=None))}")
    assert (error.status, error.reason) == (401, "missing_claim")


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"iss": "https://evil.example.test/"}, "wrong_issuer"),
        ({"iss": None}, "missing_claim"),
        ({"aud": "someone-else"}, "wrong_audience"),
        ({"aud": ["a", "b"]}, "wrong_audience"),
        ({"aud": None}, "missing_claim"),
        ({"sub": None}, "missing_claim"),
    ],
)
async def test_wrong_issuer_or_audience_is_401(
    verifier: JwtVerifier, overrides: dict[str, Any], reason: str
) -> None:
    error = await refused(verifier, f"Bearer {sign(claims(**overrides))}")
    assert (error.status, error.reason) == (401, reason)


async def test_tampered_payload_is_401(verifier: JwtVerifier) -> None:
    header, _, signature = sign(claims()).split(".")
    forged = b64url(json.dumps(claims(sub="admin")).encode())
    error = await refused(verifier, f"Bearer {header}.{forged}.{signature}")
    assert (error.status, error.reason) == (401, "bad_signature")


# -- algorithms ---------------------------------------------------------------------------


@dataclass
class DecodeSpy:
    algorithms: list[str] = field(default_factory=list)


@pytest.fixture
def decode_spy(monkeypatch: pytest.MonkeyPatch) -> DecodeSpy:
    """Records the algorithm of every signature check, then lets it run."""
    spy, real = DecodeSpy(), signatures.verifies

    def spying(alg: str, *args: Any) -> bool:
        spy.algorithms.append(alg)
        return real(alg, *args)

    monkeypatch.setattr(signatures, "verifies", spying)
    return spy


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
async def test_alg_none_is_401(verifier: JwtVerifier, decode_spy: DecodeSpy, alg: str) -> None:
    token = hand_made({"alg": alg, "typ": "JWT", "kid": RSA_KID}, claims(), secret=None)
    error = await refused(verifier, f"Bearer {token}")
    assert isinstance(error, InvalidToken)
    assert (error.status, error.reason) == (401, "algorithm_not_allowed")
    assert decode_spy.algorithms == []


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
async def test_hmac_signed_with_the_public_key_is_401(
    verifier: JwtVerifier, decode_spy: DecodeSpy, alg: str
) -> None:
    """The classic confusion attack: the RSA public key's PEM used as the HMAC secret."""
    pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": alg, "typ": "JWT", "kid": RSA_KID}
    token = hand_made(header, claims(sub="admin"), secret=pem)
    if alg == "HS256":  # the forgery is a correct HS256 MAC under the public PEM
        signing_input, _, mac = token.rpartition(".")
        expected = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
        assert b64url(expected) == mac
    error = await refused(verifier, f"Bearer {token}")
    assert (error.status, error.reason) == (401, "algorithm_not_allowed")
    await verifier.verify(sign(claims()))  # a good token, so a signature is checked once
    assert decode_spy.algorithms == ["RS256"]


@pytest.mark.parametrize("algorithms", [["HS256"], ["RS256", "HS512"], ["none"], [], "RS256"])
def test_verifier_refuses_symmetric_or_none_allow_lists(
    cache: JwksCache, algorithms: Sequence[str]
) -> None:
    with pytest.raises(ValueError, match="algorithm"):
        JwtVerifier(cache, issuer=ISSUER, audience=AUDIENCE, algorithms=algorithms)


async def test_algorithm_outside_the_allow_list_is_401(cache: JwksCache) -> None:
    only_rsa = JwtVerifier(cache, issuer=ISSUER, audience=AUDIENCE, algorithms=["RS256"])
    token = sign(claims(), key=EC_KEY, alg="ES256", kid=EC_KID)
    error = await refused(only_rsa, f"Bearer {token}")
    assert error.reason == "algorithm_not_allowed"


async def test_algorithm_not_matching_the_key_is_401(verifier: JwtVerifier) -> None:
    token = sign(claims(), key=EC_KEY, alg="ES256", kid=RSA_KID)  # EC token, RSA key id
    error = await refused(verifier, f"Bearer {token}")
    assert (error.status, error.reason) == (401, "algorithm_mismatch")


# -- key ids, refresh, caching ----------------------------------------------------------------


async def test_unknown_kid_refreshes_once_then_401(
    verifier: JwtVerifier, jwks_server: JwksServer, clock: FakeClock
) -> None:
    await verifier.verify(sign(claims()))  # keys fetched and cached
    assert jwks_server.hits == 1
    clock.now += 60  # later, still inside the TTL: the cache alone would not fetch again
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = sign(claims(), key=new_key, kid="rsa-2")
    error = await refused(verifier, f"Bearer {token}")
    assert isinstance(error, UnknownKey)
    assert (error.status, error.reason) == (401, "unknown_key")
    assert jwks_server.hits == 2  # exactly one refresh

    # More unknown key ids inside the interval do not reach the provider.
    jwks_server.document["keys"].append(rsa_jwk("rsa-2", new_key))
    for kid in ("rsa-2", "rsa-3", "rsa-4"):
        again = await refused(verifier, f"Bearer {sign(claims(), key=new_key, kid=kid)}")
        assert again.reason == "unknown_key"
    assert jwks_server.hits == 2

    # Once the interval has passed, the rotated key is picked up by one refresh.
    clock.now += 31
    assert (await verifier.verify(token)).subject == "user-42"
    assert jwks_server.hits == 3


async def test_unknown_kid_right_after_a_fetch_does_not_fetch_again(
    verifier: JwtVerifier, jwks_server: JwksServer
) -> None:
    token = sign(claims(), kid="rsa-9")
    assert (await refused(verifier, f"Bearer {token}")).reason == "unknown_key"
    assert jwks_server.hits == 1  # the set was fetched for this very token: no second GET


async def test_concurrent_unknown_kids_share_one_refresh(
    verifier: JwtVerifier, jwks_server: JwksServer, clock: FakeClock
) -> None:
    await verifier.verify(sign(claims()))
    clock.now += 60
    tokens = [sign(claims(), kid=f"new-{n}") for n in range(10)]
    results = await asyncio.gather(
        *(verifier.verify(token) for token in tokens), return_exceptions=True
    )
    assert all(isinstance(result, UnknownKey) for result in results)
    assert jwks_server.hits == 2


async def test_key_set_is_cached_for_its_ttl(
    verifier: JwtVerifier, jwks_server: JwksServer, clock: FakeClock
) -> None:
    for _ in range(5):
        await verifier.verify(sign(claims()))
    assert jwks_server.hits == 1
    clock.now += 301
    await verifier.verify(sign(claims()))
    assert jwks_server.hits == 2


async def test_provider_down_without_keys_is_503(
    verifier: JwtVerifier, jwks_server: JwksServer, clock: FakeClock
) -> None:
    jwks_server.status = 500
    error = await refused(verifier, f"Bearer {sign(claims())}")
    assert isinstance(error, KeySetUnavailable)
    assert (error.status, error.reason) == (503, "jwks_unavailable")
    await refused(verifier, f"Bearer {sign(claims())}")
    assert jwks_server.hits == 1  # not retried inside the interval
    jwks_server.status = 200
    clock.now += 31
    assert await verifier.verify(sign(claims()))


async def test_stale_keys_are_used_while_the_provider_is_down(
    verifier: JwtVerifier, jwks_server: JwksServer, clock: FakeClock
) -> None:
    await verifier.verify(sign(claims()))
    jwks_server.status = 503
    clock.now += 301
    assert await verifier.verify(sign(claims()))
    assert jwks_server.hits == 2


async def test_unreachable_url_is_503() -> None:
    cache = JwksCache(UrlJwks("http://127.0.0.1:9/jwks.json", timeout_s=1.0))
    verifier = JwtVerifier(cache, issuer=ISSUER, audience=AUDIENCE)
    error = await refused(verifier, f"Bearer {sign(claims())}")
    assert error.status == 503


def test_url_source_refuses_other_schemes() -> None:
    with pytest.raises(ValueError, match="http"):
        UrlJwks("file:///etc/passwd")


# -- the pure key-set logic -------------------------------------------------------------------


def test_parse_jwks_keeps_only_public_signing_keys() -> None:
    private_rsa = RSAAlgorithm.to_jwk(RSA_KEY, as_dict=True)
    document = {
        "keys": [
            rsa_jwk(),
            {"kty": "oct", "kid": "hmac", "k": b64url(b"secret"), "alg": "HS256"},
            {**private_rsa, "kid": "private"},
            {**rsa_jwk("enc"), "use": "enc"},
            {**rsa_jwk("hs"), "alg": "HS256"},
            {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
            {**rsa_jwk("alg-list"), "alg": ["RS256"]},
            "not an object",
        ]
    }
    assert parse_jwks(document).kids == {RSA_KID}
    with pytest.raises(ValueError, match="keys"):
        parse_jwks({"nope": []})
    with pytest.raises(ValueError, match="JSON"):
        parse_jwks("{")


def test_select_key() -> None:
    keys = parse_jwks(jwks_document())
    assert select_key(keys, RSA_KID, "RS256").kid == RSA_KID
    assert select_key(keys, None, "EdDSA").kid == ED_KID
    with pytest.raises(UnknownKey):
        select_key(keys, "missing", "RS256")
    with pytest.raises(InvalidToken, match="algorithm"):
        select_key(keys, RSA_KID, "ES256")
    with pytest.raises(InvalidToken, match="algorithm"):
        select_key(keys, RSA_KID, "HS256")
    two_rsa = parse_jwks({"keys": [rsa_jwk(), rsa_jwk("rsa-2")]})
    with pytest.raises(UnknownKey):
        select_key(two_rsa, None, "RS256")
