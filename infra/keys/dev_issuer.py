"""The local stack's development identity provider: an ES256 key pair, a JWKS on the
emulator's S3 at the policy's ``edge.jwt.jwks_url`` (on the placeholder origin of
``infra.keys.issuer_url``: the emulator in force), and tokens signed with it.

Private keys stay on this machine, in ``<local_dir>/dev-issuer/keys.json`` (mode 0600),
oldest first; the newest signs. ``rotate`` adds a key and keeps the previous one published,
so tokens signed before still verify until they expire. Key ids are RFC 7638 thumbprints.

Only against the emulator (``settings.endpoint_url`` set): on AWS, callers bring their own
identity provider and :func:`ensure` does nothing.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from infra.deploy import aws as deploy
from infra.errors import InfraError
from infra.keys.issuer_url import resolve_jwks_url
from infra.policy import PolicyError, load_policy
from infra.settings import Settings

Say = Callable[[str], None]
ALGORITHM = "ES256"
KEEP_KEYS = 2  # the signing key and the one before it
DEFAULT_TTL_S = 3600
FETCH_TIMEOUT_S = 5.0
_THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"),
                       "OKP": ("crv", "kty", "x")}
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_LOOPBACK = {"localhost": "127.0.0.1", "::1": "127.0.0.1"}


class DevIssuerError(InfraError):
    """The dev issuer cannot do what was asked (no key, no emulator, a broken key file)."""


class NoLocalIssuer(DevIssuerError):
    """The policies do not point their JWT key set at the emulator: nothing to serve."""


@dataclass(frozen=True)
class IssuerConfig:
    """What the policy's ``edge.jwt`` says, and where on the emulator's S3 the JWKS goes."""

    issuer: str
    audience: tuple[str, ...]
    jwks_url: str
    bucket: str
    key: str


@dataclass(frozen=True)
class IssuerKey:
    kid: str
    private_key: ec.EllipticCurvePrivateKey
    created_at: int

    def public_jwk(self) -> dict[str, str]:
        return {**_ec_members(self.private_key.public_key()), "kid": self.kid,
                "alg": ALGORITHM, "use": "sig"}

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _ec_members(public: ec.EllipticCurvePublicKey) -> dict[str, str]:
    numbers = public.public_numbers()
    return {"kty": "EC", "crv": "P-256", "x": _b64url(numbers.x.to_bytes(32, "big")),
            "y": _b64url(numbers.y.to_bytes(32, "big"))}


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a public JWK (EC, RSA or OKP), base64url."""
    members = _THUMBPRINT_MEMBERS.get(str(jwk.get("kty")))
    if members is None or any(not isinstance(jwk.get(name), str) for name in members):
        raise ValueError("a thumbprint needs an EC, RSA or OKP JWK with its required members")
    canonical = json.dumps({name: jwk[name] for name in members}, separators=(",", ":"),
                           sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def new_key(now: float | None = None) -> IssuerKey:
    private = ec.generate_private_key(ec.SECP256R1())
    created = int(time.time() if now is None else now)
    return IssuerKey(thumbprint(_ec_members(private.public_key())), private, created)


def jwks_document(keys: Sequence[IssuerKey]) -> dict[str, Any]:
    """The public key set: newest first, so the signing key leads."""
    return {"keys": [key.public_jwk() for key in reversed(keys)]}


def jwks_bytes(keys: Sequence[IssuerKey]) -> bytes:
    return json.dumps(jwks_document(keys), indent=1, sort_keys=True).encode("utf-8")


# --- the key file -----------------------------------------------------------------------

def key_dir(settings: Settings) -> Path:
    return settings.local_dir / "dev-issuer"


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    with (folder / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _load(folder: Path) -> tuple[IssuerKey, ...]:
    path = folder / "keys.json"
    if not path.exists():
        return ()
    try:
        entries = json.loads(path.read_text())["keys"]
        keys = []
        for entry in entries:
            private = serialization.load_pem_private_key(entry["pem"].encode(), password=None)
            if not isinstance(private, ec.EllipticCurvePrivateKey) or \
                    private.curve.name != "secp256r1":
                raise ValueError("not a P-256 key")
            keys.append(IssuerKey(str(entry["kid"]), private, int(entry["created_at"])))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DevIssuerError(f"the dev issuer's key file {path} cannot be read ({exc})",
                             "delete it and run 'meshgate deploy' to make a new key "
                             "(tokens signed before stop verifying)") from exc
    return tuple(keys)


def _save(folder: Path, keys: Sequence[IssuerKey]) -> None:
    entries = [{"kid": key.kid, "created_at": key.created_at, "pem": key.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()} for key in keys]
    target, temporary = folder / "keys.json", folder / f".keys.{os.getpid()}.tmp"
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"keys": entries}, out, indent=1)
    os.replace(temporary, target)


