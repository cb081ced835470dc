"""The gateway's JWT verifier (``functions.gateway.auth.jose``) against PyJWT, the library it
replaced: the same verdict and reason for every token both judge alike, and, for each case
where the verifier is stricter on purpose, a check that PyJWT really did answer otherwise.

The reference is the verifier as it was with PyJWT (``get_unverified_header``, the
allow-list and key checks, ``jwt.decode`` with one algorithm, the error mapping), run on the
same key set, the same token and the same clock.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Mapping
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from functions.gateway.auth import AuthError, MalformedBearer
from functions.gateway.auth.jose.keys import public_key
from functions.gateway.auth.jwks import JwksCache, StaticJwks
from functions.gateway.auth.jwt_bearer import JwtVerifier, parse_bearer

ISSUER, AUDIENCE, LEEWAY_S = "https://idp.example.test/", "meshgate-api", 5.0
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
SIGNERS: dict[str, tuple[str, Any]] = {  # alg -> (kid, private key)
    "RS256": ("rsa", RSA_KEY), "RS384": ("rsa", RSA_KEY), "RS512": ("rsa", RSA_KEY),
    "PS256": ("rsa", RSA_KEY), "PS384": ("rsa", RSA_KEY), "PS512": ("rsa", RSA_KEY),
    "ES256": ("p256", ec.generate_private_key(ec.SECP256R1())),
    "ES384": ("p384", ec.generate_private_key(ec.SECP384R1())),
    "ES512": ("p521", ec.generate_private_key(ec.SECP521R1())),
    "EdDSA": ("ed25519", ed25519.Ed25519PrivateKey.generate()),
}
ED448_KEY = ed448.Ed448PrivateKey.generate()


def jwk_of(kid: str, key: Any) -> dict[str, Any]:
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        data: dict[str, Any] = RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        data = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        data = OKPAlgorithm.to_jwk(public, as_dict=True)
    return {**data, "kid": kid, "use": "sig"}


DOCUMENT = {"keys": [jwk_of(kid, key) for kid, key in dict(SIGNERS.values()).items()]
            + [jwk_of("ed448", ED448_KEY)]}
OLD_REASONS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "token_expired"),
    (jwt.ImmatureSignatureError, "token_not_yet_valid"),
    (jwt.InvalidIssuerError, "wrong_issuer"),
    (jwt.InvalidAudienceError, "wrong_audience"),
    (jwt.MissingRequiredClaimError, "missing_claim"),
    (jwt.InvalidSignatureError, "bad_signature"),
    (jwt.InvalidAlgorithmError, "algorithm_not_allowed"),
    (jwt.DecodeError, "malformed_token"),
)


def verifier(now: float) -> JwtVerifier:
    keys = JwksCache(StaticJwks(DOCUMENT))
    return JwtVerifier(keys, issuer=ISSUER, audience=AUDIENCE, leeway_s=LEEWAY_S,
                       algorithms=tuple(SIGNERS), clock=lambda: now)


def ours(token: str, now: float) -> str:
    """``ok``, or the reason the verifier refused ``token`` with."""
    try:
        asyncio.run(verifier(now).verify(parse_bearer(f"Bearer {token}")))
    except AuthError as error:
        return error.reason
    return "ok"


def pyjwts(token: str) -> str:
    """The same, as the verifier decided it with PyJWT (on PyJWT's clock: the real one)."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        return "malformed_token"
    alg, kid = header.get("alg"), header.get("kid")
    if not isinstance(alg, str) or alg not in SIGNERS:
        return "algorithm_not_allowed"
    try:
        key = asyncio.run(JwksCache(StaticJwks(DOCUMENT)).key_for(kid, alg))
    except AuthError as error:
        return error.reason
    try:
        claims = jwt.decode(token, key=key.key, algorithms=[alg], issuer=(ISSUER,),
                            audience=(AUDIENCE,), leeway=LEEWAY_S,
                            options={"require": ["exp", "iss", "aud", "sub"]})
    except jwt.PyJWTError as error:
        return next((reason for kind, reason in OLD_REASONS if isinstance(error, kind)),
                    "invalid_token")
    subject = claims.get("sub")
    return "ok" if isinstance(subject, str) and subject else "missing_claim"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(now: float, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-42", "iat": int(now),
                            "exp": int(now) + 600, "jti": "t-1"}
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not ...}


