"""Key material with key ids, so keys rotate without downtime.

A sender signs with one ``SigningKey``. A receiver trusts a ``KeyRing`` of ``VerifyKey``s,
which may hold several keys per service while a rotation is under way (old and new both
valid), each owned by exactly one service.

Ed25519 verify keys are public and can travel in policies (``KeyRing.to_dict``). HMAC keys
are a shared secret: they never serialise, and come from a file, the environment or a
``SecretSource`` on both sides.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Final, Literal, Protocol

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bus.errors import MeshError
from bus.security import ed25519

# Re-exported: keys, signatures and paths share the one strict codec.
from bus.security.b64url import decode_b64url as decode_b64url
from bus.security.b64url import encode_b64url as encode_b64url

Algorithm = Literal["ed25519", "hmac-sha256"]
ED25519: Final = "ed25519"
HMAC_SHA256: Final = "hmac-sha256"
ALGORITHMS: Final = (ED25519, HMAC_SHA256)

ED25519_KEY_BYTES: Final = 32
# RFC 2104: keys shorter than the hash output weaken HMAC.
MIN_HMAC_SECRET_BYTES: Final = 32
# Key ids appear inside the signature header "<alg>:<key_id>:<sig>", so no ':' and no spaces.
KEY_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9._-]{1,128}")

# A key's place in a rotation (``KeyRing`` entries): ``next`` is trusted but not yet used to
# sign, ``current`` signs, ``retiring`` no longer signs and is still trusted until retired.
KeyState = Literal["next", "current", "retiring"]
KEY_STATES: Final = ("next", "current", "retiring")

_PEM_PREFIX = b"-----BEGIN "


class UnknownKeyId(MeshError):
    """No trusted key has this id: it never existed here, or it was rotated out."""

    code = "unknown_key_id"

    def __init__(self, key_id: str) -> None:
        super().__init__(f"unknown key id {key_id!r}")
        self.key_id = key_id


class InvalidKey(MeshError):
    """Key material, a key id or a serialised key is unusable: a configuration error."""

    code = "invalid_key"


class SecretSource(Protocol):
    """Where secret key bytes are stored (an AWS Secrets Manager adapter lives outside ``bus``).

    ``get`` returns the stored bytes (PEM or raw key bytes) and raises ``InvalidKey`` (or
    another ``MeshError``) when the secret cannot be read.
    """

    def get(self, name: str) -> bytes: ...


@dataclass(frozen=True)
class VerifyKey:
    """The receiving side of the key ``key_id``, owned by ``service``.

    ``material`` is the raw 32-byte Ed25519 public key, or the HMAC secret itself.
    """

    key_id: str
    algorithm: Algorithm
    service: str
    material: bytes = field(repr=False)
    # Which library checks this key's signatures (bus.security.ed25519; same bytes either way).
    backend: ed25519.Backend = field(default=ed25519.DEFAULT, kw_only=True, repr=False,
                                     compare=False)
    # Parsed once: building the key object per message would double the cost of a check.
    verifier: ed25519.Verifier | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_key_id(self.key_id)
        if not self.service:
            raise InvalidKey(f"key {self.key_id} has no owning service")
        _check_material(self.algorithm, self.material, self.key_id)
        parsed = self.backend.verifier(self.material) if self.algorithm == ED25519 else None
        object.__setattr__(self, "verifier", parsed)

    @cached_property
    def public_key(self) -> Ed25519PublicKey | None:
        """The key as a ``cryptography`` object (for tools; the hot path uses ``verifier``)."""
        if self.algorithm != ED25519:
            return None
        return Ed25519PublicKey.from_public_bytes(self.material)


@dataclass(frozen=True)
class SigningKey:
    """The sending side: ``secret`` is the raw 32-byte Ed25519 private key or the HMAC secret."""

    key_id: str
    algorithm: Algorithm
    secret: bytes = field(repr=False)
    # Which library signs with this key (bus.security.ed25519; same bytes either way).
    backend: ed25519.Backend = field(default=ed25519.DEFAULT, kw_only=True, repr=False,
                                     compare=False)
    signer: ed25519.Signer | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_key_id(self.key_id)
        _check_material(self.algorithm, self.secret, self.key_id)
        parsed = self.backend.signer(self.secret) if self.algorithm == ED25519 else None
        object.__setattr__(self, "signer", parsed)

    @cached_property
    def private_key(self) -> Ed25519PrivateKey | None:
        """The key as a ``cryptography`` object (for tools; the hot path uses ``signer``)."""
        if self.algorithm != ED25519:
            return None
        return Ed25519PrivateKey.from_private_bytes(self.secret)

    def verify_key(self, service: str) -> VerifyKey:
        """The matching verify key, owned by ``service``."""
        if self.algorithm == ED25519:
            return VerifyKey(self.key_id, ED25519, service, _ed25519_public(self.secret),
                             backend=self.backend)
        return VerifyKey(self.key_id, self.algorithm, service, self.secret)


@dataclass(frozen=True)
class KeyStatus:
    """Where a trusted key is in its rotation, and since when (epoch ms, 0: unknown)."""

    state: KeyState = "current"
    since_ms: int = 0


CURRENT: Final = KeyStatus()


class KeyRing:
    """The verify keys a receiver trusts, by key id, each with its rotation status.

    A running process keeps one ``KeyRing`` object and swaps its contents in place
    (``replace_with``), so every guard holding it sees a reloaded keyring at once. A miss on
    ``get`` calls ``on_unknown`` (set by a reloader: an unknown key id may be a new key).
    """

    def __init__(self, keys: Iterable[VerifyKey] = ()) -> None:
        self._keys: dict[str, VerifyKey] = {}
        self._status: dict[str, KeyStatus] = {}
        self.on_unknown: Callable[[str], None] | None = None
        for key in keys:
            self.add(key)

    def add(self, key: VerifyKey, status: KeyStatus = CURRENT) -> None:
        """Trust ``key``; adding the same key twice is a no-op, reusing its id is an error."""
        known = self._keys.get(key.key_id)
        if known is not None and known != key:
            raise InvalidKey(f"key id {key.key_id} is already used by a different key")
        self._keys[key.key_id] = key
        self._status[key.key_id] = status

    def remove(self, key_id: str) -> None:
        """Stop trusting ``key_id`` (the end of a rotation)."""
        if self._keys.pop(key_id, None) is None:
            raise UnknownKeyId(key_id)
        self._status.pop(key_id, None)

    def get(self, key_id: str) -> VerifyKey:
        key = self._keys.get(key_id)
        if key is None:
            if self.on_unknown is not None:
                self.on_unknown(key_id)
            raise UnknownKeyId(key_id)
        return key

    def status(self, key_id: str) -> KeyStatus:
        if key_id not in self._keys:
            raise UnknownKeyId(key_id)
        return self._status.get(key_id, CURRENT)

    def set_status(self, key_id: str, status: KeyStatus) -> None:
        if key_id not in self._keys:
            raise UnknownKeyId(key_id)
        self._status[key_id] = status

    def replace_with(self, other: KeyRing) -> None:
        """Trust exactly ``other``'s keys from now on (one swap: no check sees a mix)."""
        self._keys, self._status = dict(other._keys), dict(other._status)

    def same_as(self, other: KeyRing) -> bool:
        """The same keys with the same statuses."""
        return self._keys == other._keys and self._status == other._status

    def for_service(self, service: str) -> list[VerifyKey]:
        return [key for key in self._keys.values() if key.service == service]

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def __iter__(self) -> Iterator[VerifyKey]:
        return iter(list(self._keys.values()))

    def __len__(self) -> int:
        return len(self._keys)

    def to_dict(self) -> dict[str, list[dict[str, str | int]]]:
        """A JSON-able form for policies; refuses HMAC keys, whose material is secret."""
        entries: list[dict[str, str | int]] = []
        for key in self._keys.values():
            status = self._status.get(key.key_id, CURRENT)
            entries.append({**verify_key_to_dict(key), "state": status.state,
                            "since_ms": status.since_ms})
        return {"keys": entries}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> KeyRing:
        """The inverse of ``to_dict``; an entry without ``state`` is ``current``."""
        entries = data.get("keys")
        if not isinstance(entries, list):
            raise InvalidKey("a key ring needs a 'keys' list")
        ring = cls()
        for entry in entries:
            if not isinstance(entry, Mapping):
                raise InvalidKey("each entry of 'keys' must be an object")
            ring.add(verify_key_from_dict(entry), _status_from_dict(entry))
        return ring


