"""The registered claims of a verified JWT (RFC 7519 §4.1) against a verifier's rules.

In PyJWT's order and with the reasons the verifier gave with it: the required claims
present, then ``iat`` and ``nbf`` not in the future and ``exp`` not past (each with
``leeway_s`` of clock skew), ``iss`` one of the issuers, ``aud`` naming one of the
audiences, ``sub`` and ``jti`` strings when present.

Stricter than PyJWT, on purpose: a time claim must be a JSON number (PyJWT took ``true`` and
numeric strings, through ``int()``), and it is compared as sent, fractions included (PyJWT
truncated: an ``exp`` of ``t + 0.9`` expired at ``t``, while the verified-token cache kept
it to ``t + 0.9``; now both agree).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from functions.gateway.auth.errors import InvalidToken, MalformedBearer

REQUIRED: tuple[str, ...] = ("exp", "iss", "aud", "sub")


class ClaimRules(NamedTuple):  # not a dataclass: see functions.gateway.auth.jwks
    issuers: tuple[str, ...]
    audiences: tuple[str, ...]
    leeway_s: float


def _numeric_date(claims: Mapping[str, Any], name: str) -> float:
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MalformedBearer(f"the token's {name!r} claim is not a number",
                              reason="malformed_token")
    return float(value)


def _not_yet_valid() -> InvalidToken:
    return InvalidToken("the token is not valid yet", reason="token_not_yet_valid")


def _audience_matches(value: object, audiences: Sequence[str]) -> bool:
    named = [value] if isinstance(value, str) else value
    if not isinstance(named, list) or not all(isinstance(item, str) for item in named):
        return False
    return any(audience in named for audience in audiences)


def check(claims: Mapping[str, Any], rules: ClaimRules, now: float) -> float:
    """``exp`` of ``claims`` once every rule holds at ``now`` (epoch seconds); raises
    :class:`InvalidToken` or :class:`MalformedBearer` naming the first rule that fails."""
    for name in REQUIRED:
        if claims.get(name) is None:
            raise InvalidToken("the token lacks a required claim", reason="missing_claim")
    leeway = rules.leeway_s
    if "iat" in claims and _numeric_date(claims, "iat") > now + leeway:
        raise _not_yet_valid()
    if "nbf" in claims and _numeric_date(claims, "nbf") > now + leeway:
        raise _not_yet_valid()
    exp = _numeric_date(claims, "exp")
    if exp <= now - leeway:
        raise InvalidToken("the token has expired", reason="token_expired")
    issuer = claims["iss"]
    if not isinstance(issuer, str) or issuer not in rules.issuers:
        raise InvalidToken("the token's issuer is not accepted", reason="wrong_issuer")
    audience = claims["aud"]
    if not audience:
        raise InvalidToken("the token lacks a required claim", reason="missing_claim")
    if not _audience_matches(audience, rules.audiences):
        raise InvalidToken("the token is not meant for this audience", reason="wrong_audience")
    for name in ("sub", "jti"):
        if name in claims and not isinstance(claims[name], str):
            raise InvalidToken(f"the token's {name!r} claim is not a string")
    return exp