def signed(payload: Mapping[str, Any] | bytes, alg: str = "ES256",
           header: Mapping[str, Any] | None = None) -> str:
    """A token signed as ``alg``'s key signs, its header and payload written by hand (so
    they can be what PyJWT would refuse to write)."""
    kid, key = SIGNERS[alg]
    head = {"alg": alg, "kid": kid, **(header or {})}
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signing_input = f"{b64(json.dumps(head).encode())}.{b64(body)}"
    algorithm = jwt.get_algorithm_by_name(alg)  # PyJWT signs our own signing input
    signature = algorithm.sign(signing_input.encode(), algorithm.prepare_key(key))
    return f"{signing_input}.{b64(signature)}"


def both(token: str, now: float) -> tuple[str, str]:
    return ours(token, now), pyjwts(token)


# -- the key set ---------------------------------------------------------------------------


@pytest.mark.parametrize("jwk", DOCUMENT["keys"], ids=[k["kid"] for k in DOCUMENT["keys"]])
def test_each_jwk_loads_as_pyjwt_loads_it(jwk: dict[str, Any]) -> None:
    """Both sides above share the new key loading; here it meets PyJWT's ``from_jwk``."""
    mine = public_key(jwk)
    if isinstance(mine, rsa.RSAPublicKey):
        rsa_key = RSAAlgorithm.from_jwk(jwk)
        assert isinstance(rsa_key, rsa.RSAPublicKey)
        assert mine.public_numbers() == rsa_key.public_numbers()
    elif isinstance(mine, ec.EllipticCurvePublicKey):
        ec_key = ECAlgorithm.from_jwk(jwk)
        assert isinstance(ec_key, ec.EllipticCurvePublicKey)
        assert mine.public_numbers() == ec_key.public_numbers()
    else:
        okp_key = OKPAlgorithm.from_jwk(jwk)
        assert isinstance(okp_key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)
        assert mine is not None
        assert mine.public_bytes_raw() == okp_key.public_bytes_raw()


# -- every algorithm, accepted and refused alike ------------------------------------------


@pytest.mark.parametrize("alg", sorted(SIGNERS))
def test_each_algorithm_verifies_what_pyjwt_signed(alg: str) -> None:
    now = time.time()
    kid, key = SIGNERS[alg]
    token = jwt.encode(claims(now), key, algorithm=alg, headers={"kid": kid})
    assert both(token, now) == ("ok", "ok")


def test_ed448_under_eddsa() -> None:
    now = time.time()
    token = jwt.encode(claims(now), ED448_KEY, algorithm="EdDSA", headers={"kid": "ed448"})
    assert both(token, now) == ("ok", "ok")


@pytest.mark.parametrize("alg", sorted(SIGNERS))
@pytest.mark.parametrize("part", [0, 1, 2])
def test_one_changed_character_is_refused_alike(alg: str, part: int) -> None:
    now = time.time()
    kid, key = SIGNERS[alg]
    parts = jwt.encode(claims(now), key, algorithm=alg, headers={"kid": kid}).split(".")
    segment = parts[part]
    middle = len(segment) // 2
    parts[part] = segment[:middle] + ("B" if segment[middle] == "A" else "A") + segment[
        middle + 1:]
    verdicts = both(".".join(parts), now)
    assert verdicts[0] != "ok"
    assert verdicts[0] == verdicts[1]


