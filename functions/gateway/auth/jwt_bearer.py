"""``Authorization: Bearer <JWT>`` verification against a JWKS.

The algorithm comes from the token's header only to be checked against the verifier's
allow-list (asymmetric algorithms only) and against the selected key's type; the signature
is then checked with exactly that one algorithm and that key
(``functions.gateway.auth.jose``). HMAC algorithms and ``none`` can never be allowed, so a
token "signed" with the public key as an HMAC secret is refused before any signature check.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from functions.gateway.auth.errors import (
    InvalidToken,
    MalformedBearer,
    MissingBearer,
)
from functions.gateway.auth.jose import claims as registered_claims
from functions.gateway.auth.jose import compact, signatures
from functions.gateway.auth.jwks import ASYMMETRIC_ALGORITHMS, JwksCache
from functions.gateway.auth.principal import ClaimValue, Principal, carried_value
from functions.gateway.auth.verified_tokens import VerifiedTokens

DEFAULT_ALGORITHMS: tuple[str, ...] = ("RS256", "ES256", "EdDSA")
# Claims copied into the Principal besides ``sub`` and the scopes.
DEFAULT_CARRIED_CLAIMS: tuple[str, ...] = ("aud", "exp", "iat", "azp", "client_id", "jti")
MAX_TOKEN_CHARS = 8192
MAX_LEEWAY_S = 300.0
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


def parse_bearer(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header value.

    Raises :class:`MissingBearer` when there is no header and :class:`MalformedBearer` when
    it is not the Bearer scheme followed by one compact JWS.
    """
    if authorization is None or not authorization.strip():
        raise MissingBearer("a bearer token is required")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise MalformedBearer("the Authorization header must use the Bearer scheme")
    token = token.strip()
    if not token:
        raise MalformedBearer("the Authorization header has no token")
    if len(token) > MAX_TOKEN_CHARS or not _COMPACT_JWS.fullmatch(token):
        raise MalformedBearer("the bearer token is not a compact JWT", reason="malformed_token")
    return token


def _scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    """Scopes from ``scope`` (space separated, RFC 8693) or ``scp`` (string or list)."""
    found: set[str] = set()
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            found.update(value.split())
        elif isinstance(value, list):
            found.update(item for item in value if isinstance(item, str))
    return frozenset(found)


def _as_tuple(value: str | Iterable[str], what: str) -> tuple[str, ...]:
    values = (value,) if isinstance(value, str) else tuple(value)
    if not values or not all(isinstance(v, str) and v for v in values):
        raise ValueError(f"{what} must be one or more non-empty strings")
    return values


class JwtVerifier:
    """Verifies bearer tokens and turns them into a :class:`Principal`.

    ``algorithms`` is the allow-list; only asymmetric algorithms are accepted (a ``none`` or
    HMAC entry is a configuration error). ``issuer`` and ``audience`` are required: a token
    must name one of them. ``exp`` is required; ``exp``, ``nbf`` and ``iat`` are checked with
    ``leeway_s`` of clock skew. With ``verified``, a token verified once is remembered until
    its expiry (``functions.gateway.auth.verified_tokens``: the exact bytes, bounded, never a
    failure); ``exp`` is still checked on every request.
    """

    def __init__(
        self,
        keys: JwksCache,
        *,
        issuer: str | Iterable[str],
        audience: str | Iterable[str],
        algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
        leeway_s: float = 30.0,
        carried_claims: Sequence[str] = DEFAULT_CARRIED_CLAIMS,
        verified: VerifiedTokens | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(algorithms, str) or not algorithms:
            raise ValueError("algorithms must be a non-empty list of algorithm names")
        refused = [alg for alg in algorithms if alg not in ASYMMETRIC_ALGORITHMS]
        if refused:
            raise ValueError(
                f"only asymmetric signature algorithms may be allowed, not {sorted(refused)}"
            )
        if not 0 <= leeway_s <= MAX_LEEWAY_S:
            raise ValueError(f"leeway_s must be between 0 and {MAX_LEEWAY_S:g} seconds")
        self._keys = keys
        self.issuers = _as_tuple(issuer, "issuer")
        self.audiences = _as_tuple(audience, "audience")
        self.algorithms = frozenset(algorithms)
        self.leeway_s = leeway_s
        self.carried_claims = tuple(carried_claims)
        self.verified = verified
        self._rules = registered_claims.ClaimRules(self.issuers, self.audiences, leeway_s)
        self._clock = clock

    async def authenticate(self, authorization: str | None) -> Principal:
        """Verify the token of an ``Authorization`` header value; raises :class:`AuthError`."""
        return await self.verify(parse_bearer(authorization))

    async def verify(self, token: str) -> Principal:
        """Verify a compact JWT; raises :class:`AuthError` (401, or 503 without keys)."""
        cache = self.verified
        if cache is None:
            return (await self._verified(token))[0]
        digest = cache.digest(token)
        principal, expired = cache.lookup(digest)
        if principal is not None:
            return principal
        if expired:
            raise InvalidToken("the token has expired", reason="token_expired")
        principal, exp = await self._verified(token)
        cache.remember(digest, principal, exp, self.leeway_s)
        return principal

    async def _verified(self, token: str) -> tuple[Principal, float]:
        """The token's principal and its ``exp``."""
        jws = compact.parse(token)
        alg, kid = jws.header.get("alg"), jws.header.get("kid")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise InvalidToken(
                "the token's algorithm is not allowed", reason="algorithm_not_allowed"
            )
        if kid is not None and not isinstance(kid, str):
            raise MalformedBearer("the token's key id is not a string", reason="malformed_token")
        key = await self._keys.key_for(kid, alg)  # exactly one key, of the type alg needs
        if not signatures.verifies(alg, key.key, jws.signing_input, jws.signature):
            raise InvalidToken("the token's signature is not valid", reason="bad_signature")
        claims = compact.json_object(jws.payload, "payload")
        exp = registered_claims.check(claims, self._rules, self._clock())
        return self._principal(claims), exp

    def _principal(self, claims: Mapping[str, Any]) -> Principal:
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise InvalidToken("the token has no usable subject", reason="missing_claim")
        carried: dict[str, ClaimValue] = {}
        for name in self.carried_claims:
            value = carried_value(claims.get(name))
            if value is not None:
                carried[name] = value
        return Principal(
            subject=subject,
            method="jwt",
            issuer=str(claims["iss"]),
            scopes=_scopes(claims),
            claims=carried,
        )