def _status_from_dict(entry: Mapping[str, object]) -> KeyStatus:
    state = entry.get("state", "current")
    since = entry.get("since_ms", 0)
    if state == "next" or state == "current" or state == "retiring":
        if isinstance(since, int) and not isinstance(since, bool) and since >= 0:
            return KeyStatus(state, since)
        raise InvalidKey(f"key {entry.get('key_id')!r}: since_ms must be an integer >= 0")
    raise InvalidKey(f"key {entry.get('key_id')!r}: state must be one of {KEY_STATES}")


def generate_ed25519(service: str, key_id: str | None = None) -> tuple[SigningKey, VerifyKey]:
    """A fresh Ed25519 pair for ``service``; the key id defaults to the key's fingerprint."""
    secret = Ed25519PrivateKey.generate().private_bytes_raw()
    signing = SigningKey(key_id or fingerprint(_ed25519_public(secret)), ED25519, secret)
    return signing, signing.verify_key(service)


def hmac_key(service: str, secret: bytes, key_id: str) -> tuple[SigningKey, VerifyKey]:
    """Both sides of a shared HMAC-SHA256 secret owned by ``service``."""
    signing = SigningKey(key_id, HMAC_SHA256, secret)
    return signing, signing.verify_key(service)


def fingerprint(public_key: bytes) -> str:
    """The default id of an Ed25519 key, so sender and receiver derive it independently."""
    return f"ed25519-{hashlib.sha256(public_key).hexdigest()[:16]}"