@pytest.mark.parametrize(("signed_as", "named"), [
    ("ES256", "ES384"), ("RS256", "PS256"), ("PS256", "RS256"), ("EdDSA", "ES256"),
    ("RS256", "RS512"),
])
def test_another_algorithms_signature_is_refused_alike(signed_as: str, named: str) -> None:
    """A token whose header names ``named`` but carries ``signed_as``'s signature, under the
    key ``named`` selects."""
    now = time.time()
    kid, key = SIGNERS[signed_as]
    token = jwt.encode(claims(now), key, algorithm=signed_as, headers={"kid": kid})
    head, body, signature = token.split(".")
    header = json.loads(base64.urlsafe_b64decode(head + "=="))
    forged = f"{b64(json.dumps({**header, 'alg': named, 'kid': SIGNERS[named][0]}).encode())}"
    verdicts = both(f"{forged}.{body}.{signature}", now)
    assert verdicts[0] in ("bad_signature", "algorithm_mismatch")
    assert verdicts[0] == verdicts[1]


@pytest.mark.parametrize("salt", [0, 20, padding.PSS.MAX_LENGTH])
def test_pss_needs_a_salt_as_long_as_the_hash(salt: int) -> None:
    """RFC 7518 §3.5: PS256's salt is 32 bytes; a signature with another salt is refused."""
    now = time.time()
    head = b64(json.dumps({"alg": "PS256", "kid": "rsa"}).encode())
    signing_input = f"{head}.{b64(json.dumps(claims(now)).encode())}"
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=salt)
    signature = RSA_KEY.sign(signing_input.encode(), pss, hashes.SHA256())
    assert both(f"{signing_input}.{b64(signature)}", now) == ("bad_signature",) * 2


# -- the claims -----------------------------------------------------------------------------

class Later(float):
    """A time claim given as seconds from the test's now (resolved when the test runs)."""


AGREED: list[tuple[str, dict[str, Any], str]] = [
    ("expired", {"exp": Later(-60)}, "token_expired"),
    ("expired within leeway", {"exp": Later(-2)}, "ok"),
    ("not before, future", {"nbf": Later(60)}, "token_not_yet_valid"),
    ("not before, within leeway", {"nbf": Later(2)}, "ok"),
    ("issued in the future", {"iat": Later(60)}, "token_not_yet_valid"),
    ("no exp", {"exp": ...}, "missing_claim"),
    ("null exp", {"exp": None}, "missing_claim"),
    ("no iss", {"iss": ...}, "missing_claim"),
    ("no aud", {"aud": ...}, "missing_claim"),
    ("no sub", {"sub": ...}, "missing_claim"),
    ("empty sub", {"sub": ""}, "missing_claim"),
    ("numeric sub", {"sub": 42}, "invalid_token"),
    ("numeric jti", {"jti": 7}, "invalid_token"),
    ("wrong issuer", {"iss": "https://evil.example.test/"}, "wrong_issuer"),
    ("issuer in a list", {"iss": [ISSUER]}, "wrong_issuer"),
    ("audience in a list", {"aud": ["other", AUDIENCE]}, "ok"),
    ("wrong audience", {"aud": "other"}, "wrong_audience"),
    ("empty audience", {"aud": ""}, "missing_claim"),
    ("empty audience list", {"aud": []}, "missing_claim"),
    ("audience list with a number", {"aud": [AUDIENCE, 1]}, "wrong_audience"),
    ("audience object", {"aud": {"a": AUDIENCE}}, "wrong_audience"),
    ("float exp", {"exp": Later(600.5)}, "ok"),
    ("huge exp", {"exp": 10**30}, "ok"),
]


@pytest.mark.parametrize(("overrides", "expected"), [(o, e) for _, o, e in AGREED],
                         ids=[name for name, _, _ in AGREED])
def test_claims_judged_alike(overrides: dict[str, Any], expected: str) -> None:
    now = time.time()
    timed = {name: int(now) + value if type(value) is Later else value
             for name, value in overrides.items()}
    assert both(signed(claims(now, **timed)), now) == (expected, expected)


# Stricter on purpose (functions.gateway.auth.jose.claims and .compact): what PyJWT said.
STRICTER: list[tuple[str, dict[str, Any] | bytes, dict[str, Any], str]] = [
    ("exp as a numeric string", {"exp": str(int(time.time()) + 3600)}, {}, "ok"),
    ("exp as true", {"exp": True}, {}, "token_expired"),
    ("iat as text", {"iat": "yesterday"}, {}, "invalid_token"),
    ("crit b64 true", {}, {"crit": ["b64"], "b64": True}, "ok"),
    ("a member named twice", b"DUPLICATE", {}, "ok"),
]