def load_keys(folder: Path) -> tuple[IssuerKey, ...]:
    """The stored keys, oldest first (empty if there are none yet)."""
    with _locked(folder):
        return _load(folder)


def ensure_keys(folder: Path) -> tuple[IssuerKey, ...]:
    """The stored keys, after creating the first one if there is none."""
    with _locked(folder):
        keys = _load(folder)
        if not keys:
            keys = (new_key(),)
            _save(folder, keys)
        return keys


def rotate_keys(folder: Path, keep: int = KEEP_KEYS) -> tuple[IssuerKey, ...]:
    """Add a new signing key, keeping the ``keep - 1`` newest before it; the keys after."""
    if keep < 1:
        raise ValueError("keep must be at least 1")
    with _locked(folder):
        keys = (*_load(folder), new_key())[-keep:]
        _save(folder, keys)
        return keys


def signing_key(settings: Settings, kid: str | None = None) -> IssuerKey:
    """The private key that signs (the newest), or the stored key ``kid``."""
    keys = load_keys(key_dir(settings))
    if not keys:
        raise DevIssuerError(f"the dev issuer has no key in {key_dir(settings)} yet",
                             "run 'meshgate deploy' (or 'meshgate up') first")
    if kid is None:
        return keys[-1]
    for key in keys:
        if key.kid == kid:
            return key
    raise DevIssuerError(f"the dev issuer has no key {kid!r}",
                         f"use one of {[key.kid for key in keys]}")


# --- the policy and the emulator ------------------------------------------------------

def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, _LOOPBACK.get(host, host), port


def emulator_location(endpoint_url: str, jwks_url: str) -> tuple[str, str]:
    """The (bucket, key) of a path-style S3 URL on the emulator; refuses any other URL."""
    parts = urllib.parse.urlsplit(jwks_url)
    bucket, _, key = parts.path.lstrip("/").partition("/")
    if _origin(jwks_url) != _origin(endpoint_url) or parts.query or parts.fragment \
            or not _BUCKET.fullmatch(bucket) or not key or key.endswith("/"):
        raise NoLocalIssuer(
            f"edge.jwt.jwks_url {jwks_url} is not an object on the emulator's S3",
            f"point it at {endpoint_url.rstrip('/')}/<bucket>/<key> to use the dev issuer "
            "('meshgate token'), or mint tokens with your own identity provider")
    return bucket, urllib.parse.unquote(key)


def issuer_config(settings: Settings) -> IssuerConfig:
    """The dev issuer's settings from the policies; refuses if they do not use it."""
    if settings.endpoint_url is None:
        raise NoLocalIssuer("the dev issuer only runs against the emulator",
                            "on AWS, get tokens from your identity provider")
    try:
        edge = load_policy(settings.root / "policies").edge
    except PolicyError as exc:
        raise DevIssuerError("the policies do not load", "run 'meshgate policy check'") from exc
    jwt_settings = edge.jwt if edge is not None else None
    if jwt_settings is None or jwt_settings.jwks_url is None:
        raise NoLocalIssuer("the policies declare no edge.jwt.jwks_url",
                            "add edge.jwt (issuer, audience, jwks_url) to policies/")
    if ALGORITHM not in jwt_settings.algorithms:
        raise NoLocalIssuer(f"edge.jwt.algorithms does not allow {ALGORITHM}, which the dev "
                            "issuer signs with", f"add {ALGORITHM} to edge.jwt.algorithms")
    jwks_url = resolve_jwks_url(jwt_settings.jwks_url, settings.endpoint_url)
    bucket, key = emulator_location(settings.endpoint_url, jwks_url)
    return IssuerConfig(jwt_settings.issuer, jwt_settings.audience, jwks_url, bucket, key)