def load_signing_key(
    path: str | os.PathLike[str],
    *,
    algorithm: Algorithm = ED25519,
    key_id: str | None = None,
    password: bytes | None = None,
) -> SigningKey:
    """A signing key from a file: Ed25519 as PEM (PKCS#8) or raw bytes; HMAC as raw bytes."""
    return signing_key_from_bytes(
        _read(path), algorithm=algorithm, key_id=key_id, password=password
    )


def load_verify_key(
    path: str | os.PathLike[str], service: str, *, key_id: str | None = None
) -> VerifyKey:
    """An Ed25519 verify key from a file: a PEM public key, or the raw 32 bytes."""
    return verify_key_from_bytes(_read(path), service, key_id=key_id)


def signing_key_from_env(
    name: str,
    env: Mapping[str, str] | None = None,
    *,
    algorithm: Algorithm = ED25519,
    key_id: str | None = None,
) -> SigningKey:
    """A signing key from an environment variable holding PEM text or base64 of the raw bytes."""
    text = (os.environ if env is None else env).get(name, "").strip()
    if not text:
        raise InvalidKey(f"environment variable {name} is not set")
    data = text.encode() if text.startswith(_PEM_PREFIX.decode()) else _decode_base64(text, name)
    return signing_key_from_bytes(data, algorithm=algorithm, key_id=key_id)


def signing_key_from_source(
    source: SecretSource,
    name: str,
    *,
    algorithm: Algorithm = ED25519,
    key_id: str | None = None,
    password: bytes | None = None,
) -> SigningKey:
    """A signing key from a ``SecretSource``; the stored bytes are read like a key file."""
    return signing_key_from_bytes(
        source.get(name), algorithm=algorithm, key_id=key_id, password=password
    )


