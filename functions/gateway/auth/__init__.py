"""Gateway authentication building blocks: JWT bearer tokens against a JWKS, and API keys.

Nothing here is wired into the app yet. Every failure is an :class:`AuthError` with the HTTP
``status`` (401, 403, or 503 when the keys cannot be fetched) and a ``reason`` code; the
success value is a :class:`Principal` that can travel into mesh messages.

Modules (imported on their own, so an app that only takes API keys never loads the JWT
verifier at cold start):

- ``jwt_bearer``: :class:`~functions.gateway.auth.jwt_bearer.JwtVerifier`, ``parse_bearer``;
- ``jose``: compact JWS, JWK keys, signatures and registered claims, on ``cryptography``;
- ``jwks``: key-set parsing and selection (pure), URL and static sources, the TTL cache;
- ``api_keys``: usage plans, peppered digests, the store protocol and an in-memory store.
"""

from functions.gateway.auth.errors import (
    AuthError,
    Forbidden,
    InvalidApiKey,
    InvalidToken,
    KeySetUnavailable,
    MalformedBearer,
    MalformedCredentials,
    MissingBearer,
    MissingCredentials,
    QuotaExceeded,
    RevokedKey,
    UnknownKey,
)
from functions.gateway.auth.principal import Principal

__all__ = [
    "AuthError",
    "Forbidden",
    "InvalidApiKey",
    "InvalidToken",
    "KeySetUnavailable",
    "MalformedBearer",
    "MalformedCredentials",
    "MissingBearer",
    "MissingCredentials",
    "Principal",
    "QuotaExceeded",
    "RevokedKey",
    "UnknownKey",
]