@pytest.mark.parametrize(("payload", "header", "pyjwt_said"), [
    (p, h, e) for _, p, h, e in STRICTER], ids=[name for name, _, _, _ in STRICTER])
def test_stricter_than_pyjwt(payload: dict[str, Any] | bytes, header: dict[str, Any],
                             pyjwt_said: str) -> None:
    now = time.time()
    if payload == b"DUPLICATE":  # sub twice: which one was signed?
        body = json.dumps(claims(now))[:-1] + ', "sub": "admin"}'
        token = signed(body.encode(), header=header)
    else:
        token = signed(claims(now, **payload), header=header)  # type: ignore[arg-type]
    assert both(token, now) == ("malformed_token", pyjwt_said)


def test_a_fractional_exp_is_compared_as_sent() -> None:
    """PyJWT truncated ``exp``: a token expiring at ``t + 0.9`` was expired from ``t`` on
    (counting the leeway), while the verified-token cache kept it until ``t + 0.9``."""
    now = time.time()
    exp = int(now) + 100.9
    token = signed(claims(now, exp=exp))
    half_a_second_before = exp + LEEWAY_S - 0.5
    assert int(exp) <= half_a_second_before - LEEWAY_S  # PyJWT's rule: expired
    assert ours(token, half_a_second_before) == "ok"
    assert ours(token, exp + LEEWAY_S) == "token_expired"


# -- the header ---------------------------------------------------------------------------


@pytest.mark.parametrize("header", [
    {"kid": 7}, {"crit": ["exp"]}, {"crit": []}, {"b64": False, "crit": ["b64"]},
    {"b64": False},
])
def test_header_refusals_alike(header: dict[str, Any]) -> None:
    now = time.time()
    assert both(signed(claims(now), header=header), now) == ("malformed_token",) * 2


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity"])
def test_json_constants_are_not_numbers(text: str) -> None:
    now = time.time()
    body = json.dumps(claims(now, exp=0)).replace('"exp": 0', f'"exp": {text}')
    assert ours(signed(body.encode()), now) == "malformed_token"


def test_a_payload_that_is_not_utf8_is_refused() -> None:
    now = time.time()
    assert ours(signed(b'{"sub": "\xff"}'), now) == "malformed_token"


def test_a_header_that_is_not_an_object_is_refused() -> None:
    token = f"{b64(b'[1]')}.{b64(b'{}')}.{b64(b'sig')}"
    with pytest.raises(MalformedBearer):
        asyncio.run(verifier(time.time()).verify(token))


# -- any claims, judged alike ---------------------------------------------------------------

VALUES = st.one_of(st.none(), st.integers(-2**40, 2**40), st.text(max_size=8),
                   st.sampled_from([ISSUER, AUDIENCE, [AUDIENCE], [ISSUER, 3], [], ""]),
                   st.lists(st.text(max_size=4), max_size=3))
TIMES = st.one_of(st.none(), st.integers(-10**6, 10**6))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(iss=VALUES, aud=VALUES, sub=VALUES, jti=VALUES, exp=TIMES, nbf=TIMES, iat=TIMES)
def test_any_claims_judged_alike(iss: Any, aud: Any, sub: Any, jti: Any, exp: int | None,
                                 nbf: int | None, iat: int | None) -> None:
    """Times are offsets from now, far from the leeway's edges (PyJWT reads its own clock)."""
    now = time.time()

    def at(offset: int | None) -> Any:
        return ... if offset is None else int(now) + offset * 10 + (1 if offset >= 0 else -10)

    payload = claims(now, iss=iss, aud=aud, sub=sub, jti=jti, exp=at(exp), nbf=at(nbf),
                     iat=at(iat))
    verdicts = both(signed(payload), now)
    assert verdicts[0] == verdicts[1], payload
