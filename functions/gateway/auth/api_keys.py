"""API keys with usage plans, stored only as peppered SHA-256 digests.

A key reads ``mgk_<key id>.<secret>``: the key id (not secret) finds the record, and the
HMAC-SHA-256 of the whole key under the deployment's pepper is compared in constant time
with the stored digest. The plaintext is returned once, by :func:`issue_api_key`, and is
never stored. A database dump without the pepper does not let anyone present a key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import NamedTuple, Protocol

from functions.gateway.auth.errors import (
    InvalidApiKey,
    MalformedCredentials,
    MissingCredentials,
    RevokedKey,
)
from functions.gateway.auth.principal import Principal

API_KEY_HEADER = "x-api-key"
KEY_PREFIX = "mgk_"
MIN_PEPPER_BYTES = 16
SECRET_BYTES = 32
_KEY_FORMAT = re.compile(r"mgk_([0-9a-f]{16})\.([A-Za-z0-9_-]{20,100})")


@dataclass(frozen=True)
class UsagePlan:
    """Per-key limits: a token bucket (``rate_per_s`` refill, ``burst`` capacity) and a
    ``daily_quota`` of requests (``None``: unlimited). Enforced by the rate limiter."""

    rate_per_s: float
    burst: int
    daily_quota: int | None = None

    def __post_init__(self) -> None:
        if self.rate_per_s <= 0 or self.burst < 1:
            raise ValueError("a usage plan needs a positive rate and a burst of at least 1")
        if self.daily_quota is not None and self.daily_quota < 1:
            raise ValueError("a usage plan's daily quota must be positive (or None)")


@dataclass(frozen=True)
class ApiKeyRecord:
    """What is stored about a key: never the key itself, only its peppered digest."""

    key_id: str
    owner: str
    plan: UsagePlan
    digest: str  # hex HMAC-SHA-256(pepper, key)
    revoked: bool = False

    def principal(self) -> Principal:
        return _key_principal(self.owner, self.key_id)


@lru_cache(maxsize=4096)
def _key_principal(owner: str, key_id: str) -> Principal:
    """One (immutable) principal per key, so its JSON is built once, not per request."""
    return Principal(subject=owner, method="api_key", key_id=key_id)


class ApiKeyMatch(NamedTuple):
    """A presented key that matched a live record."""

    record: ApiKeyRecord
    principal: Principal


class ApiKeyHasher:
    """Peppered SHA-256 (HMAC-SHA-256 keyed by the per-deployment pepper)."""

    def __init__(self, pepper: bytes) -> None:
        if len(pepper) < MIN_PEPPER_BYTES:
            raise ValueError(f"the pepper must be at least {MIN_PEPPER_BYTES} bytes")
        self._pepper = pepper

    def digest(self, key: str) -> str:
        return hmac.new(self._pepper, key.encode(), hashlib.sha256).hexdigest()

    def matches(self, key: str, digest: str) -> bool:
        return hmac.compare_digest(self.digest(key).encode(), digest.encode())


class ApiKeyStore(Protocol):
    """Where key records live (in memory here; DynamoDB in a deployment)."""

    async def get(self, key_id: str) -> ApiKeyRecord | None: ...

    async def put(self, record: ApiKeyRecord) -> None: ...

    async def revoke(self, key_id: str) -> bool:
        """Mark a key revoked; ``False`` if there is no such key."""
        ...


class InMemoryApiKeyStore:
    def __init__(self) -> None:
        self._records: dict[str, ApiKeyRecord] = {}

    async def get(self, key_id: str) -> ApiKeyRecord | None:
        return self._records.get(key_id)

    async def put(self, record: ApiKeyRecord) -> None:
        self._records[record.key_id] = record

    async def revoke(self, key_id: str) -> bool:
        record = self._records.get(key_id)
        if record is None:
            return False
        self._records[key_id] = replace(record, revoked=True)
        return True


def split_key(key: str) -> str:
    """The key id of a well-formed key; raises :class:`MalformedCredentials` otherwise."""
    match = _KEY_FORMAT.fullmatch(key)
    if match is None:
        raise MalformedCredentials("the API key is not well-formed", reason="malformed_api_key")
    return match.group(1)


async def issue_api_key(
    store: ApiKeyStore, hasher: ApiKeyHasher, *, owner: str, plan: UsagePlan
) -> tuple[str, ApiKeyRecord]:
    """Create a key for ``owner``; returns the plaintext (show it once) and the stored record."""
    if not owner:
        raise ValueError("an API key needs an owner")
    key_id = secrets.token_hex(8)
    key = f"{KEY_PREFIX}{key_id}.{secrets.token_urlsafe(SECRET_BYTES)}"
    record = ApiKeyRecord(key_id=key_id, owner=owner, plan=plan, digest=hasher.digest(key))
    await store.put(record)
    return key, record


class ApiKeyAuthenticator:
    """Checks an ``x-api-key`` value: missing 401, malformed or unknown 401, revoked 403."""

    def __init__(self, store: ApiKeyStore, hasher: ApiKeyHasher) -> None:
        self._store = store
        self._hasher = hasher

    async def authenticate(self, presented: str | None) -> ApiKeyMatch:
        if presented is None or not presented.strip():
            raise MissingCredentials("an API key is required")
        key = presented.strip()
        record = await self._store.get(split_key(key))
        # Hash even when the id is unknown, so both paths cost the same.
        stored = record.digest if record is not None else ""
        if not self._hasher.matches(key, stored) or record is None:
            raise InvalidApiKey("the API key is not valid")
        if record.revoked:
            raise RevokedKey("the API key has been revoked")
        return ApiKeyMatch(record=record, principal=record.principal())
