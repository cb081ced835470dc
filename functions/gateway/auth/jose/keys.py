"""A JWK's public verification key (RFC 7517, RFC 7518 §6, RFC 8037 §2).

Only public signing keys a verifier can use: RSA (``n``, ``e``), EC on P-256, P-384 and
P-521 (``x`` and ``y`` of the curve's exact length, a point on the curve), and OKP on
Ed25519 or Ed448 (``x``). Every member is canonical unpadded base64url. An RSA modulus under
2048 bits is not a usable key (NIST SP 800-131A; PyJWT only warned). Anything else, private
key material included, gives ``None``, and the key set skips that JWK.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey, RSAPublicNumbers

from bus.security.b64url import decode_b64url

VerifyingKey = RSAPublicKey | ec.EllipticCurvePublicKey | Ed25519PublicKey | Ed448PublicKey

MIN_RSA_BITS = 2048
# JWK "crv" -> the curve and the length of each coordinate, in bytes
EC_CURVES: Mapping[str, tuple[ec.EllipticCurve, int]] = {
    "P-256": (ec.SECP256R1(), 32),
    "P-384": (ec.SECP384R1(), 48),
    "P-521": (ec.SECP521R1(), 66),
}
OKP_CURVES: Mapping[str, type[Ed25519PublicKey] | type[Ed448PublicKey]] = {
    "Ed25519": Ed25519PublicKey,
    "Ed448": Ed448PublicKey,
}
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


def _member(jwk: Mapping[str, Any], name: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str):
        raise ValueError(f"the JWK has no {name!r} string")
    return decode_b64url(value)


def _unsigned(data: bytes) -> int:
    if not data:
        raise ValueError("an empty integer")
    return int.from_bytes(data, "big")


def _rsa(jwk: Mapping[str, Any]) -> RSAPublicKey:
    key = RSAPublicNumbers(_unsigned(_member(jwk, "e")), _unsigned(_member(jwk, "n"))).public_key()
    if key.key_size < MIN_RSA_BITS:
        raise ValueError("the RSA modulus is too short")
    return key


def _ec(jwk: Mapping[str, Any]) -> ec.EllipticCurvePublicKey:
    curve, size = EC_CURVES[jwk.get("crv")]  # type: ignore[index]  # KeyError: no such curve
    x, y = _member(jwk, "x"), _member(jwk, "y")
    if len(x) != size or len(y) != size:
        raise ValueError("an EC coordinate has the wrong length")
    return ec.EllipticCurvePublicNumbers(_unsigned(x), _unsigned(y), curve).public_key()


def _okp(jwk: Mapping[str, Any]) -> Ed25519PublicKey | Ed448PublicKey:
    kind = OKP_CURVES[jwk.get("crv")]  # type: ignore[index]  # KeyError: no such curve
    return kind.from_public_bytes(_member(jwk, "x"))


_LOADERS: Mapping[str, Callable[[Mapping[str, Any]], VerifyingKey]] = {
    "RSA": _rsa, "EC": _ec, "OKP": _okp}


def public_key(jwk: Mapping[str, Any]) -> VerifyingKey | None:
    """The public key of ``jwk``, or ``None`` if it is not a usable public verification key."""
    kty = jwk.get("kty")
    loader = _LOADERS.get(kty) if isinstance(kty, str) else None
    if loader is None or not _PRIVATE_MEMBERS.isdisjoint(jwk):
        return None
    try:
        return loader(jwk)
    except (ValueError, KeyError, TypeError):
        return None  # not base64url, wrong sizes, off the curve, an unknown curve
