"""The async operations store: the behaviour both stores share (``StoreContract``, run here
on the in-memory store and in tests/integration on DynamoDB), and the pure pieces."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from bus.envelope import now_ms
from functions.shared.dynamodb_operations import _completion_values, from_item, to_item
from functions.shared.operations_store import (
    LATE_GRACE_MS,
    InMemoryOperationsStore,
    OperationExists,
    OperationRecord,
    OperationsRefused,
    OperationsStore,
    decide_completion,
    error_body,
    new_record,
    operations_store_from_env,
    view,
)
from functions.shared.operations_table import operations_access, operations_table
from infra.settings import Settings
from infra.stack.parts.async_routes import part

RESULT: dict[str, Any] = {"report": "r-1", "rows": [1, 2, 3], "ok": True, "ratio": 0.5}


def new_id() -> str:
    return uuid.uuid4().hex


class StoreContract:
    """What every ``OperationsStore`` does; subclasses provide the ``store`` fixture."""

    async def test_create_then_get_is_pending(self, store: OperationsStore) -> None:
        op = new_id()
        await store.create(op, owner="alice", route="POST /v1/reports", operation="orders.report")
        record = await store.get(op)
        assert record is not None
        assert (record.operation_id, record.owner, record.route, record.operation) == (
            op, "alice", "POST /v1/reports", "orders.report")
        assert record.status == "pending"
        assert not record.done
        assert record.result is None
        assert record.error is None
        assert record.completed_at_ms is None
        assert abs(record.created_at_ms - now_ms()) < 60_000
        assert record.expires_at_s > now_ms() // 1000

    async def test_unknown_id_reads_none(self, store: OperationsStore) -> None:
        assert await store.get(new_id()) is None

    async def test_create_never_overwrites(self, store: OperationsStore) -> None:
        op = new_id()
        await store.create(op, owner="alice", route="r", operation="orders.report")
        with pytest.raises(OperationExists) as raised:
            await store.create(op, owner="mallory", route="r", operation="orders.report")
        assert raised.value.retriable is False
        record = await store.get(op)
        assert record is not None
        assert record.owner == "alice"

    async def test_complete_with_a_result(self, store: OperationsStore) -> None:
        op = new_id()
        await store.create(op, owner="alice", route="r", operation="orders.report")
        assert await store.complete(op, operation="orders.report", result=RESULT) == "completed"
        record = await store.get(op)
        assert record is not None
        assert record.status == "succeeded"
        assert record.done
        assert record.result == RESULT
        assert record.error is None
        assert record.completed_at_ms is not None

    async def test_complete_with_an_error(self, store: OperationsStore) -> None:
        op = new_id()
        await store.create(op, owner="alice", route="r", operation="orders.report")
        error = error_body("out_of_stock", "nothing left", True)
        assert await store.complete(op, operation="orders.report", error=error) == "completed"
        record = await store.get(op)
        assert record is not None
        assert record.status == "failed"
        assert record.result is None
        assert record.error == {"code": "out_of_stock", "message": "nothing left",
                                "retriable": True}

    async def test_a_second_completion_changes_nothing(self, store: OperationsStore) -> None:
        op = new_id()
        await store.create(op, owner="alice", route="r", operation="orders.report")
        assert await store.complete(op, operation="orders.report", result={"n": 1}) == "completed"
        assert await store.complete(op, operation="orders.report", result={"n": 2}) == "duplicate"
        assert await store.complete(op, operation="orders.report",
                                    error=error_body("x", "y", False)) == "duplicate"
        record = await store.get(op)
        assert record is not None
        assert record.status == "succeeded"
        assert record.result == {"n": 1}

    async def test_racing_completions_write_once(self, store: OperationsStore) -> None:
        op = new_id()
        await store.create(op, owner="alice", route="r", operation="orders.report")
        outcomes = await asyncio.gather(*(
            store.complete(op, operation="orders.report", result={"n": n}) for n in range(8)))
        assert sorted(outcomes) == ["completed"] + ["duplicate"] * 7
        record = await store.get(op)
        assert record is not None
        assert record.result == {"n": outcomes.index("completed")}

    async def test_completing_an_unknown_operation(self, store: OperationsStore) -> None:
        assert await store.complete(new_id(), operation="orders.report", result={}) == "unknown"

    async def test_a_reply_for_another_operation_is_a_mismatch(
        self, store: OperationsStore
    ) -> None:
        op = new_id()
        await store.create(op, owner="alice", route="r", operation="orders.report")
        assert await store.complete(op, operation="inventory.stock", result={}) == "mismatch"
        record = await store.get(op)
        assert record is not None
        assert record.status == "pending"

    async def test_overdue_reads_failed_and_refuses_a_late_result(
        self, store: OperationsStore
    ) -> None:
        op = new_id()
        await store.create(op, owner="alice", route="r", operation="orders.report",
                           deadline_ms=now_ms() - LATE_GRACE_MS - 1)
        record = await store.get(op)
        assert record is not None
        assert record.status == "failed"
        assert record.error is not None
        assert record.error["code"] == "deadline_exceeded"
        assert await store.complete(op, operation="orders.report", result={}) == "late"

    async def test_within_the_deadline_completes(self, store: OperationsStore) -> None:
        op = new_id()
        await store.create(op, owner="alice", route="r", operation="orders.report",
                           deadline_ms=now_ms() + 60_000)
        assert await store.complete(op, operation="orders.report", result={}) == "completed"

    async def test_expired_records_are_gone_and_may_be_created_again(
        self, store: OperationsStore
    ) -> None:
        op = new_id()
        await store.create(op, owner="alice", route="r", operation="orders.report",
                           expires_at_s=now_ms() // 1000 - 1)
        assert await store.get(op) is None
        assert await store.complete(op, operation="orders.report", result={}) == "unknown"
        await store.create(op, owner="bob", route="r", operation="orders.report")
        record = await store.get(op)
        assert record is not None
        assert record.owner == "bob"

    async def test_bad_ids_are_refused(self, store: OperationsStore) -> None:
        with pytest.raises(OperationsRefused):
            await store.get("")
        with pytest.raises(OperationsRefused):
            await store.create("x" * 200, owner="a", route="r", operation="orders.report")


class TestInMemoryStore(StoreContract):
    @pytest.fixture
    def store(self) -> InMemoryOperationsStore:
        return InMemoryOperationsStore()


# --- pure pieces ---------------------------------------------------------------------------


def _record(**fields: Any) -> OperationRecord:
    base = new_record("op1", owner="a", route="r", operation="orders.report", now_ms=1_000_000,
                      expires_at_s=10_000, deadline_ms=None)
    return base if not fields else OperationRecord(**{**base.__dict__, **fields})


def test_view_and_decide_agree_on_expiry_and_deadline() -> None:
    record = _record(deadline_ms=2_000_000)
    assert view(record, 2_000_000 + LATE_GRACE_MS - 1) == record
    assert decide_completion(record, "orders.report", 2_000_000 + LATE_GRACE_MS - 1) is None
    late = view(record, 2_000_000 + LATE_GRACE_MS)
    assert late is not None
    assert late.status == "failed"
    assert decide_completion(record, "orders.report", 2_000_000 + LATE_GRACE_MS) == "late"
    assert view(record, 10_000_000) is None
    assert decide_completion(record, "orders.report", 10_000_000) == "unknown"
    assert decide_completion(None, "orders.report", 0) == "unknown"
    assert decide_completion(_record(status="failed"), "orders.report", 0) == "duplicate"
    assert decide_completion(record, "orders.create", 0) == "mismatch"


def test_default_expiry_is_a_day_after_creation() -> None:
    record = new_record("op", owner="a", route="r", operation="o.p", now_ms=5_000_000,
                        expires_at_s=None, deadline_ms=None)
    assert record.expires_at_s == 5_000 + 24 * 3600


def test_items_round_trip() -> None:
    pending = _record(deadline_ms=123)
    assert from_item(to_item(pending)) == pending
    done = {**to_item(pending), **_completion_values(RESULT, None),
            "completed_at_ms": {"N": "7"}}
    record = from_item(done)
    assert record is not None
    assert record.status == "succeeded"
    assert record.result == RESULT
    failed = from_item({**to_item(pending), **_completion_values(
        None, error_body("boom", "m" * 5000, False))})
    assert failed is not None
    assert failed.error is not None
    assert failed.error["code"] == "boom"
    assert len(failed.error["message"]) == 1024
    assert from_item(None) is None
    with pytest.raises(OperationsRefused):
        from_item({"id": {"S": "x"}, "status": {"S": "weird"}})


def test_a_result_that_is_not_json_is_refused() -> None:
    with pytest.raises(OperationsRefused):
        _completion_values({"n": float("nan")}, None)


def test_store_from_env() -> None:
    assert operations_store_from_env({}) is None
    store = operations_store_from_env({"MESH_OPERATIONS_TABLE": "t1"})
    assert store is not None
    assert getattr(store, "table_name", None) == "t1"


def test_table_and_stack_part() -> None:
    props = operations_table("t")["Properties"]
    assert props["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert set(operations_access("T")["Action"]) == {
        "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"}
    settings = Settings.resolve()
    stack = part({}, settings, None)  # type: ignore[arg-type]  # the part ignores the mesh
    assert stack.gateway_env == {"MESH_OPERATIONS_TABLE": {"Ref": "OperationsTable"}}
    assert stack.resources["OperationsTable"]["Properties"]["TableName"] == (
        f"{settings.stack_name}-operations")
    assert stack.outputs == {"OperationsTableName": {"Value": {"Ref": "OperationsTable"}}}
    assert stack.role_statements == [operations_access("OperationsTable")]
