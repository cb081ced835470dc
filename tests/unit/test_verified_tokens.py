"""functions.gateway.auth.verified_tokens: a verified JWT is remembered until its expiry (issue
15), with expiry still checked on every request, never a refused token, a bounded size and a
bounded trust age. Signature checks are counted to see whether a token was verified in full.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from functions.gateway.auth import InvalidToken, UnknownKey
from functions.gateway.auth.jose import signatures
from functions.gateway.auth.jwks import JwksCache, KeySet, parse_jwks
from functions.gateway.auth.jwt_bearer import JwtVerifier
from functions.gateway.auth.verified_tokens import VerifiedTokens

ISSUER, AUDIENCE, KID = "https://idp.example.test/", "meshgate-api", "ec-1"
KEY = ec.generate_private_key(ec.SECP256R1())
LEEWAY_S = 5.0


def document(kid: str = KID) -> dict[str, Any]:
    public: dict[str, Any] = ECAlgorithm.to_jwk(KEY.public_key(), as_dict=True)
    return {"keys": [{**public, "kid": kid, "alg": "ES256", "use": "sig"}]}


class Source:
    """A key set the test can change (the issuer withdrawing a key)."""

    def __init__(self) -> None:
        self.doc = document()

    async def fetch(self) -> KeySet:
        return parse_jwks(self.doc)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class Decodes:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = signatures.verifies

        def counting(*args: Any) -> bool:
            self.count += 1
            return real(*args)

        monkeypatch.setattr(signatures, "verifies", counting)


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> Decodes:
    return Decodes(monkeypatch)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def verifier(clock: Clock, source: Source | None = None, **cache: Any) -> JwtVerifier:
    keys = JwksCache(source or Source(), ttl_s=60.0, min_refresh_interval_s=0.0, clock=clock)
    return JwtVerifier(keys, issuer=ISSUER, audience=AUDIENCE, leeway_s=LEEWAY_S,
                       verified=VerifiedTokens(clock=clock, **cache), clock=clock)


def token(ttl_s: int = 600, sub: str = "user-42", kid: str = KID) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + ttl_s,
              "scope": "orders:write"}
    return jwt.encode(claims, KEY, algorithm="ES256", headers={"kid": kid})


async def test_a_verified_token_is_not_verified_again(clock: Clock, decodes: Decodes) -> None:
    check = verifier(clock)
    value = token()
    first = await check.verify(value)
    second = await check.verify(value)
    assert second == first
    assert second.scopes == {"orders:write"}
    assert decodes.count == 1
    assert check.verified is not None
    assert check.verified.hits == 1


async def test_expiry_is_checked_on_every_hit(clock: Clock, decodes: Decodes) -> None:
    check = verifier(clock, max_age_s=3600.0)
    value = token(ttl_s=60)
    await check.verify(value)
    clock.now += 60 + LEEWAY_S - 1  # inside the leeway: still valid, still cached
    assert (await check.verify(value)).subject == "user-42"
    clock.now += 2  # past exp + leeway
    with pytest.raises(InvalidToken) as caught:
        await check.verify(value)
    assert (caught.value.status, caught.value.reason) == (401, "token_expired")
    assert decodes.count == 1


async def test_trust_lasts_max_age_then_the_key_set_decides_again(
        clock: Clock, decodes: Decodes) -> None:
    source = Source()
    check = verifier(clock, source, max_age_s=30.0)
    value = token()
    await check.verify(value)
    source.doc = document(kid="ec-2")  # the issuer withdraws the key the token names
    clock.now += 29
    assert (await check.verify(value)).subject == "user-42"  # within the trust age
    clock.now += 62  # past max_age_s and the key set's TTL
    with pytest.raises(UnknownKey):
        await check.verify(value)
    assert decodes.count == 1  # refused before a signature check: the key is gone


async def test_a_refused_token_is_never_remembered(clock: Clock, decodes: Decodes) -> None:
    check = verifier(clock)
    head, payload, signature = token().split(".")
    forged = f"{head}.{payload}.{signature[:-4]}AAAA"
    for _ in range(2):
        with pytest.raises(InvalidToken):
            await check.verify(forged)
    assert decodes.count == 2
    assert check.verified is not None
    assert len(check.verified) == 0


async def test_only_the_exact_bytes_hit(clock: Clock, decodes: Decodes) -> None:
    check = verifier(clock)
    await check.verify(token(sub="alice"))
    await check.verify(token(sub="bob"))
    again = await check.verify(token(sub="alice"))  # new signature: other bytes
    assert again.subject == "alice"
    assert decodes.count == 3


async def test_the_cache_is_bounded_oldest_first(clock: Clock, decodes: Decodes) -> None:
    check = verifier(clock, max_entries=2)
    tokens = [token(sub=f"user-{n}") for n in range(3)]
    for value in tokens:
        await check.verify(value)
    assert check.verified is not None
    assert len(check.verified) == 2
    await check.verify(tokens[2])  # kept
    assert decodes.count == 3
    await check.verify(tokens[0])  # evicted: verified in full again
    assert decodes.count == 4


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        VerifiedTokens(max_entries=0)
    with pytest.raises(ValueError, match="max_entries"):
        VerifiedTokens(max_age_s=0)
