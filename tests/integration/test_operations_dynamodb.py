"""The async operations store on the real DynamoDB API of the AWS emulator: the same
behaviour cases as the in-memory store (``tests.unit.test_operations_store.StoreContract``),
plus the item schema and what only DynamoDB has."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from functions.shared.dynamodb_operations import DynamoDBOperationsStore
from functions.shared.operations_store import OperationsRefused
from functions.shared.operations_table import operations_table
from infra.settings import Settings
from tests.support import scratch_table
from tests.unit.test_operations_store import StoreContract

pytestmark = pytest.mark.integration
WAIT_S = 60


@pytest.fixture(scope="module")
def table(dynamodb: Any) -> Iterator[str]:
    with scratch_table(dynamodb, "operations", operations_table(), wait_s=WAIT_S) as name:
        yield name


@pytest.fixture
def store(table: str, infra_settings: Settings) -> DynamoDBOperationsStore:
    return DynamoDBOperationsStore(table, client_args=infra_settings.aws_client_args())


class TestDynamoDBStore(StoreContract):
    pass


async def test_item_schema(store: DynamoDBOperationsStore, dynamodb: Any) -> None:
    op = uuid.uuid4().hex
    await store.create(op, owner="alice", route="POST /v1/reports", operation="orders.report",
                       deadline_ms=9_999_999_999_999)
    await store.complete(op, operation="orders.report", result={"rows": [1, 2]})
    item = dynamodb.get_item(TableName=store.table_name, Key={"id": {"S": op}},
                             ConsistentRead=True)["Item"]
    assert item["status"] == {"S": "succeeded"}
    assert item["result"] == {"S": '{"rows":[1,2]}'}
    assert item["owner"] == {"S": "alice"}
    assert set(item) == {"id", "owner", "route", "operation", "status", "created_at_ms",
                         "expires_at", "deadline_ms", "completed_at_ms", "result"}


async def test_a_missing_table_is_refused_not_retried(infra_settings: Settings) -> None:
    store = DynamoDBOperationsStore(f"itest-missing-{uuid.uuid4().hex[:8]}",
                                    client_args=infra_settings.aws_client_args())
    with pytest.raises(OperationsRefused) as raised:
        await store.get(uuid.uuid4().hex)
    assert raised.value.retriable is False
