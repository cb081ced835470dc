"""API-key records on the real DynamoDB API of the AWS emulator: put, get, revoke, list on a
table defined by ``api_keys_table``; digests only; errors translated."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from functions.gateway.auth import InvalidApiKey, RevokedKey
from functions.gateway.auth.api_keys import (
    ApiKeyAuthenticator,
    ApiKeyHasher,
    ApiKeyRecord,
    UsagePlan,
    issue_api_key,
)
from functions.gateway.auth.dynamodb_keys import (
    ApiKeyStoreRefused,
    ApiKeyStoreUnavailable,
    DynamoDBApiKeyStore,
)
from functions.gateway.auth.keys_table import api_keys_table
from infra.settings import Settings
from tests.support import scratch_table

pytestmark = pytest.mark.integration
HASHER = ApiKeyHasher(b"integration-pepper-0123456789abcdef")


@pytest.fixture(scope="module")
def table(dynamodb: Any) -> Iterator[str]:
    with scratch_table(dynamodb, "api-keys", api_keys_table()) as name:
        yield name


@pytest.fixture
def store(table: str, infra_settings: Settings) -> DynamoDBApiKeyStore:
    return DynamoDBApiKeyStore(table, client_args=infra_settings.aws_client_args())


async def test_put_get_revoke_roundtrip(store: DynamoDBApiKeyStore, dynamodb: Any) -> None:
    plan = UsagePlan(rate_per_s=2.5, burst=7, daily_quota=500)
    key, record = await issue_api_key(store, HASHER, owner="team-roundtrip", plan=plan)
    assert await store.get(record.key_id) == record
    raw = dynamodb.get_item(TableName=store.table_name,
                            Key={"key_id": {"S": record.key_id}})["Item"]
    assert key not in str(raw)  # only the digest is stored
    assert raw["digest"]["S"] == HASHER.digest(key)
    assert await store.revoke(record.key_id) is True
    revoked = await store.get(record.key_id)
    assert revoked is not None
    assert revoked.revoked
    first_at = dynamodb.get_item(TableName=store.table_name,
                                 Key={"key_id": {"S": record.key_id}})["Item"]["revoked_at"]
    assert await store.revoke(record.key_id) is True  # again: harmless, first time kept
    again = dynamodb.get_item(TableName=store.table_name,
                              Key={"key_id": {"S": record.key_id}})["Item"]["revoked_at"]
    assert again == first_at


async def test_unknown_keys(store: DynamoDBApiKeyStore) -> None:
    assert await store.get("00000000deadbeef") is None
    assert await store.revoke("00000000deadbeef") is False
    assert await store.get("00000000deadbeef") is None  # revoke created nothing


async def test_unlimited_plan_roundtrip(store: DynamoDBApiKeyStore) -> None:
    _, record = await issue_api_key(store, HASHER, owner="team-unlimited",
                                    plan=UsagePlan(rate_per_s=0.5, burst=1))
    stored = await store.get(record.key_id)
    assert stored is not None
    assert stored.plan == UsagePlan(rate_per_s=0.5, burst=1, daily_quota=None)


async def test_list_sees_every_key_including_revoked(store: DynamoDBApiKeyStore) -> None:
    plan = UsagePlan(rate_per_s=1.0, burst=1)
    owner = f"lister-{uuid.uuid4().hex[:6]}"
    issued = [(await issue_api_key(store, HASHER, owner=owner, plan=plan))[1] for _ in range(3)]
    await store.revoke(issued[0].key_id)
    mine = [r for r in await store.list_keys() if r.owner == owner]
    assert {r.key_id for r in mine} == {r.key_id for r in issued}
    assert {r.key_id for r in mine if r.revoked} == {issued[0].key_id}
    assert len(await store.list_keys(limit=1)) == 1


async def test_authenticator_on_the_real_table(store: DynamoDBApiKeyStore) -> None:
    authenticator = ApiKeyAuthenticator(store, HASHER)
    key, record = await issue_api_key(store, HASHER, owner="team-auth",
                                      plan=UsagePlan(rate_per_s=1.0, burst=1))
    assert (await authenticator.authenticate(key)).principal.key_id == record.key_id
    with pytest.raises(InvalidApiKey):
        await ApiKeyAuthenticator(store, ApiKeyHasher(b"wrong-pepper-0123456789abcdef")
                                  ).authenticate(key)
    await store.revoke(record.key_id)
    with pytest.raises(RevokedKey):  # consistent read: refused on the very next request
        await authenticator.authenticate(key)


async def test_plaintext_is_refused_before_any_write(store: DynamoDBApiKeyStore) -> None:
    record = ApiKeyRecord(key_id="0123456789abcdef", owner="x",
                          plan=UsagePlan(rate_per_s=1.0, burst=1),
                          digest="mgk_0123456789abcdef.secret-secret-secret")
    with pytest.raises(ValueError, match="digest"):
        await store.put(record)
    assert await store.get("0123456789abcdef") is None


async def test_a_missing_table_is_refused_not_retried(infra_settings: Settings) -> None:
    store = DynamoDBApiKeyStore(f"no-such-table-{uuid.uuid4().hex[:8]}",
                                client_args=infra_settings.aws_client_args())
    with pytest.raises(ApiKeyStoreRefused) as caught:
        await store.get("0123456789abcdef")
    assert caught.value.status == 503
    assert caught.value.retriable is False
    assert "no-such-table" not in caught.value.message  # the caller sees no internals
    assert "no-such-table" in caught.value.detail


async def test_an_unreachable_store_is_retriable() -> None:
    store = DynamoDBApiKeyStore("t", client_args={
        "endpoint_url": "http://127.0.0.1:9", "region_name": "us-east-1",
        "aws_access_key_id": "test", "aws_secret_access_key": "test"})
    with pytest.raises(ApiKeyStoreUnavailable) as caught:
        await store.get("0123456789abcdef")
    assert caught.value.retriable is True
    assert not isinstance(caught.value, ApiKeyStoreRefused)