def fetch_anonymously(url: str, timeout_s: float = FETCH_TIMEOUT_S) -> bytes:
    """GET ``url`` as any client would: no credentials, no signature."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body: bytes = response.read()
    except (OSError, urllib.error.URLError) as exc:
        raise DevIssuerError(f"GET {url} without credentials failed ({exc})",
                             "check that the emulator serves S3 objects anonymously") from exc
    return body


def publish(settings: Settings, config: IssuerConfig, keys: Sequence[IssuerKey]) -> bool:
    """Put the JWKS at the policy's URL (bucket created, public read); True if it changed.
    Then check that an anonymous client gets exactly that document."""
    document = jwks_bytes(keys)
    s3 = deploy.client(settings, "s3")
    with deploy.aws_errors(settings, "dev issuer JWKS"):
        try:
            s3.head_bucket(Bucket=config.bucket)
        except ClientError:
            args: dict[str, Any] = {"Bucket": config.bucket}
            if settings.region != "us-east-1":
                args["CreateBucketConfiguration"] = {"LocationConstraint": settings.region}
            s3.create_bucket(**args)
            s3.put_bucket_policy(Bucket=config.bucket, Policy=json.dumps({
                "Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{config.bucket}/{config.key}"}]}))
        current: bytes | None
        try:
            current = bytes(s3.get_object(Bucket=config.bucket, Key=config.key)["Body"].read())
        except ClientError:
            current = None
        if current != document:
            s3.put_object(Bucket=config.bucket, Key=config.key, Body=document,
                          ContentType="application/json", CacheControl="max-age=60")
    served = fetch_anonymously(config.jwks_url)
    if served != document:
        raise DevIssuerError(f"{config.jwks_url} does not serve the JWKS just published",
                             "check the emulator's S3 (localstack/ministack/ministack.sh status)")
    return current != document


def ensure(settings: Settings, say: Say) -> IssuerConfig | None:
    """Deploy step: a key exists and its JWKS is served at the policy's URL. Nothing on AWS,
    nor when the policies point at another identity provider (said, not refused)."""
    if not settings.is_local:
        return None
    try:
        config = issuer_config(settings)
    except NoLocalIssuer as exc:
        say(f"dev issuer: not used ({exc.what})")
        return None
    keys = ensure_keys(key_dir(settings))
    changed = publish(settings, config, keys)
    say(f"dev issuer {config.issuer}: key {keys[-1].kid} "
        f"{'published' if changed else 'unchanged'} at {config.jwks_url}")
    return config


def rotate(settings: Settings, say: Say, keep: int = KEEP_KEYS) -> IssuerKey:
    """A new signing key, published with the previous one; returns the new key."""
    config = issuer_config(settings)
    keys = rotate_keys(key_dir(settings), keep)
    publish(settings, config, keys)
    say(f"dev issuer {config.issuer}: signing key {keys[-1].kid}, JWKS at {config.jwks_url} "
        f"has {len(keys)} key(s)")
    return keys[-1]


# --- tokens ---------------------------------------------------------------------------

def token_claims(config: IssuerConfig, claims: Mapping[str, Any], *,
                 ttl_s: int = DEFAULT_TTL_S, now: float | None = None) -> dict[str, Any]:
    """``iss``, ``aud`` (the first accepted one), ``iat``, ``exp`` and ``jti``, overridden by
    ``claims``; a claim given as ``None`` is left out (to craft a token without it)."""
    issued = int(time.time() if now is None else now)
    merged: dict[str, Any] = {"iss": config.issuer, "aud": config.audience[0], "iat": issued,
                              "exp": issued + ttl_s, "jti": uuid.uuid4().hex}
    for name, value in claims.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


def sign(key: IssuerKey, claims: Mapping[str, Any],
         headers: Mapping[str, Any] | None = None) -> str:
    """A compact ES256 JWS of ``claims`` with ``kid`` (overridable through ``headers``)."""
    return jwt.encode(dict(claims), key.private_key, algorithm=ALGORITHM,
                      headers={"kid": key.kid, "typ": "JWT", **(headers or {})})


def mint(settings: Settings, claims: Mapping[str, Any], *, ttl_s: int = DEFAULT_TTL_S,
         kid: str | None = None, headers: Mapping[str, Any] | None = None,
         now: float | None = None) -> str:
    """A token from the dev issuer, as the deployed gateway accepts it (see token_claims)."""
    config = issuer_config(settings)
    return sign(signing_key(settings, kid), token_claims(config, claims, ttl_s=ttl_s, now=now),
                headers)
