"""The edge's cache of verified JWTs (issue 15) must never let through what a full
verification would refuse.

The project policy's JWT route (``GET /v1/products/{sku}``) runs in-process with a verifier
over a throwaway ES256 key and a cache whose clock the attack moves. The control is a fresh
token: it passes the guard and asks for the mesh client. Then, with that token cached: the same
token after its ``exp`` (+ leeway) must be refused ``token_expired`` (a cache that only
checked presence would pass it); a copy whose payload names another subject under the cached
token's signature, and one whose signature bytes differ, must be refused ``bad_signature``
(a cache keyed by anything but the exact bytes, e.g. the header or the subject, would pass
them). A case reached the handler when the mesh client was asked for.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from functions.gateway.auth.jwks import JwksCache, StaticJwks
from functions.gateway.auth.jwt_bearer import JwtVerifier
from functions.gateway.auth.verified_tokens import VerifiedTokens
from functions.gateway.guard import EdgeGuard
from infra.policy.load import load_policy
from infra.settings import Settings
from proof.attack.accounting import CONTROL, Outcome
from proof.attack.edge_cases import JWT_CACHE
from proof.attack.edge_inprocess import EdgeInProcess

PATH = "/v1/products/atk-cache-1"
TEMPLATE = "/v1/products/{sku}"
KID = "atk-cache"
TTL_S = 600
TIMEOUT_S = 20.0


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _token(key: ec.EllipticCurvePrivateKey, issuer: str, audience: str, sub: str) -> str:
    now = int(time.time())
    claims = {"iss": issuer, "aud": audience, "sub": sub, "scope": "catalog:read",
              "iat": now, "exp": now + TTL_S}
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": KID})


def _other_subject(token: str) -> str:
    """The cached token's header and signature over a payload naming another subject."""
    head, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "atk-someone-else"
    return f"{head}.{_b64(json.dumps(claims).encode())}.{signature}"


def _other_signature(token: str) -> str:
    head, payload, signature = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[-1] ^= 0x01
    return f"{head}.{payload}.{_b64(bytes(raw))}"


async def _run(settings: Settings) -> list[Outcome]:
    policy = load_policy(Path(settings.root) / "policies")
    assert policy.edge is not None
    assert policy.edge.jwt is not None
    settings_jwt = policy.edge.jwt
    key = ec.generate_private_key(ec.SECP256R1())
    public: dict[str, Any] = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwks = {"keys": [{**public, "kid": KID, "alg": "ES256", "use": "sig"}]}
    clock = Clock()
    verifier = JwtVerifier(JwksCache(StaticJwks(jwks)), issuer=settings_jwt.issuer,
                           audience=settings_jwt.audience, leeway_s=settings_jwt.leeway_s,
                           verified=VerifiedTokens(clock=clock))
    token = _token(key, settings_jwt.issuer, settings_jwt.audience[0], "atk-cache-user")
    outcomes: list[Outcome] = []
    async with EdgeInProcess(settings, lambda r: r.path == TEMPLATE,
                             EdgeGuard(jwt=verifier), "198.51.100.78") as edge:
        async def one(bearer: str) -> tuple[int, str, int]:
            before = edge.asked
            answer = await edge.http.get(PATH, headers={"authorization": f"Bearer {bearer}"},
                                         timeout=TIMEOUT_S)
            reason = answer.json().get("reason", "") if answer.content else ""
            return answer.status_code, str(reason), edge.asked - before

        status, reason, reached = await one(token)
        outcomes.append(Outcome(CONTROL, "jwt cache: a fresh token, verified and cached",
                                False, reached, f"passed the guard, then {status} {reason}"))
        cases = [
            ("the cached token's payload, another subject", _other_subject(token),
             "bad_signature"),
            ("the cached token with one signature bit flipped", _other_signature(token),
             "bad_signature"),
        ]
        for label, bearer, want in cases:
            status, reason, reached = await one(bearer)
            outcomes.append(Outcome(JWT_CACHE, label, status == 401 and reason == want
                                    and reached == 0, reached, f"{status} {reason}"))
        clock.offset = TTL_S + settings_jwt.leeway_s + 1  # past exp + leeway
        status, reason, reached = await one(token)
        outcomes.append(Outcome(JWT_CACHE, "the cached token after its exp", status == 401
                                and reason == "token_expired" and reached == 0, reached,
                                f"{status} {reason}"))
    return outcomes


def run_jwt_cache(settings: Settings) -> tuple[list[Outcome], list[str]]:
    """Synchronous: its own event loop."""
    return asyncio.run(_run(settings)), []
