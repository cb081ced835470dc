"""Async operations (routes answering 202 + a status URL): the record kept per operation, the
store protocol, and an in-memory store with the same behaviour as the DynamoDB one
(``functions.shared.dynamodb_operations``).

An operation is created ``pending`` by the edge before its request is sent, and completed
once, by the recorder (``functions.async_results``), with the service's reply: ``succeeded``
with its JSON result, or ``failed`` with ``{code, message, retriable}``. Completion is
conditional on the operation still being pending and on the reply answering the operation
that was submitted, so a redelivered or duplicate reply never overwrites the first answer.
A pending operation past its deadline (plus a grace period) reads as failed with
``deadline_exceeded`` and can no longer be completed: a terminal status never changes.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, Literal, Protocol

from bus.envelope import now_ms as wall_now_ms
from functions.errors import FunctionError

Status = Literal["pending", "succeeded", "failed"]
PENDING: Final = "pending"
SUCCEEDED: Final = "succeeded"
FAILED: Final = "failed"
Completion = Literal["completed", "duplicate", "unknown", "mismatch", "late"]

ENV_TABLE = "MESH_OPERATIONS_TABLE"
DEFAULT_KEEP_S = 24 * 3600  # how long a record stays readable after its creation (TTL)
LATE_GRACE_MS = 5_000  # a reply may trail the deadline by this much and still count
MAX_ID_LENGTH = 128
MAX_ERROR_MESSAGE = 1024


class OperationsError(FunctionError):
    """The operations store could not be reached or was throttled; retrying may succeed."""

    retriable = True
    code = "operations_unavailable"


class OperationsRefused(OperationsError):
    """The store refused the request (bad input, no table, no permission): do not retry."""

    retriable = False
    code = "operations_refused"


class OperationExists(OperationsRefused):
    """``create`` found an operation with that id already."""

    code = "operation_exists"


@dataclass(frozen=True)
class OperationRecord:
    operation_id: str
    owner: str  # the subject of the caller who started it ("anonymous" without one)
    route: str
    operation: str
    status: Status
    created_at_ms: int
    expires_at_s: int  # DynamoDB TTL (epoch seconds)
    deadline_ms: int | None = None
    completed_at_ms: int | None = None
    result: Any = None  # the JSON result once succeeded
    error: Mapping[str, Any] | None = None  # {code, message, retriable} once failed

    @property
    def done(self) -> bool:
        return self.status != PENDING


def check_id(operation_id: str) -> None:
    if not operation_id or len(operation_id) > MAX_ID_LENGTH:
        raise OperationsRefused(f"an operation id is 1 to {MAX_ID_LENGTH} characters")


def error_body(code: str, message: str, retriable: bool) -> dict[str, Any]:
    return {"code": code, "message": message[:MAX_ERROR_MESSAGE], "retriable": retriable}


def overdue(record: OperationRecord, now_ms: int) -> bool:
    """A pending operation whose reply can no longer count (its deadline plus the grace)."""
    return (record.status == PENDING and record.deadline_ms is not None
            and now_ms >= record.deadline_ms + LATE_GRACE_MS)


def view(record: OperationRecord | None, now_ms: int) -> OperationRecord | None:
    """What a reader sees: nothing once expired, ``failed`` once overdue."""
    if record is None or now_ms >= record.expires_at_s * 1000:
        return None
    if overdue(record, now_ms):
        return replace(record, status=FAILED, error=error_body(
            "deadline_exceeded", "no result before the operation's deadline", True))
    return record


def decide_completion(record: OperationRecord | None, operation: str, now_ms: int
                      ) -> Completion | None:
    """Why a completion of ``record`` (answering ``operation``) must not be written, or None
    when it may. The DynamoDB store's condition expression is the same rule."""
    if record is None or now_ms >= record.expires_at_s * 1000:
        return "unknown"
    if record.status != PENDING:
        return "duplicate"
    if record.operation != operation:
        return "mismatch"
    if overdue(record, now_ms):
        return "late"
    return None


def new_record(operation_id: str, *, owner: str, route: str, operation: str, now_ms: int,
               expires_at_s: int | None, deadline_ms: int | None) -> OperationRecord:
    check_id(operation_id)
    return OperationRecord(
        operation_id=operation_id, owner=owner, route=route, operation=operation,
        status=PENDING, created_at_ms=now_ms, deadline_ms=deadline_ms,
        expires_at_s=expires_at_s if expires_at_s is not None
        else now_ms // 1000 + DEFAULT_KEEP_S,
    )


class OperationsStore(Protocol):
    async def create(self, operation_id: str, *, owner: str, route: str, operation: str,
                     expires_at_s: int | None = None, deadline_ms: int | None = None) -> None:
        """Record a new pending operation; ``OperationExists`` if the id is taken."""
        ...

    async def get(self, operation_id: str) -> OperationRecord | None:
        """The operation as a reader sees it (``view``), or None if unknown or expired."""
        ...

    async def complete(self, operation_id: str, *, operation: str, result: Any = None,
                       error: Mapping[str, Any] | None = None) -> Completion:
        """Finish a pending operation once: ``succeeded`` with ``result`` or, when ``error``
        is given, ``failed``. Anything but ``"completed"`` means nothing was written."""
        ...


class InMemoryOperationsStore:
    """``OperationsStore`` in a dict, for tests (one process, one event loop)."""

    def __init__(self, *, clock: Any = None) -> None:
        self.records: dict[str, OperationRecord] = {}
        self._clock = clock or wall_now_ms
        self._lock = asyncio.Lock()

    async def create(self, operation_id: str, *, owner: str, route: str, operation: str,
                     expires_at_s: int | None = None, deadline_ms: int | None = None) -> None:
        now = int(self._clock())
        record = new_record(operation_id, owner=owner, route=route, operation=operation,
                            now_ms=now, expires_at_s=expires_at_s, deadline_ms=deadline_ms)
        async with self._lock:
            if view(self.records.get(operation_id), now) is not None:
                raise OperationExists(f"operation {operation_id!r} exists")
            self.records[operation_id] = record

    async def get(self, operation_id: str) -> OperationRecord | None:
        check_id(operation_id)
        return view(self.records.get(operation_id), int(self._clock()))

    async def complete(self, operation_id: str, *, operation: str, result: Any = None,
                       error: Mapping[str, Any] | None = None) -> Completion:
        check_id(operation_id)
        now = int(self._clock())
        async with self._lock:
            record = self.records.get(operation_id)
            refusal = decide_completion(record, operation, now)
            if refusal is not None:
                return refusal
            assert record is not None
            self.records[operation_id] = replace(
                record, status=FAILED if error is not None else SUCCEEDED,
                result=None if error is not None else result,
                error=dict(error) if error is not None else None, completed_at_ms=now)
            return "completed"


def operations_store_from_env(env: Mapping[str, str] | None = None, *,
                              client_args: Mapping[str, Any] | None = None
                              ) -> OperationsStore | None:
    """The DynamoDB store on the table ``$MESH_OPERATIONS_TABLE``, or None when unset."""
    table = (os.environ if env is None else env).get(ENV_TABLE)
    if not table:
        return None
    from functions.shared.dynamodb_operations import DynamoDBOperationsStore

    return DynamoDBOperationsStore(table, client_args=client_args)
