"""The idempotency store on DynamoDB (boto3 adapter of
``bus.delivery.idempotency.IdempotencyStore``).

Item schema (table with hash key ``id`` S, TTL on ``expires_at``; see ``infra.stack.tables``):

- ``id`` (S): the idempotency key (the message id)
- ``status`` (S): ``IN_PROGRESS`` or ``COMPLETED``
- ``expires_at`` (N): epoch seconds; DynamoDB's TTL deletes the item some time after it.
  Expiry is also checked in every condition, because TTL deletion is lazy.
- ``lease_until_ms`` (N) and ``token`` (S): while ``IN_PROGRESS``
- ``result`` (B): once ``COMPLETED``

Every write is one conditional request, so two workers can never both claim a key, and a
worker whose claim was taken over cannot release or overwrite the new claim. boto3 blocks,
so each request runs in a thread (``asyncio.to_thread``), never on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any

from bus.delivery.idempotency import (
    COMPLETED,
    IN_PROGRESS,
    MAX_RESULT_BYTES,
    Claim,
    IdempotencyError,
    IdempotencyRecord,
    IdempotencyRefused,
    check_key,
    check_result_size,
    claim_record,
    completed_record,
    decide,
    holds,
    new_token,
)
from functions.shared.dynamodb import ConditionFailed, LazyDynamoDB, translated

# A claim may lose a race to a record that then disappears (released) before it is read;
# claiming again settles it. More rounds than this means something is badly wrong.
BEGIN_ATTEMPTS = 3

NAMES = {
    "#id": "id",
    "#status": "status",
    "#expires_at": "expires_at",
    "#lease_until_ms": "lease_until_ms",
    "#token": "token",
}
# Free to claim: no item, the item expired (TTL has not deleted it yet), or an in-progress
# lease ran out. Exactly ``bus.delivery.idempotency.decide`` returning None, with
# now_s = now_ms // 1000 (now_ms >= expires_at * 1000 <=> now_ms // 1000 >= expires_at).
CLAIM_CONDITION = (
    "attribute_not_exists(#id) OR #expires_at <= :now_s"
    " OR (#status = :in_progress AND #lease_until_ms <= :now_ms)"
)
# The caller's claim is still the current one (``bus.delivery.idempotency.holds``).
HOLDS_CONDITION = "#status = :in_progress AND #token = :token"
# ``bus.delivery.idempotency.may_complete``: the claim is current, or the item is gone.
COMPLETE_CONDITION = f"attribute_not_exists(#id) OR ({HOLDS_CONDITION})"


class DynamoDBIdempotencyStore:
    """``IdempotencyStore`` on the DynamoDB table ``table_name``.

    ``client_args`` go to ``boto3`` (``region_name``, ``endpoint_url``, credentials, a
    botocore ``config``); without them boto3's defaults apply (in Lambda: the function's
    region and role). The client is created on first use, once per store; ``fast`` chooses
    its item calls' path (``functions.shared.dynamodb.fast_client_wanted``).
    """

    def __init__(self, table_name: str, *, client_args: Mapping[str, Any] | None = None,
                 fast: bool | None = None) -> None:
        if not table_name:
            raise ValueError("table_name must not be empty")
        self.table_name = table_name
        self._dynamodb = LazyDynamoDB(client_args, fast=fast)

    def client(self) -> Any:
        """The boto3 DynamoDB client, created on first use."""
        return self._dynamodb.get()

    @property
    def max_result_bytes(self) -> int:
        """What an item holds besides the record's other attributes."""
        return MAX_RESULT_BYTES

    async def begin(self, key: str, *, now_ms: int, lease_ms: int) -> Claim:
        check_key(key)
        record = claim_record(new_token(), now_ms=now_ms, lease_ms=lease_ms)
        return await asyncio.to_thread(self._begin, key, record, now_ms)

    async def complete(
        self, key: str, result: bytes, *, token: str, now_ms: int, keep_ms: int
    ) -> bool:
        check_key(key)
        check_result_size(result, self.max_result_bytes)
        record = completed_record(result, now_ms=now_ms, keep_ms=keep_ms)
        return await asyncio.to_thread(self._complete, key, record, token)

    async def release(self, key: str, *, token: str) -> bool:
        check_key(key)
        return await asyncio.to_thread(self._release, key, token)

    async def renew(self, key: str, *, token: str, now_ms: int, lease_ms: int) -> bool:
        check_key(key)
        record = claim_record(token, now_ms=now_ms, lease_ms=lease_ms)
        return await asyncio.to_thread(self._write_if, "renew", key, token, HOLDS_CONDITION,
                                       lambda dynamodb, args: dynamodb.put_item(
                                           Item=to_item(key, record), **args))

    def _begin(self, key: str, record: IdempotencyRecord, now_ms: int) -> Claim:
        claimed = Claim("claimed", token=record.token, lease_until_ms=record.lease_until_ms)
        for _ in range(BEGIN_ATTEMPTS):
            try:
                with self._errors("claim", key):
                    self.client().put_item(
                        TableName=self.table_name,
                        Item=to_item(key, record),
                        ConditionExpression=CLAIM_CONDITION,
                        ExpressionAttributeNames=_names(CLAIM_CONDITION),
                        ExpressionAttributeValues={
                            ":now_s": {"N": str(now_ms // 1000)},
                            ":now_ms": {"N": str(now_ms)},
                            ":in_progress": {"S": IN_PROGRESS},
                        },
                        ReturnValuesOnConditionCheckFailure="ALL_OLD",
                    )
                return claimed
            except ConditionFailed as failed:
                item = failed.item if failed.item is not None else self._read(key)
            found = from_item(key, item)
            if record.token is not None and holds(found, record.token):
                # Our own write, answered late: the client retried a claim whose first try
                # landed (its answer lost with the connection). The token is new per claim.
                return claimed
            duplicate = decide(found, now_ms)
            if duplicate is not None:
                return duplicate
        raise IdempotencyError(f"could not claim {key!r} in {self.table_name}: "
                               f"its record changed {BEGIN_ATTEMPTS} times in a row")

    def _complete(self, key: str, record: IdempotencyRecord, token: str) -> bool:
        return self._write_if(
            "complete", key, token, COMPLETE_CONDITION,
            lambda dynamodb, args: dynamodb.put_item(Item=to_item(key, record), **args),
        )

    def _release(self, key: str, token: str) -> bool:
        return self._write_if(
            "release", key, token, HOLDS_CONDITION,
            lambda dynamodb, args: dynamodb.delete_item(Key={"id": {"S": key}}, **args),
        )

    def _write_if(
        self, what: str, key: str, token: str, condition: str,
        write: Callable[[Any, dict[str, Any]], object],
    ) -> bool:
        args = {
            "TableName": self.table_name,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": _names(condition),
            "ExpressionAttributeValues": {
                ":in_progress": {"S": IN_PROGRESS}, ":token": {"S": token}
            },
        }
        try:
            with self._errors(what, key):
                write(self.client(), args)
        except ConditionFailed:
            return False
        return True

    def _read(self, key: str) -> Mapping[str, Any] | None:
        with self._errors("read", key):
            answer = self.client().get_item(
                TableName=self.table_name, Key={"id": {"S": key}}, ConsistentRead=True
            )
        item: Mapping[str, Any] | None = answer.get("Item")
        return item

    def _errors(self, what: str, key: str) -> AbstractContextManager[None]:
        return translated(f"{what} {key!r} in {self.table_name}",
                          retriable=IdempotencyError, refused=IdempotencyRefused)


def _names(expression: str) -> dict[str, str]:
    """The expression attribute names ``expression`` uses (DynamoDB rejects unused ones)."""
    return {alias: name for alias, name in NAMES.items() if alias in expression}


def to_item(key: str, record: IdempotencyRecord) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": {"S": key},
        "status": {"S": record.status},
        "expires_at": {"N": str(record.expires_at_s)},
    }
    if record.token is not None:
        item["token"] = {"S": record.token}
    if record.lease_until_ms is not None:
        item["lease_until_ms"] = {"N": str(record.lease_until_ms)}
    if record.result is not None:
        item["result"] = {"B": record.result}
    return item


def from_item(key: str, item: Mapping[str, Any] | None) -> IdempotencyRecord | None:
    if item is None:
        return None
    try:
        status = item["status"]["S"]
        if status not in (IN_PROGRESS, COMPLETED):
            raise ValueError(f"unknown status {status!r}")
        return IdempotencyRecord(
            status=IN_PROGRESS if status == IN_PROGRESS else COMPLETED,
            expires_at_s=int(item["expires_at"]["N"]),
            token=item["token"]["S"] if "token" in item else None,
            lease_until_ms=int(item["lease_until_ms"]["N"]) if "lease_until_ms" in item else None,
            result=bytes(item["result"]["B"]) if "result" in item else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise IdempotencyRefused(f"malformed idempotency record for {key!r}: {exc}") from exc
