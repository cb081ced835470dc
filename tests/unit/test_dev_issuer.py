"""infra.keys.dev_issuer: key ids, the key file, the JWKS document and the tokens it mints, checked
with the gateway's own verifier (functions.gateway.auth) over a static key set. No I/O but
temporary files."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import stat
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from functions.gateway.auth import InvalidToken, UnknownKey
from functions.gateway.auth.jwks import JwksCache, StaticJwks, parse_jwks
from functions.gateway.auth.jwt_bearer import JwtVerifier
from infra.cli import main as cli
from infra.keys import dev_issuer
from infra.keys.dev_issuer import DevIssuerError, IssuerConfig, IssuerKey, NoLocalIssuer
from infra.settings import Settings

EMULATOR = "http://127.0.0.1:4566"
ISSUER = "https://issuer.unit.local"
POLICY = f"""edge:
  jwt:
    issuer: {ISSUER}
    audience: [unit, other]
    algorithms: [ES256]
    jwks_url: {EMULATOR}/unit-issuer/jwks.json
    claims: [email]
"""


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings whose policies and local dir are temporary."""
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "mesh.yaml").write_text(POLICY)
    monkeypatch.setenv("MESHGATE_LOCAL_DIR", str(tmp_path / "local"))
    monkeypatch.setenv("MESHGATE_ROOT", str(tmp_path))
    return Settings(root=tmp_path, endpoint_url=EMULATOR)


def _verifier(keys: tuple[IssuerKey, ...], audience: str = "unit") -> JwtVerifier:
    cache = JwksCache(StaticJwks(dev_issuer.jwks_document(keys)))
    return JwtVerifier(cache, issuer=ISSUER, audience=audience, algorithms=["ES256"],
                       carried_claims=("aud", "email"))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return ".".join(_b64(json.dumps(part).encode()) for part in (header, claims))


# --- key ids and the key set -----------------------------------------------------------

def test_thumbprint_matches_the_rfc_7638_example() -> None:
    jwk = {"kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29",
           "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1"
                "L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h"
                "4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91C"
                "bOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-c"
                "sFCur-kEgU8awapJzKnqDKgw"}
    assert dev_issuer.thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_key_id_is_the_thumbprint_of_the_required_ec_members() -> None:
    key = dev_issuer.new_key()
    jwk = key.public_jwk()
    canonical = json.dumps({"crv": "P-256", "kty": "EC", "x": jwk["x"], "y": jwk["y"]},
                           separators=(",", ":"))
    assert key.kid == _b64(hashlib.sha256(canonical.encode()).digest())
    assert dev_issuer.thumbprint(jwk) == key.kid  # kid, alg, use do not count
    assert len(base64.urlsafe_b64decode(jwk["x"] + "=")) == 32


def test_thumbprint_refuses_a_jwk_without_its_required_members() -> None:
    with pytest.raises(ValueError, match="required members"):
        dev_issuer.thumbprint({"kty": "EC", "crv": "P-256", "x": "AA"})
    with pytest.raises(ValueError, match="required members"):
        dev_issuer.thumbprint({"kty": "oct", "k": "c2VjcmV0"})


def test_jwks_document_is_public_es256_newest_first() -> None:
    old, new = dev_issuer.new_key(), dev_issuer.new_key()
    document = dev_issuer.jwks_document((old, new))
    assert [jwk["kid"] for jwk in document["keys"]] == [new.kid, old.kid]
    for jwk in document["keys"]:
        assert set(jwk) == {"kty", "crv", "x", "y", "kid", "alg", "use"}
        assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == ("EC", "P-256", "ES256", "sig")
    parsed = parse_jwks(dev_issuer.jwks_bytes((old, new)))
    assert parsed.kids == {old.kid, new.kid}


# --- the key file ----------------------------------------------------------------------