@dataclass(frozen=True)
class SecretKeys:
    """What a service's signing secret holds: the key it signs with and, while a rotation is
    under way, the next one (published to verifiers, not yet used to sign)."""

    current: SigningKey
    next: SigningKey | None = None


def secret_document(keys: SecretKeys) -> bytes:
    """The rotation form of a signing secret: ``{"version": 1, "current": .., "next": ..}``
    (raw Ed25519 keys, base64url). A secret holding one raw or PEM key is read as well."""
    document: dict[str, str | int] = {"version": 1, "current": _ed25519_secret(keys.current)}
    if keys.next is not None:
        document["next"] = _ed25519_secret(keys.next)
    return json.dumps(document, sort_keys=True).encode()


def signing_keys_from_bytes(data: bytes, *, algorithm: Algorithm = ED25519,
                            key_id: str | None = None,
                            password: bytes | None = None) -> SecretKeys:
    """The keys of a signing secret: a rotation document (``secret_document``), or one key
    read as ``signing_key_from_bytes`` reads it."""
    if algorithm == ED25519 and _is_secret_document(data):
        if key_id is not None:
            raise InvalidKey("the keys of a rotation document are named by their fingerprint;"
                             " do not set a key id")
        return _parse_secret_document(data)
    return SecretKeys(signing_key_from_bytes(data, algorithm=algorithm, key_id=key_id,
                                             password=password))


def _is_secret_document(data: bytes) -> bool:
    return len(data) != ED25519_KEY_BYTES and data.lstrip().startswith(b"{")


def _parse_secret_document(data: bytes) -> SecretKeys:
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidKey("the signing secret is not a readable rotation document") from exc
    if not isinstance(document, dict) or document.get("version") != 1:
        raise InvalidKey("the signing secret's rotation document needs version 1")
    current = _document_key(document, "current")
    if current is None:
        raise InvalidKey("the signing secret's rotation document has no current key")
    return SecretKeys(current, _document_key(document, "next"))


def _document_key(document: Mapping[str, object], name: str) -> SigningKey | None:
    text = document.get(name)
    if text is None:
        return None
    try:
        raw = decode_b64url(text) if isinstance(text, str) else None
    except ValueError:
        raw = None
    if raw is None or len(raw) != ED25519_KEY_BYTES:
        raise InvalidKey(f"the rotation document's {name!r} is not a base64url Ed25519 key")
    return SigningKey(fingerprint(_ed25519_public(raw)), ED25519, raw)


def _ed25519_secret(key: SigningKey) -> str:
    if key.algorithm != ED25519:
        raise InvalidKey(f"key {key.key_id}: only Ed25519 keys rotate through the secret")
    return encode_b64url(key.secret)


def signing_key_from_bytes(
    data: bytes,
    *,
    algorithm: Algorithm = ED25519,
    key_id: str | None = None,
    password: bytes | None = None,
) -> SigningKey:
    """Ed25519: PEM (PKCS#8, optionally encrypted), the raw 32 bytes, or a rotation document
    (``secret_document``: its current key). HMAC: the raw secret."""
    if algorithm == HMAC_SHA256:
        if key_id is None:
            raise InvalidKey("an HMAC key needs an explicit key id")
        if data.lstrip().startswith(_PEM_PREFIX):
            raise InvalidKey(f"key {key_id}: an HMAC secret is raw bytes, not PEM")
        return SigningKey(key_id, HMAC_SHA256, data)
    if algorithm != ED25519:
        raise InvalidKey(f"unknown algorithm {algorithm!r}")
    if _is_secret_document(data):  # a secret in the middle of a rotation signs with current
        return signing_keys_from_bytes(data, key_id=key_id).current
    secret = _pem_private(data, password) if data.lstrip().startswith(_PEM_PREFIX) else data
    _check_material(ED25519, secret, key_id or "(unnamed)")
    return SigningKey(key_id or fingerprint(_ed25519_public(secret)), ED25519, secret)


