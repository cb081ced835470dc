"""The async operations store on DynamoDB (``OperationsStore`` of
``functions.shared.operations_store``; table in ``functions.shared.operations_table``).

Item schema (hash key ``id`` S, TTL on ``expires_at``):

- ``id`` (S) the operation id; ``owner``, ``route``, ``operation`` (S); ``status`` (S):
  ``pending``, ``succeeded`` or ``failed``
- ``created_at_ms`` (N), ``expires_at`` (N, epoch seconds), ``deadline_ms`` (N, optional)
- once done: ``completed_at_ms`` (N) and ``result`` (S, JSON text) or ``error`` (M:
  ``code`` S, ``message`` S, ``retriable`` BOOL)

``create`` is a conditional PutItem (never overwrites a live record); ``complete`` a
conditional UpdateItem whose condition is ``decide_completion``. boto3 blocks, so every
request runs in ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

from bus.envelope import now_ms as wall_now_ms
from functions.shared.dynamodb import ConditionFailed, LazyDynamoDB, translated
from functions.shared.operations_store import (
    LATE_GRACE_MS,
    PENDING,
    Completion,
    OperationExists,
    OperationRecord,
    OperationsError,
    OperationsRefused,
    Status,
    check_id,
    decide_completion,
    new_record,
    view,
)

CREATE_CONDITION = "attribute_not_exists(#id) OR #expires_at <= :now_s"
COMPLETE_CONDITION = (
    "attribute_exists(#id) AND #expires_at > :now_s AND #status = :pending"
    " AND #operation = :operation"
    " AND (attribute_not_exists(#deadline_ms) OR #deadline_ms > :late_ms)"
)
# A condition can fail on a record that then changes (expired and created anew); reading and
# writing again settles it, more rounds than this means something is badly wrong.
COMPLETE_ROUNDS = 3
STATUSES: frozenset[str] = frozenset({"pending", "succeeded", "failed"})


class DynamoDBOperationsStore:
    """``OperationsStore`` on the table ``table_name``; ``client_args`` go to boto3."""

    def __init__(self, table_name: str, *, client_args: Mapping[str, Any] | None = None) -> None:
        if not table_name:
            raise ValueError("table_name must not be empty")
        self.table_name = table_name
        self._dynamodb = LazyDynamoDB(client_args)

    async def create(self, operation_id: str, *, owner: str, route: str, operation: str,
                     expires_at_s: int | None = None, deadline_ms: int | None = None) -> None:
        record = new_record(operation_id, owner=owner, route=route, operation=operation,
                            now_ms=wall_now_ms(), expires_at_s=expires_at_s,
                            deadline_ms=deadline_ms)
        await asyncio.to_thread(self._create, record)

    async def get(self, operation_id: str) -> OperationRecord | None:
        check_id(operation_id)
        item = await asyncio.to_thread(self._read, operation_id)
        return view(from_item(item), wall_now_ms())

    async def complete(self, operation_id: str, *, operation: str, result: Any = None,
                       error: Mapping[str, Any] | None = None) -> Completion:
        check_id(operation_id)
        values = _completion_values(result, error)
        return await asyncio.to_thread(self._complete, operation_id, operation, values)

    def _create(self, record: OperationRecord) -> None:
        try:
            with self._errors("create", record.operation_id):
                self._dynamodb.get().put_item(
                    TableName=self.table_name, Item=to_item(record),
                    ConditionExpression=CREATE_CONDITION,
                    ExpressionAttributeNames={"#id": "id", "#expires_at": "expires_at"},
                    ExpressionAttributeValues={
                        ":now_s": {"N": str(record.created_at_ms // 1000)}},
                )
        except ConditionFailed:
            raise OperationExists(f"operation {record.operation_id!r} exists") from None

    def _complete(self, operation_id: str, operation: str, values: dict[str, Any]) -> Completion:
        sets = ", ".join(f"#{name} = :{name}" for name in values)
        for _ in range(COMPLETE_ROUNDS):
            now = wall_now_ms()
            try:
                with self._errors("complete", operation_id):
                    self._dynamodb.get().update_item(
                        TableName=self.table_name, Key={"id": {"S": operation_id}},
                        UpdateExpression=f"SET {sets}, #completed_at_ms = :completed_at_ms",
                        ConditionExpression=COMPLETE_CONDITION,
                        ExpressionAttributeNames={
                            "#id": "id", "#expires_at": "expires_at", "#status": "status",
                            "#operation": "operation", "#deadline_ms": "deadline_ms",
                            "#completed_at_ms": "completed_at_ms",
                            **{f"#{name}": name for name in values if name != "status"},
                        },
                        ExpressionAttributeValues={
                            ":now_s": {"N": str(now // 1000)},
                            ":pending": {"S": PENDING},
                            ":operation": {"S": operation},
                            ":late_ms": {"N": str(now - LATE_GRACE_MS)},
                            ":completed_at_ms": {"N": str(now)},
                            **{f":{name}": value for name, value in values.items()},
                        },
                        ReturnValuesOnConditionCheckFailure="ALL_OLD",
                    )
                return "completed"
            except ConditionFailed as failed:
                item = failed.item if failed.item is not None else self._read(operation_id)
            refusal = decide_completion(from_item(item), operation, wall_now_ms())
            if refusal is not None:
                return refusal
        raise OperationsError(f"could not complete {operation_id!r} in {self.table_name}: "
                              f"its record changed {COMPLETE_ROUNDS} times in a row")

    def _read(self, operation_id: str) -> Mapping[str, Any] | None:
        with self._errors("read", operation_id):
            answer = self._dynamodb.get().get_item(
                TableName=self.table_name, Key={"id": {"S": operation_id}}, ConsistentRead=True)
        item: Mapping[str, Any] | None = answer.get("Item")
        return item

    def _errors(self, what: str, operation_id: str) -> AbstractContextManager[None]:
        return translated(f"{what} operation {operation_id!r} in {self.table_name}",
                          retriable=OperationsError, refused=OperationsRefused)


def _completion_values(result: Any, error: Mapping[str, Any] | None) -> dict[str, Any]:
    """The attributes a completion sets (``status`` plus ``result`` or ``error``)."""
    if error is not None:
        return {"status": {"S": "failed"}, "error": {"M": {
            "code": {"S": str(error.get("code", "remote"))},
            "message": {"S": str(error.get("message", ""))},
            "retriable": {"BOOL": bool(error.get("retriable", False))},
        }}}
    try:
        text = json.dumps(result, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise OperationsRefused(f"the result is not JSON: {exc}") from exc
    return {"status": {"S": "succeeded"}, "result": {"S": text}}


def to_item(record: OperationRecord) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": {"S": record.operation_id},
        "owner": {"S": record.owner},
        "route": {"S": record.route},
        "operation": {"S": record.operation},
        "status": {"S": record.status},
        "created_at_ms": {"N": str(record.created_at_ms)},
        "expires_at": {"N": str(record.expires_at_s)},
    }
    if record.deadline_ms is not None:
        item["deadline_ms"] = {"N": str(record.deadline_ms)}
    return item


def from_item(item: Mapping[str, Any] | None) -> OperationRecord | None:
    if item is None:
        return None
    try:
        status = item["status"]["S"]
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        error = None
        if "error" in item:
            fields = item["error"]["M"]
            error = {"code": fields["code"]["S"], "message": fields["message"]["S"],
                     "retriable": bool(fields["retriable"]["BOOL"])}
        return OperationRecord(
            operation_id=item["id"]["S"], owner=item["owner"]["S"], route=item["route"]["S"],
            operation=item["operation"]["S"], status=_status(status),
            created_at_ms=int(item["created_at_ms"]["N"]),
            expires_at_s=int(item["expires_at"]["N"]),
            deadline_ms=int(item["deadline_ms"]["N"]) if "deadline_ms" in item else None,
            completed_at_ms=(int(item["completed_at_ms"]["N"]) if "completed_at_ms" in item
                             else None),
            result=json.loads(item["result"]["S"]) if "result" in item else None,
            error=error,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise OperationsRefused(f"malformed operation record: {exc}") from exc


def _status(text: str) -> Status:
    return "pending" if text == "pending" else "succeeded" if text == "succeeded" else "failed"
