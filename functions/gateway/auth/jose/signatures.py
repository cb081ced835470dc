"""One JWS signature checked with one key (RFC 7518 §3, RFC 8037 §3.1).

``RS*``: RSASSA-PKCS1-v1_5; ``PS*``: RSASSA-PSS with MGF1 of the same hash and a salt as long
as the hash; ``ES*``: ECDSA whose signature is ``r || s``, each the curve's byte length;
``EdDSA``: Ed25519 or Ed448. A key of another type than the algorithm needs, an EC key on
another curve, or a signature of the wrong length is a failed check, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from functions.gateway.auth.jose.keys import VerifyingKey

Check = Callable[[VerifyingKey, bytes, bytes], None]  # raises InvalidSignature


def _pkcs1(hash_type: type[hashes.HashAlgorithm]) -> Check:
    def check(key: VerifyingKey, message: bytes, signature: bytes) -> None:
        if not isinstance(key, RSAPublicKey):
            raise InvalidSignature
        key.verify(signature, message, padding.PKCS1v15(), hash_type())
    return check


def _pss(hash_type: type[hashes.HashAlgorithm]) -> Check:
    def check(key: VerifyingKey, message: bytes, signature: bytes) -> None:
        if not isinstance(key, RSAPublicKey):
            raise InvalidSignature
        algorithm = hash_type()
        pss = padding.PSS(mgf=padding.MGF1(algorithm), salt_length=algorithm.digest_size)
        key.verify(signature, message, pss, algorithm)
    return check


def _ecdsa(hash_type: type[hashes.HashAlgorithm], curve: type[ec.EllipticCurve],
           size: int) -> Check:
    def check(key: VerifyingKey, message: bytes, signature: bytes) -> None:
        if (not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, curve)
                or len(signature) != 2 * size):
            raise InvalidSignature
        r, s = int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
        key.verify(encode_dss_signature(r, s), message, ec.ECDSA(hash_type()))
    return check


def _eddsa(key: VerifyingKey, message: bytes, signature: bytes) -> None:
    if not isinstance(key, Ed25519PublicKey | Ed448PublicKey):
        raise InvalidSignature
    key.verify(signature, message)


CHECKS: Mapping[str, Check] = {
    "RS256": _pkcs1(hashes.SHA256),
    "RS384": _pkcs1(hashes.SHA384),
    "RS512": _pkcs1(hashes.SHA512),
    "PS256": _pss(hashes.SHA256),
    "PS384": _pss(hashes.SHA384),
    "PS512": _pss(hashes.SHA512),
    "ES256": _ecdsa(hashes.SHA256, ec.SECP256R1, 32),
    "ES384": _ecdsa(hashes.SHA384, ec.SECP384R1, 48),
    "ES512": _ecdsa(hashes.SHA512, ec.SECP521R1, 66),
    "EdDSA": _eddsa,
}


def verifies(alg: str, key: VerifyingKey, signing_input: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``alg``'s signature of ``signing_input`` under ``key``; an
    algorithm not in :data:`CHECKS` never verifies."""
    check = CHECKS.get(alg)
    if check is None:
        return False
    try:
        check(key, signing_input, signature)
    except InvalidSignature:
        return False
    return True