def verify_key_from_bytes(data: bytes, service: str, *, key_id: str | None = None) -> VerifyKey:
    """An Ed25519 verify key from PEM (SubjectPublicKeyInfo) or the raw 32 bytes."""
    public = _pem_public(data) if data.lstrip().startswith(_PEM_PREFIX) else data
    _check_material(ED25519, public, key_id or "(unnamed)")
    return VerifyKey(key_id or fingerprint(public), ED25519, service, public)


def verify_key_to_dict(key: VerifyKey) -> dict[str, str]:
    if key.algorithm != ED25519:
        raise InvalidKey(f"key {key.key_id} is an HMAC secret and must not be published")
    return {
        "key_id": key.key_id,
        "algorithm": key.algorithm,
        "service": key.service,
        "public_key": encode_b64url(key.material),
    }


def verify_key_from_dict(data: Mapping[str, object]) -> VerifyKey:
    key_id, algorithm, service, public_key = (
        _text_field(data, name) for name in ("key_id", "algorithm", "service", "public_key")
    )
    if algorithm != ED25519:
        raise InvalidKey(f"key {key_id}: only ed25519 keys can be published, got {algorithm!r}")
    try:
        material = decode_b64url(public_key)
    except ValueError as exc:
        raise InvalidKey(f"key {key_id}: public_key is not base64url") from exc
    return VerifyKey(key_id, ED25519, service, material)


def _check_key_id(key_id: str) -> None:
    if not isinstance(key_id, str) or not KEY_ID_PATTERN.fullmatch(key_id):
        raise InvalidKey(f"key id must match {KEY_ID_PATTERN.pattern}, got {key_id!r}")


def _check_material(algorithm: str, material: bytes, key_id: str) -> None:
    if not isinstance(material, bytes):
        raise InvalidKey(f"key {key_id}: key material must be bytes")
    if algorithm == ED25519:
        if len(material) != ED25519_KEY_BYTES:
            raise InvalidKey(
                f"key {key_id}: an ed25519 key is {ED25519_KEY_BYTES} bytes, got {len(material)}"
            )
    elif algorithm == HMAC_SHA256:
        if len(material) < MIN_HMAC_SECRET_BYTES:
            raise InvalidKey(
                f"key {key_id}: an HMAC secret needs at least {MIN_HMAC_SECRET_BYTES} bytes"
            )
    else:
        raise InvalidKey(f"key {key_id}: unknown algorithm {algorithm!r}, use one of {ALGORITHMS}")


def _ed25519_public(secret: bytes) -> bytes:
    return ed25519.public_from_seed(secret)


def _pem_private(data: bytes, password: bytes | None) -> bytes:
    # PEM only: the keys `meshgate` deploys are raw (a rotation document), and this module
    # (with ssh, ciphers, dh) is ~3 ms of every function's cold start.
    from cryptography.hazmat.primitives import serialization

    try:
        private = serialization.load_pem_private_key(data, password)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InvalidKey(f"not a usable PEM private key: {exc}") from exc
    if not isinstance(private, Ed25519PrivateKey):
        raise InvalidKey(f"expected an Ed25519 private key, got {type(private).__name__}")
    return private.private_bytes_raw()


def _pem_public(data: bytes) -> bytes:
    from cryptography.hazmat.primitives import serialization  # PEM only (see _pem_private)

    try:
        public = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InvalidKey(f"not a usable PEM public key: {exc}") from exc
    if not isinstance(public, Ed25519PublicKey):
        raise InvalidKey(f"expected an Ed25519 public key, got {type(public).__name__}")
    return public.public_bytes_raw()


def _read(path: str | os.PathLike[str]) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InvalidKey(f"cannot read key file {os.fspath(path)}: {exc.strerror}") from exc


def _decode_base64(text: str, name: str) -> bytes:
    """Standard or url-safe base64, padding optional, line breaks allowed."""
    compact = "".join(text.split()).rstrip("=").replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidKey(f"environment variable {name} is neither PEM nor base64") from exc


def _text_field(data: Mapping[str, object], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidKey(f"a serialised key needs a non-empty string {name!r}")
    return value
