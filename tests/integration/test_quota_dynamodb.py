"""Daily quotas on the real DynamoDB API of the AWS emulator, in the rate-limit table.

The central property: threads racing on one key's counter, each with its own store and
client (as separate Lambda instances would), are together granted exactly ``quota``
requests, never more. The control runs the same race against a read-modify-write counter
(read, then write read+1), synchronised so every racer reads before anyone writes, and
shows that the same check catches the lost updates such a counter makes.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from functions.gateway.ratelimit.dynamodb import RateLimitRefused
from functions.gateway.ratelimit.quota import (
    DailyQuotaExceeded,
    DynamoDBQuotaStore,
    day_bounds_ms,
    expires_at_s,
    quota_day,
    quota_key,
)
from functions.gateway.ratelimit.table import rate_limit_table
from infra.settings import Settings
from tests.support import scratch_table

pytestmark = pytest.mark.integration
THREADS = 8
ATTEMPTS = 6
JOIN_S = 60.0


@pytest.fixture(scope="module")
def table(dynamodb: Any) -> Iterator[str]:
    """A fresh table defined by ``rate_limit_table`` (the quota shares it), deleted after."""
    with scratch_table(dynamodb, "quota", rate_limit_table(), ttl=False) as name:
        yield name


def new_store(table: str, settings: Settings) -> DynamoDBQuotaStore:
    return DynamoDBQuotaStore(table, client_args=settings.aws_client_args())


def key_id() -> str:
    return uuid.uuid4().hex[:16]


async def test_grants_up_to_the_quota_then_429_until_midnight(
    table: str, infra_settings: Settings, dynamodb: Any
) -> None:
    store, kid = new_store(table, infra_settings), key_id()
    start, end = day_bounds_ms("2025-01-31")
    now = start + 3_600_000  # 01:00 UTC
    used = [(await store.consume(kid, 3, now_ms=now)).used for _ in range(3)]
    assert used == [1, 2, 3]
    with pytest.raises(DailyQuotaExceeded) as caught:
        await store.consume(kid, 3, now_ms=now)
    assert caught.value.retry_after_s == (end - now) // 1000  # 23 hours
    assert caught.value.headers()["Retry-After"] == str(23 * 3600)
    assert await store.used(kid, now_ms=now) == 3  # the refusal counted nothing
    # The item expires after its day, and the next day starts from zero.
    item = dynamodb.get_item(TableName=table, ConsistentRead=True,
                             Key={"bucket": {"S": quota_key(kid, "2025-01-31")}})["Item"]
    assert int(item["expires_at"]["N"]) == expires_at_s(now)
    assert int(item["expires_at"]["N"]) > end // 1000
    assert (await store.consume(kid, 3, now_ms=end)).used == 1
    assert quota_day(end) == "2025-02-01"


async def test_cost_counts_several_and_never_overshoots(
    table: str, infra_settings: Settings
) -> None:
    store, kid = new_store(table, infra_settings), key_id()
    assert (await store.consume(kid, 5, cost=3)).used == 3
    with pytest.raises(DailyQuotaExceeded):
        await store.consume(kid, 5, cost=3)  # 6 > 5: refused whole, not partly
    assert (await store.consume(kid, 5, cost=2)).used == 5


async def test_a_malformed_counter_fails_closed(table: str, infra_settings: Settings,
                                                dynamodb: Any) -> None:
    store, kid = new_store(table, infra_settings), key_id()
    dynamodb.put_item(TableName=table, Item={
        "bucket": {"S": quota_key(kid, quota_day(1_700_000_000_000))},
        "count": {"S": "three"}})
    # A string never compares <= a number, so the condition refuses: no grant, no error.
    with pytest.raises(DailyQuotaExceeded):
        await store.consume(kid, 10, now_ms=1_700_000_000_000)
    with pytest.raises(RateLimitRefused, match="malformed quota counter"):
        await store.used(kid, now_ms=1_700_000_000_000)


def race(attempt: Callable[[int], bool]) -> int:
    """Run ``attempt(thread)`` ATTEMPTS times in each of THREADS threads; the grants."""
    granted = [0] * THREADS
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            for _ in range(ATTEMPTS):
                granted[index] += attempt(index)
        except BaseException as exc:  # surfaced by the caller
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_S)
        assert not thread.is_alive(), "a racer did not finish in time"
    assert not errors, errors
    return sum(granted)


def test_racing_instances_never_get_more_than_the_quota(
    table: str, infra_settings: Settings
) -> None:
    quota, kid = 10, key_id()
    stores = [new_store(table, infra_settings) for _ in range(THREADS)]  # own client each
    barrier = threading.Barrier(THREADS, timeout=JOIN_S)

    def attempt(index: int) -> bool:
        barrier.wait()  # everyone fires at once, every round
        try:
            asyncio.run(stores[index].consume(kid, quota))
        except DailyQuotaExceeded:
            return False
        return True

    granted = race(attempt)
    assert quota < THREADS * ATTEMPTS  # the race asks for far more than the quota
    assert granted == quota
    assert asyncio.run(stores[0].used(kid)) == quota


def test_control_a_read_modify_write_counter_is_caught(
    table: str, infra_settings: Settings
) -> None:
    """The same race and check against a counter that reads, then writes ``read + 1``."""
    quota, key = 10, quota_key(key_id(), quota_day(1_700_000_000_000))
    clients = [boto3.session.Session().client("dynamodb", **infra_settings.aws_client_args())
               for _ in range(THREADS)]
    between = threading.Barrier(THREADS, timeout=JOIN_S)

    def attempt(index: int) -> bool:
        ddb = clients[index]
        item = ddb.get_item(TableName=table, Key={"bucket": {"S": key}},
                            ConsistentRead=True).get("Item")
        count = int(item["count"]["N"]) if item else 0
        between.wait()  # every racer has read before any writes: the lost-update window
        if count >= quota:
            return False
        ddb.put_item(TableName=table, Item={"bucket": {"S": key},
                                            "count": {"N": str(count + 1)}})
        return True

    granted = race(attempt)
    assert granted > quota  # what test_racing_instances... would have failed on
    stored = clients[0].get_item(TableName=table, Key={"bucket": {"S": key}},
                                 ConsistentRead=True)["Item"]["count"]["N"]
    assert int(stored) < granted  # updates were lost
