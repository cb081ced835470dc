"""API-key records in DynamoDB: an :class:`~functions.gateway.auth.api_keys.ApiKeyStore`.

Item schema (hash key ``key_id`` S; see ``.keys_table``):

- ``key_id`` (S): the key's id, the part of ``mgk_<key id>.<secret>`` that is not secret
- ``owner`` (S), ``digest`` (S): the owner and the hex HMAC-SHA-256 of the key under the
  pepper; the plaintext key is never written (``put`` refuses anything but a digest)
- ``rate_per_s`` (N), ``burst`` (N), ``daily_quota`` (N, absent when unlimited): the plan
- ``revoked`` (BOOL), ``revoked_at`` (N, epoch seconds, once revoked)

Reads are consistent (a revoked key is refused from the next request on). Every boto3 call
runs in a worker thread, and every botocore error goes through
``functions.shared.dynamodb.translated``: throttling, 5xx and connection trouble raise
:class:`ApiKeyStoreUnavailable` (retriable), anything else :class:`ApiKeyStoreRefused`. Both
are :class:`~functions.gateway.auth.errors.AuthError` with status 503: the gateway could not
check the key, which is not the caller's fault.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

from functions.gateway.auth.api_keys import (
    ApiKeyAuthenticator,
    ApiKeyHasher,
    ApiKeyRecord,
    UsagePlan,
)
from functions.gateway.auth.errors import AuthError
from functions.gateway.auth.keys_table import KEY_ATTRIBUTE
from functions.shared.dynamodb import ConditionFailed, LazyDynamoDB, translated
from functions.shared.secrets import API_KEY_PEPPER_ENV, load_api_key_pepper

_DIGEST = re.compile(r"[0-9a-f]{64}")
_KEY_ID = re.compile(r"[0-9a-f]{16}")
MAX_LIST = 10_000
_UNAVAILABLE = "the API key cannot be checked right now"


class ApiKeyStoreUnavailable(AuthError):
    """The key store could not answer (throttled, down, unreachable); retrying may succeed."""

    status = 503
    reason = "api_key_store_unavailable"
    retriable = True

    def __init__(self, message: str, *, reason: str | None = None, detail: str = "") -> None:
        super().__init__(message, reason=reason)
        self.detail = detail  # for the logs: table, operation, DynamoDB's own message


class ApiKeyStoreRefused(ApiKeyStoreUnavailable):
    """The key store refused in a way retrying will not fix (no such table, access denied,
    a malformed item): a deployment problem."""

    reason = "api_key_store_refused"
    retriable = False


def to_item(record: ApiKeyRecord) -> dict[str, Any]:
    """The DynamoDB item of ``record``; refuses anything that is not a hex digest, so a
    plaintext key can never be stored by mistake."""
    if not _DIGEST.fullmatch(record.digest):
        raise ValueError("an API key record must hold the key's hex digest, never the key")
    if not _KEY_ID.fullmatch(record.key_id):
        raise ValueError("an API key id is 16 lowercase hex characters")
    item: dict[str, Any] = {
        KEY_ATTRIBUTE: {"S": record.key_id},
        "owner": {"S": record.owner},
        "digest": {"S": record.digest},
        "rate_per_s": {"N": repr(float(record.plan.rate_per_s))},
        "burst": {"N": str(record.plan.burst)},
        "revoked": {"BOOL": record.revoked},
    }
    if record.plan.daily_quota is not None:
        item["daily_quota"] = {"N": str(record.plan.daily_quota)}
    return item


def from_item(item: Mapping[str, Any]) -> ApiKeyRecord:
    """The record of a stored item; raises :class:`ApiKeyStoreRefused` if it is malformed."""
    try:
        quota = item.get("daily_quota")
        record = ApiKeyRecord(
            key_id=str(item[KEY_ATTRIBUTE]["S"]),
            owner=str(item["owner"]["S"]),
            plan=UsagePlan(
                rate_per_s=float(item["rate_per_s"]["N"]),
                burst=int(item["burst"]["N"]),
                daily_quota=None if quota is None else int(quota["N"]),
            ),
            digest=str(item["digest"]["S"]),
            revoked=bool(item.get("revoked", {}).get("BOOL", False)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ApiKeyStoreRefused(_UNAVAILABLE, detail=f"a malformed API key item: "
                                 f"{type(exc).__name__}: {exc}") from None
    if not _DIGEST.fullmatch(record.digest):
        raise ApiKeyStoreRefused(_UNAVAILABLE, detail="a malformed API key item: the digest "
                                 "is not a hex digest")
    return record


class DynamoDBApiKeyStore:
    """API-key records in the DynamoDB table ``table_name``.

    ``client_args`` go to ``boto3`` (``region_name``, ``endpoint_url``, credentials); without
    them boto3's defaults apply (in Lambda: the function's region and role). The client is
    created on first use, once per store.
    """

    def __init__(self, table_name: str, *, client_args: Mapping[str, Any] | None = None) -> None:
        if not table_name:
            raise ValueError("table_name must not be empty")
        self.table_name = table_name
        self._dynamodb = LazyDynamoDB(client_args)

    async def get(self, key_id: str) -> ApiKeyRecord | None:
        """The record of ``key_id`` (consistent read), or ``None``."""
        return await asyncio.to_thread(self._get, key_id)

    async def put(self, record: ApiKeyRecord) -> None:
        """Store ``record`` (replacing any record of the same id)."""
        item = to_item(record)
        await asyncio.to_thread(self._put, item)

    async def revoke(self, key_id: str) -> bool:
        """Mark ``key_id`` revoked; ``False`` if there is no such key. Revoking twice is
        harmless (the first ``revoked_at`` is kept)."""
        return await asyncio.to_thread(self._revoke, key_id, int(time.time()))

    async def list_keys(self, limit: int = MAX_LIST) -> list[ApiKeyRecord]:
        """Every record (revoked ones too), sorted by owner then key id; for operators, as
        it scans the table."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        records = await asyncio.to_thread(self._scan, limit)
        return sorted(records, key=lambda record: (record.owner, record.key_id))

    def _get(self, key_id: str) -> ApiKeyRecord | None:
        with self._errors("read", key_id):
            answer = self._dynamodb.get().get_item(
                TableName=self.table_name, Key={KEY_ATTRIBUTE: {"S": key_id}},
                ConsistentRead=True,
            )
        item = answer.get("Item")
        return None if item is None else from_item(item)

    def _put(self, item: Mapping[str, Any]) -> None:
        with self._errors("write", str(item[KEY_ATTRIBUTE]["S"])):
            self._dynamodb.get().put_item(TableName=self.table_name, Item=dict(item))

    def _revoke(self, key_id: str, now_s: int) -> bool:
        try:
            with self._errors("revoke", key_id):
                self._dynamodb.get().update_item(
                    TableName=self.table_name,
                    Key={KEY_ATTRIBUTE: {"S": key_id}},
                    UpdateExpression="SET #revoked = :true, "
                                     "#revoked_at = if_not_exists(#revoked_at, :now)",
                    ConditionExpression="attribute_exists(#key)",
                    ExpressionAttributeNames={"#revoked": "revoked", "#key": KEY_ATTRIBUTE,
                                              "#revoked_at": "revoked_at"},
                    ExpressionAttributeValues={":true": {"BOOL": True},
                                               ":now": {"N": str(now_s)}},
                )
        except ConditionFailed:
            return False
        return True

    def _scan(self, limit: int) -> list[ApiKeyRecord]:
        records: list[ApiKeyRecord] = []
        args: dict[str, Any] = {"TableName": self.table_name, "ConsistentRead": True}
        while len(records) < limit:
            with self._errors("list", "*"):
                page = self._dynamodb.get().scan(**args)
            records.extend(from_item(item) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            args["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return records[:limit]

    def _errors(self, what: str, key_id: str) -> AbstractContextManager[None]:
        # The message is for the caller (no table name); the detail is for the logs.
        return translated(
            f"{what} API key {key_id!r} in {self.table_name}",
            retriable=lambda detail: ApiKeyStoreUnavailable(_UNAVAILABLE, detail=detail),
            refused=lambda detail: ApiKeyStoreRefused(_UNAVAILABLE, detail=detail),
        )


API_KEYS_TABLE_ENV = "MESH_API_KEYS_TABLE"


async def authenticator_from_env(
    env: Mapping[str, str], *, client_args: Mapping[str, Any] | None = None
) -> ApiKeyAuthenticator | None:
    """The deployed API-key authenticator: the table named by ``$MESH_API_KEYS_TABLE`` and
    the pepper in the secret named by ``$MESH_API_KEY_PEPPER_SECRET`` (read in a thread).
    ``None`` when the table is not configured; raises ``bus.security.keys.InvalidKey`` when the
    pepper cannot be had. Build it once per process (it holds the pepper and the client)."""
    table = env.get(API_KEYS_TABLE_ENV)
    if not table:
        return None
    pepper = await asyncio.to_thread(load_api_key_pepper, env.get(API_KEY_PEPPER_ENV))
    return ApiKeyAuthenticator(DynamoDBApiKeyStore(table, client_args=client_args),
                               ApiKeyHasher(pepper))