def test_keys_are_created_once_private_to_the_user(tmp_path: Path) -> None:
    folder = tmp_path / "dev-issuer"
    first = dev_issuer.ensure_keys(folder)
    again = dev_issuer.ensure_keys(folder)
    assert len(first) == 1
    assert [k.kid for k in again] == [first[0].kid]
    assert stat.S_IMODE((folder / "keys.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    loaded = dev_issuer.load_keys(folder)[0]
    assert loaded.private_key.private_numbers() == first[0].private_key.private_numbers()


def test_rotation_adds_a_key_and_keeps_only_the_previous_one(tmp_path: Path) -> None:
    folder = tmp_path / "dev-issuer"
    first = dev_issuer.ensure_keys(folder)[0]
    second = dev_issuer.rotate_keys(folder)
    assert [k.kid for k in second] == [first.kid, second[-1].kid]
    third = dev_issuer.rotate_keys(folder)
    assert [k.kid for k in third] == [second[-1].kid, third[-1].kid]
    assert stat.S_IMODE((folder / "keys.json").stat().st_mode) == 0o600


def test_a_broken_key_file_is_refused_with_what_to_do(tmp_path: Path) -> None:
    folder = tmp_path / "dev-issuer"
    folder.mkdir()
    (folder / "keys.json").write_text('{"keys": [{"kid": "x", "pem": "nope"}]}')
    with pytest.raises(DevIssuerError, match=r"cannot be read.*delete it"):
        dev_issuer.load_keys(folder)


def test_signing_key_needs_a_key_and_a_known_kid(settings: Settings) -> None:
    with pytest.raises(DevIssuerError, match=r"no key .* run 'meshgate deploy'"):
        dev_issuer.signing_key(settings)
    keys = dev_issuer.rotate_keys(dev_issuer.key_dir(settings))
    keys = dev_issuer.rotate_keys(dev_issuer.key_dir(settings))
    assert dev_issuer.signing_key(settings).kid == keys[-1].kid
    assert dev_issuer.signing_key(settings, keys[0].kid).kid == keys[0].kid
    with pytest.raises(DevIssuerError, match="no key 'other'"):
        dev_issuer.signing_key(settings, "other")


# --- the policy's URL ------------------------------------------------------------------

@pytest.mark.parametrize(("url", "where"), [
    (f"{EMULATOR}/meshgate-local-issuer/jwks.json", ("meshgate-local-issuer", "jwks.json")),
    ("http://localhost:4566/b-1.x/a/b/jwks.json", ("b-1.x", "a/b/jwks.json")),
    (f"{EMULATOR}/bucket/jwks%20set.json", ("bucket", "jwks set.json")),
])
def test_emulator_location_is_derived_from_the_url(url: str, where: tuple[str, str]) -> None:
    assert dev_issuer.emulator_location(EMULATOR, url) == where


@pytest.mark.parametrize("url", [
    "https://login.example.com/.well-known/jwks.json",
    "http://127.0.0.1:4567/bucket/jwks.json",
    "https://127.0.0.1:4566/bucket/jwks.json",
    f"{EMULATOR}/bucket",
    f"{EMULATOR}/bucket/",
    f"{EMULATOR}/Bucket_Name/jwks.json",
    f"{EMULATOR}/bucket/jwks.json?versionId=1",
])
def test_a_url_off_the_emulator_is_refused(url: str) -> None:
    with pytest.raises(NoLocalIssuer, match="not an object on the emulator's S3"):
        dev_issuer.emulator_location(EMULATOR, url)


def test_issuer_config_comes_from_the_policies(settings: Settings) -> None:
    assert dev_issuer.issuer_config(settings) == IssuerConfig(
        ISSUER, ("unit", "other"), f"{EMULATOR}/unit-issuer/jwks.json", "unit-issuer",
        "jwks.json")


def test_the_repository_policy_points_at_the_emulator() -> None:
    config = dev_issuer.issuer_config(Settings(endpoint_url=EMULATOR))
    assert (config.bucket, config.key) == ("meshgate-local-issuer", "jwks.json")


def test_no_dev_issuer_on_aws_nor_for_another_identity_provider(settings: Settings) -> None:
    lines: list[str] = []
    aws = settings.model_copy(update={"endpoint_url": None})
    assert dev_issuer.ensure(aws, lines.append) is None
    assert lines == []
    with pytest.raises(NoLocalIssuer, match="only runs against the emulator"):
        dev_issuer.mint(aws, {"sub": "alice"})
    (settings.root / "policies" / "mesh.yaml").write_text(
        POLICY.replace(f"{EMULATOR}/unit-issuer", "https://login.example.com"))
    assert dev_issuer.ensure(settings, lines.append) is None  # said, not refused
    assert lines == ["dev issuer: not used (edge.jwt.jwks_url https://login.example.com/"
                     "jwks.json is not an object on the emulator's S3)"]
    assert not dev_issuer.key_dir(settings).exists()
    with pytest.raises(NoLocalIssuer, match=re.escape("point it at http://127.0.0.1:4566/<bucket>/<key>")):
        dev_issuer.mint(settings, {"sub": "alice"})


# --- tokens ----------------------------------------------------------------------------

def test_token_claims_defaults_overrides_and_removals() -> None:
    config = IssuerConfig(ISSUER, ("unit", "other"), "u", "b", "k")
    claims = dev_issuer.token_claims(config, {"sub": "a", "aud": "other", "exp": None},
                                     ttl_s=60, now=1000)
    assert claims.pop("jti")
    assert claims == {"iss": ISSUER, "aud": "other", "iat": 1000, "sub": "a"}
    claims = dev_issuer.token_claims(config, {"sub": "a"}, ttl_s=60, now=1000)
    assert (claims["aud"], claims["exp"]) == ("unit", 1060)


async def test_a_minted_token_verifies_with_the_gateway_verifier(settings: Settings) -> None:
    keys = dev_issuer.ensure_keys(dev_issuer.key_dir(settings))
    token = dev_issuer.mint(settings, {"sub": "alice", "scope": "catalog:read orders:write",
                                       "email": "alice@example.com"}, ttl_s=120)
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "ES256", "kid": keys[0].kid, "typ": "JWT"}
    principal = await _verifier(keys).verify(token)
    assert principal.subject == "alice"
    assert principal.issuer == ISSUER
    assert principal.scopes == {"catalog:read", "orders:write"}
    assert principal.claims == {"aud": "unit", "email": "alice@example.com"}
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 120


async def test_after_rotation_old_and_new_tokens_verify(settings: Settings) -> None:
    folder = dev_issuer.key_dir(settings)
    dev_issuer.ensure_keys(folder)
    old = dev_issuer.mint(settings, {"sub": "before"})
    keys = dev_issuer.rotate_keys(folder)
    new = dev_issuer.mint(settings, {"sub": "after"})
    assert jwt.get_unverified_header(new)["kid"] == keys[-1].kid != keys[0].kid
    verifier = _verifier(keys)
    assert (await verifier.verify(old)).subject == "before"
    assert (await verifier.verify(new)).subject == "after"
    dev_issuer.rotate_keys(folder)  # the first key leaves the set
    with pytest.raises(UnknownKey):
        await _verifier(dev_issuer.load_keys(folder)).verify(old)


@pytest.mark.parametrize(("claims", "reason"), [
    ({"exp": 1000}, "token_expired"),
    ({"iss": "https://issuer.evil"}, "wrong_issuer"),
    ({"aud": "somebody-else"}, "wrong_audience"),
    ({"exp": None}, "missing_claim"),
    ({"sub": None}, "missing_claim"),
])
async def test_bad_claims_are_refused(settings: Settings, claims: dict[str, Any],
                                      reason: str) -> None:
    keys = dev_issuer.ensure_keys(dev_issuer.key_dir(settings))
    token = dev_issuer.mint(settings, {"sub": "mallory", **claims})
    with pytest.raises(InvalidToken) as caught:
        await _verifier(keys).verify(token)
    assert caught.value.reason == reason


async def test_forged_tokens_are_refused(settings: Settings) -> None:
    keys = dev_issuer.ensure_keys(dev_issuer.key_dir(settings))
    key = dev_issuer.signing_key(settings)
    claims = dev_issuer.token_claims(dev_issuer.issuer_config(settings), {"sub": "mallory"})
    verifier = _verifier(keys)
    alg_none = _unsigned({"alg": "none", "kid": key.kid}, claims) + "."
    header_hs = _unsigned({"alg": "HS256", "kid": key.kid, "typ": "JWT"}, claims)
    hs256 = header_hs + "." + _b64(hmac.new(key.public_pem(), header_hs.encode(),
                                            hashlib.sha256).digest())
    for token in (alg_none, hs256):
        with pytest.raises(InvalidToken) as caught:
            await verifier.verify(token)
        assert caught.value.reason == "algorithm_not_allowed"
    with pytest.raises(UnknownKey):
        await verifier.verify(dev_issuer.mint(settings, {"sub": "m"}, headers={"kid": "nope"}))
    stranger = dev_issuer.new_key()
    forged = dev_issuer.sign(stranger, claims, headers={"kid": key.kid})
    with pytest.raises(InvalidToken) as caught:
        await verifier.verify(forged)
    assert caught.value.reason == "bad_signature"


# --- meshgate token --------------------------------------------------------------------

async def test_meshgate_token_prints_only_the_token(
        settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    keys = dev_issuer.ensure_keys(dev_issuer.key_dir(settings))
    assert cli.run(["token", "--sub", "bob", "--scope", "catalog:read", "--scope",
                    "a:b c:d", "--email", "bob@example.com", "--ttl", "60",
                    "--aud", "other"]) == 0
    token = capsys.readouterr().out.strip()
    principal = await _verifier(keys, audience="other").verify(token)
    assert principal.scopes == {"catalog:read", "a:b", "c:d"}
    assert principal.claims["email"] == "bob@example.com"
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 60
    assert abs(claims["iat"] - time.time()) < 5


def test_meshgate_token_usage_errors(settings: Settings,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    dev_issuer.ensure_keys(dev_issuer.key_dir(settings))
    assert cli.run(["token"]) == 2
    assert "--sub is required" in capsys.readouterr().err
    assert cli.run(["token", "--sub", "a", "--ttl", "0"]) == 2
    with pytest.raises(DevIssuerError, match="no key 'zzz'"):
        cli.run(["token", "--sub", "a", "--kid", "zzz"])
