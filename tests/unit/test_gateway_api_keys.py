"""functions.gateway.auth.api_keys: keys issued once, stored only as peppered digests."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac

import pytest

from functions.gateway.auth import (
    AuthError,
    InvalidApiKey,
    MalformedCredentials,
    MissingCredentials,
    RevokedKey,
)
from functions.gateway.auth.api_keys import (
    ApiKeyAuthenticator,
    ApiKeyHasher,
    ApiKeyRecord,
    InMemoryApiKeyStore,
    UsagePlan,
    issue_api_key,
)

PEPPER = b"per-deployment-pepper-0123456789"
PLAN = UsagePlan(rate_per_s=10.0, burst=20, daily_quota=10_000)


@pytest.fixture
def store() -> InMemoryApiKeyStore:
    return InMemoryApiKeyStore()


@pytest.fixture
def hasher() -> ApiKeyHasher:
    return ApiKeyHasher(PEPPER)


@pytest.fixture
def authenticator(store: InMemoryApiKeyStore, hasher: ApiKeyHasher) -> ApiKeyAuthenticator:
    return ApiKeyAuthenticator(store, hasher)


async def refused(authenticator: ApiKeyAuthenticator, presented: str | None) -> AuthError:
    with pytest.raises(AuthError) as caught:
        await authenticator.authenticate(presented)
    if presented and presented.strip():
        assert presented.strip() not in str(caught.value)
    return caught.value


async def test_valid_key_gives_owner_and_plan(
    store: InMemoryApiKeyStore, hasher: ApiKeyHasher, authenticator: ApiKeyAuthenticator
) -> None:
    key, record = await issue_api_key(store, hasher, owner="team-billing", plan=PLAN)
    match = await authenticator.authenticate(key)
    assert match.record == record
    assert match.record.plan == PLAN
    assert match.principal.subject == "team-billing"
    assert match.principal.method == "api_key"
    assert match.principal.key_id == record.key_id
    assert (await authenticator.authenticate(f"  {key} ")).record == record


@pytest.mark.parametrize("presented", [None, "", "   "])
async def test_missing_key_is_401(
    authenticator: ApiKeyAuthenticator, presented: str | None
) -> None:
    error = await refused(authenticator, presented)
    assert isinstance(error, MissingCredentials)
    assert (error.status, error.reason) == (401, "missing_credentials")


@pytest.mark.parametrize(
    "presented", ["hello", "mgk_zz.secretsecretsecretsecret", "Bearer mgk_0123456789abcdef.x"]
)
async def test_malformed_key_is_401(authenticator: ApiKeyAuthenticator, presented: str) -> None:
    error = await refused(authenticator, presented)
    assert isinstance(error, MalformedCredentials)
    assert (error.status, error.reason) == (401, "malformed_api_key")


async def test_unknown_key_is_401(
    store: InMemoryApiKeyStore, hasher: ApiKeyHasher, authenticator: ApiKeyAuthenticator
) -> None:
    other_store = InMemoryApiKeyStore()
    key, _ = await issue_api_key(other_store, hasher, owner="elsewhere", plan=PLAN)
    error = await refused(authenticator, key)
    assert isinstance(error, InvalidApiKey)
    assert (error.status, error.reason) == (401, "invalid_api_key")


async def test_known_id_with_wrong_secret_is_401(
    store: InMemoryApiKeyStore, hasher: ApiKeyHasher, authenticator: ApiKeyAuthenticator
) -> None:
    key, _ = await issue_api_key(store, hasher, owner="team-billing", plan=PLAN)
    prefix, _, secret = key.partition(".")
    forged = f"{prefix}.{'A' * len(secret)}"
    error = await refused(authenticator, forged)
    assert (error.status, error.reason) == (401, "invalid_api_key")


async def test_revoked_key_is_403(
    store: InMemoryApiKeyStore, hasher: ApiKeyHasher, authenticator: ApiKeyAuthenticator
) -> None:
    key, record = await issue_api_key(store, hasher, owner="team-billing", plan=PLAN)
    assert await store.revoke(record.key_id)
    assert not await store.revoke("0000000000000000")
    error = await refused(authenticator, key)
    assert isinstance(error, RevokedKey)
    assert (error.status, error.reason) == (403, "revoked_api_key")
    # Without the secret, a revoked key looks like any unknown key: no revocation oracle.
    prefix, _, secret = key.partition(".")
    assert (await refused(authenticator, f"{prefix}.{'B' * len(secret)}")).status == 401


async def test_stored_value_is_not_the_key(
    store: InMemoryApiKeyStore, hasher: ApiKeyHasher
) -> None:
    key, record = await issue_api_key(store, hasher, owner="team-billing", plan=PLAN)
    stored = await store.get(record.key_id)
    assert stored == record
    secret = key.partition(".")[2]
    for value in dataclasses.astuple(record):
        assert secret not in str(value)
    assert key not in repr(record)
    expected = hmac.new(PEPPER, key.encode(), hashlib.sha256).hexdigest()
    assert record.digest == expected
    assert record.digest != hashlib.sha256(key.encode()).hexdigest()  # peppered, not plain


async def test_a_dumped_store_is_useless_without_the_pepper(
    store: InMemoryApiKeyStore, hasher: ApiKeyHasher
) -> None:
    key, _ = await issue_api_key(store, hasher, owner="team-billing", plan=PLAN)
    other_deployment = ApiKeyAuthenticator(store, ApiKeyHasher(b"another-pepper-0123456789"))
    assert (await refused(other_deployment, key)).reason == "invalid_api_key"


async def test_digests_are_compared_in_constant_time(
    store: InMemoryApiKeyStore,
    hasher: ApiKeyHasher,
    authenticator: ApiKeyAuthenticator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    key, record = await issue_api_key(store, hasher, owner="team-billing", plan=PLAN)
    await authenticator.authenticate(key)
    assert calls == [(record.digest.encode(), record.digest.encode())]


async def test_keys_are_random(store: InMemoryApiKeyStore, hasher: ApiKeyHasher) -> None:
    issued = [await issue_api_key(store, hasher, owner="o", plan=PLAN) for _ in range(20)]
    assert len({key for key, _ in issued}) == 20
    assert len({record.key_id for _, record in issued}) == 20
    assert all(len(key.partition(".")[2]) >= 43 for key, _ in issued)  # 32 random bytes


def test_configuration_is_validated() -> None:
    with pytest.raises(ValueError, match="pepper"):
        ApiKeyHasher(b"short")
    with pytest.raises(ValueError, match="rate"):
        UsagePlan(rate_per_s=0, burst=1)
    with pytest.raises(ValueError, match="burst"):
        UsagePlan(rate_per_s=1, burst=0)
    with pytest.raises(ValueError, match="quota"):
        UsagePlan(rate_per_s=1, burst=1, daily_quota=0)
    assert ApiKeyRecord("id", "o", PLAN, "d").principal().key_id == "id"
