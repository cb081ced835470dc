"""The idempotency store on the real DynamoDB API of the AWS emulator.

The behaviour cases are ``tests.unit.test_idempotency.StoreContract``, the same ones the
in-memory store passes; the tests below them cover what only DynamoDB has (item schema,
TTL, errors, separate workers racing).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from botocore.config import Config

from bus.delivery.idempotency import (
    Claim,
    IdempotencyError,
    IdempotencyRefused,
    expiry_s,
)
from functions.shared.dynamodb_idempotency import DynamoDBIdempotencyStore
from infra.settings import Settings
from infra.stack.tables import idempotency_table
from proof.procs import free_port
from tests.support import scratch_table
from tests.unit.test_idempotency import KEEP_MS, LEASE_MS, RESULT, StoreContract

pytestmark = pytest.mark.integration

WAIT_S = 60.0


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture(scope="module")
def table(dynamodb: Any) -> Iterator[str]:
    """A fresh table defined by ``infra.stack.tables`` (the API takes the same property names as
    CloudFormation), deleted afterwards."""
    with scratch_table(dynamodb, "idempotency", idempotency_table(), wait_s=int(WAIT_S)) as name:
        yield name


@pytest.fixture
def store(table: str, infra_settings: Settings) -> DynamoDBIdempotencyStore:
    return DynamoDBIdempotencyStore(table, client_args=infra_settings.aws_client_args())


class TestDynamoDBStore(StoreContract):
    racers: ClassVar[int] = 20

    @pytest.fixture
    def t0(self) -> int:
        # The wall clock, not a fixed time: the emulator (like DynamoDB) deletes items whose
        # ``expires_at`` is in the real past, which would make records vanish mid-test.
        return wall_clock_ms()


def _raw(dynamodb: Any, table: str, key: str) -> dict[str, Any]:
    item: dict[str, Any] = dynamodb.get_item(
        TableName=table, Key={"id": {"S": key}}, ConsistentRead=True
    )["Item"]
    return item


async def test_items_follow_the_documented_schema(
    store: DynamoDBIdempotencyStore, dynamodb: Any, table: str
) -> None:
    key, t0 = f"msg-{uuid.uuid4().hex}", wall_clock_ms()
    claim = await store.begin(key, now_ms=t0, lease_ms=LEASE_MS)
    assert claim.token is not None
    assert _raw(dynamodb, table, key) == {
        "id": {"S": key},
        "status": {"S": "IN_PROGRESS"},
        "token": {"S": claim.token},
        "lease_until_ms": {"N": str(t0 + LEASE_MS)},
        "expires_at": {"N": str(expiry_s(t0 + LEASE_MS))},
    }
    await store.complete(key, RESULT, token=claim.token, now_ms=t0 + 1, keep_ms=KEEP_MS)
    assert _raw(dynamodb, table, key) == {
        "id": {"S": key},
        "status": {"S": "COMPLETED"},
        "result": {"B": RESULT},
        "expires_at": {"N": str(expiry_s(t0 + 1 + KEEP_MS))},
    }
    ttl = dynamodb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert ttl["TimeToLiveStatus"] == "ENABLED"
    assert ttl["AttributeName"] == "expires_at"


def test_separate_workers_racing_on_one_key_claim_exactly_once(
    table: str, infra_settings: Settings
) -> None:
    """20 threads, each a worker with its own store and client, start together."""
    key, t0, workers = f"msg-{uuid.uuid4().hex}", wall_clock_ms(), 20
    start = threading.Barrier(workers, timeout=WAIT_S)
    claims: list[Claim] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker() -> None:
        store = DynamoDBIdempotencyStore(table, client_args=infra_settings.aws_client_args())
        store.client()  # created before the start line, so the requests really race
        try:
            start.wait()
            claim = asyncio.run(store.begin(key, now_ms=t0, lease_ms=LEASE_MS))
        except BaseException as exc:
            with lock:
                errors.append(exc)
            return
        with lock:
            claims.append(claim)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert Counter(c.status for c in claims) == {"claimed": 1, "in_progress": workers - 1}


async def test_requests_run_off_the_event_loop_thread(store: DynamoDBIdempotencyStore) -> None:
    threads: list[int] = []

    def record_thread(**_: Any) -> None:
        threads.append(threading.get_ident())

    store.client().meta.events.register("before-call.dynamodb", record_thread)
    key, t0 = f"msg-{uuid.uuid4().hex}", wall_clock_ms()
    claim = await store.begin(key, now_ms=t0, lease_ms=LEASE_MS)
    assert claim.token is not None
    await store.complete(key, RESULT, token=claim.token, now_ms=t0, keep_ms=KEEP_MS)
    await store.release(key, token=claim.token)
    assert len(threads) == 3
    assert threading.get_ident() not in threads


async def test_without_the_old_item_in_the_error_a_consistent_read_is_used(
    store: DynamoDBIdempotencyStore,
) -> None:
    """Backends that ignore ReturnValuesOnConditionCheckFailure still answer duplicates."""
    dropped: list[str] = []

    def drop_return_values(params: dict[str, Any], **_: Any) -> None:
        if params.pop("ReturnValuesOnConditionCheckFailure", None) is not None:
            dropped.append("PutItem")

    store.client().meta.events.register(
        "provide-client-params.dynamodb.PutItem", drop_return_values
    )
    key, t0 = f"msg-{uuid.uuid4().hex}", wall_clock_ms()
    claim = await store.begin(key, now_ms=t0, lease_ms=LEASE_MS)
    assert claim.token is not None
    in_progress = await store.begin(key, now_ms=t0 + 1, lease_ms=LEASE_MS)
    assert in_progress == Claim("in_progress", lease_until_ms=t0 + LEASE_MS)
    await store.complete(key, RESULT, token=claim.token, now_ms=t0 + 2, keep_ms=KEEP_MS)
    assert await store.begin(key, now_ms=t0 + 3, lease_ms=LEASE_MS) == Claim(
        "completed", result=RESULT
    )
    assert dropped == ["PutItem"] * 3


async def test_a_malformed_record_is_refused(
    store: DynamoDBIdempotencyStore, dynamodb: Any, table: str
) -> None:
    key = f"msg-{uuid.uuid4().hex}"
    dynamodb.put_item(TableName=table, Item={
        "id": {"S": key}, "status": {"S": "SOMETHING_ELSE"},
        "expires_at": {"N": str(expiry_s(wall_clock_ms() + KEEP_MS))},
    })
    with pytest.raises(IdempotencyRefused, match="malformed"):
        await store.begin(key, now_ms=wall_clock_ms(), lease_ms=LEASE_MS)


async def test_a_missing_table_is_refused_not_retried(infra_settings: Settings) -> None:
    store = DynamoDBIdempotencyStore(
        f"itest-no-such-table-{uuid.uuid4().hex[:10]}",
        client_args=infra_settings.aws_client_args(),
    )
    with pytest.raises(IdempotencyRefused, match="ResourceNotFoundException") as raised:
        await store.begin("msg-1", now_ms=wall_clock_ms(), lease_ms=LEASE_MS)
    assert raised.value.retriable is False


async def test_a_result_too_large_for_an_item_is_refused(
    store: DynamoDBIdempotencyStore,
) -> None:
    key, t0 = f"msg-{uuid.uuid4().hex}", wall_clock_ms()
    claim = await store.begin(key, now_ms=t0, lease_ms=LEASE_MS)
    assert claim.token is not None
    with pytest.raises(IdempotencyRefused, match="over the 350000 the store keeps"):
        await store.complete(key, b"x" * 500_000, token=claim.token, now_ms=t0, keep_ms=KEEP_MS)
    assert await store.release(key, token=claim.token)


async def test_an_unreachable_store_is_a_retriable_error(infra_settings: Settings) -> None:
    args = {
        **infra_settings.aws_client_args(),
        "endpoint_url": f"http://127.0.0.1:{free_port()}",
        "config": Config(connect_timeout=1, read_timeout=1, retries={"max_attempts": 1}),
    }
    store = DynamoDBIdempotencyStore("any-table", client_args=args)
    with pytest.raises(IdempotencyError) as raised:
        await store.begin("msg-1", now_ms=wall_clock_ms(), lease_ms=LEASE_MS)
    assert not isinstance(raised.value, IdempotencyRefused)
    assert raised.value.retriable is True
