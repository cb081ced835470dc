"""The JWT verifier a policy's ``edge.jwt`` describes, for the gateway and the authorizer."""

from __future__ import annotations

from bus.policy.edge import JwtSettings
from functions.gateway.auth.jwks import JwksCache, StaticJwks, UrlJwks
from functions.gateway.auth.jwt_bearer import JwtVerifier
from functions.gateway.auth.verified_tokens import VerifiedTokens


def jwt_verifier(settings: JwtSettings) -> JwtVerifier:
    """Keys from ``jwks_url`` (cached for ``jwks_refresh_s``) or the inline ``jwks``; verified
    tokens remembered until their expiry, for at most ``jwks_refresh_s`` each."""
    source = UrlJwks(settings.jwks_url) if settings.jwks_url else StaticJwks(
        dict(settings.jwks or {}))
    return JwtVerifier(JwksCache(source, ttl_s=settings.jwks_refresh_s),
                       issuer=settings.issuer, audience=settings.audience,
                       algorithms=settings.algorithms, leeway_s=settings.leeway_s,
                       carried_claims=settings.claims,
                       verified=VerifiedTokens(max_age_s=settings.jwks_refresh_s))
