"""Token buckets on the real DynamoDB API of the AWS emulator.

The central property: clients racing on one bucket, each with its own store and client (as
separate Lambda instances would), are together granted no more than the bucket allows,
``burst + rate * elapsed`` (+1 for the boundary). A read-modify-write race that lost an
update would let two grants consume the same token and break that bound.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.config import Config

from functions.gateway.ratelimit import BucketState, Limit, bucket_key
from functions.gateway.ratelimit.dynamodb import (
    DynamoDBRateLimitStore,
    RateLimitContention,
    RateLimitError,
    RateLimitRefused,
    wall_clock_ms,
)
from functions.gateway.ratelimit.table import rate_limit_table
from infra.settings import Settings
from proof.procs import free_port
from tests.support import scratch_table

pytestmark = pytest.mark.integration

WAIT_S = 60.0


@pytest.fixture(scope="module")
def ddb(infra_settings: Settings) -> Any:
    return boto3.session.Session().client(
        "dynamodb", **infra_settings.aws_client_args()
    )


@pytest.fixture(scope="module")
def table(ddb: Any) -> Iterator[str]:
    """A fresh table defined by ``rate_limit_table``, deleted afterwards."""
    with scratch_table(ddb, "ratelimit", rate_limit_table(), wait_s=int(WAIT_S)) as name:
        yield name


def new_store(table: str, settings: Settings, **kwargs: Any) -> DynamoDBRateLimitStore:
    return DynamoDBRateLimitStore(table, client_args=settings.aws_client_args(), **kwargs)


@pytest.fixture
def store(table: str, infra_settings: Settings) -> DynamoDBRateLimitStore:
    return new_store(table, infra_settings)


def fresh_key() -> str:
    return bucket_key(route="POST /v1/orders", key=uuid.uuid4().hex)


@dataclass
class Tally:
    granted: int = 0
    denied: int = 0
    contended: int = 0
    errors: list[BaseException] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def hammer(
    table: str, settings: Settings, key: str, limit: Limit, *, clients: int, takes: int
) -> tuple[Tally, int]:
    """``clients`` threads, each with its own store and event loop, take from ``key`` as
    fast as they can, ``takes`` times each (by count, not for a time: a loaded machine makes
    them slower, never fewer). Returns the tally and the elapsed wall-clock ms."""
    tally = Tally()
    start = threading.Barrier(clients + 1, timeout=WAIT_S)

    def client() -> None:
        store = new_store(table, settings)
        store.client()  # created before the start line, so the requests really race

        async def run() -> None:
            for _ in range(takes):
                try:
                    decision = await store.take(key, limit)
                except RateLimitContention:
                    with tally.lock:
                        tally.contended += 1
                    continue
                with tally.lock:
                    if decision.allowed:
                        tally.granted += 1
                    else:
                        tally.denied += 1

        try:
            start.wait()
            asyncio.run(run())
        except BaseException as exc:
            with tally.lock:
                tally.errors.append(exc)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    began = wall_clock_ms()  # before any request's clock reading
    start.wait()
    for thread in threads:
        thread.join(WAIT_S * 2)
    elapsed_ms = wall_clock_ms() - began
    assert not any(thread.is_alive() for thread in threads)
    return tally, elapsed_ms


def test_concurrent_clients_together_never_exceed_the_bucket(
    table: str, infra_settings: Settings
) -> None:
    limit = Limit(rate=5, burst=10)
    key = fresh_key()
    tally, elapsed_ms = hammer(table, infra_settings, key, limit, clients=8, takes=15)
    assert tally.errors == []
    bound = limit.burst + limit.rate * elapsed_ms / 1000 + 1
    assert tally.granted <= bound, (tally, elapsed_ms)
    assert tally.granted >= limit.burst  # the burst itself was available to them
    # they did hammer past the limit: 120 takes outrun the bound unless they took ~20 s
    assert tally.denied > 0, (tally, elapsed_ms)


async def test_separate_keys_do_not_affect_each_other(
    store: DynamoDBRateLimitStore,
) -> None:
    limit = Limit(rate=1, burst=3)
    a, b, now = fresh_key(), fresh_key(), wall_clock_ms()
    assert [(await store.take(a, limit, now_ms=now)).allowed for _ in range(4)] == [
        True, True, True, False,
    ]
    assert [(await store.take(b, limit, now_ms=now)).allowed for _ in range(4)] == [
        True, True, True, False,
    ]
    assert await store.peek(a, limit, now_ms=now) == BucketState(0, now)


async def test_items_follow_the_documented_schema_with_a_ttl(
    store: DynamoDBRateLimitStore, ddb: Any, table: str
) -> None:
    limit = Limit(rate=2, burst=5)
    key, now = fresh_key(), wall_clock_ms()
    first = await store.take(key, limit, now_ms=now)
    assert first.allowed
    assert first.headers()["RateLimit-Remaining"] == "4"
    await store.take(key, limit, now_ms=now)
    item = ddb.get_item(TableName=table, Key={"bucket": {"S": key}}, ConsistentRead=True)["Item"]
    full_at_ms = now + 1000  # two tokens at 2/s
    assert item == {
        "bucket": {"S": key},
        "tokens_milli": {"N": "3000"},
        "updated_ms": {"N": str(now)},
        "version": {"N": "2"},
        "expires_at": {"N": str(-(-full_at_ms // 1000) + 60)},
    }
    ttl = ddb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert ttl["TimeToLiveStatus"] == "ENABLED"
    assert ttl["AttributeName"] == "expires_at"


async def test_a_denial_writes_nothing(
    store: DynamoDBRateLimitStore, ddb: Any, table: str
) -> None:
    limit = Limit(rate=1, burst=1)
    key, now = fresh_key(), wall_clock_ms()
    assert (await store.take(key, limit, now_ms=now)).allowed
    denied = await store.take(key, limit, now_ms=now + 10)
    assert not denied.allowed
    assert denied.headers()["Retry-After"] == "1"
    item = ddb.get_item(TableName=table, Key={"bucket": {"S": key}}, ConsistentRead=True)["Item"]
    assert item["version"] == {"N": "1"}


def test_a_write_that_lost_the_race_is_recomputed_from_the_winner(
    table: str, infra_settings: Settings
) -> None:
    """Another instance takes a token between this store's read and its write: the
    conditional write fails, and the retry starts from the winner's state."""
    limit = Limit(rate=1, burst=5)
    key, now = fresh_key(), wall_clock_ms()
    loser, winner = new_store(table, infra_settings), new_store(table, infra_settings)
    asyncio.run(loser.take(key, limit, now_ms=now))  # the bucket exists: 4 left
    interfered: list[int] = []

    def interfere(**_: Any) -> None:
        if not interfered:
            interfered.append(1)
            asyncio.run(winner.take(key, limit, now_ms=now))

    loser.client().meta.events.register("before-call.dynamodb.PutItem", interfere)
    decision = asyncio.run(loser.take(key, limit, now_ms=now))
    assert interfered == [1]
    assert decision.allowed
    assert decision.remaining == 2  # 5 - 3 grants, none lost
    assert asyncio.run(winner.peek(key, limit, now_ms=now)) == BucketState(2000, now)


def test_conflicts_past_max_attempts_are_a_retriable_contention_error(
    table: str, infra_settings: Settings
) -> None:
    limit = Limit(rate=1, burst=5)
    key, now = fresh_key(), wall_clock_ms()
    loser = new_store(table, infra_settings, max_attempts=1)
    winner = new_store(table, infra_settings)

    def interfere(**_: Any) -> None:
        asyncio.run(winner.take(key, limit, now_ms=now))

    loser.client().meta.events.register("before-call.dynamodb.PutItem", interfere)
    with pytest.raises(RateLimitContention, match="changed 1 times") as raised:
        asyncio.run(loser.take(key, limit, now_ms=now))
    assert raised.value.retriable is True


async def test_a_malformed_item_is_refused(
    store: DynamoDBRateLimitStore, ddb: Any, table: str
) -> None:
    key = fresh_key()
    ddb.put_item(TableName=table, Item={"bucket": {"S": key}, "tokens_milli": {"S": "x"}})
    with pytest.raises(RateLimitRefused, match="malformed"):
        await store.take(key, Limit(rate=1, burst=1))


async def test_a_missing_table_is_refused_not_retried(infra_settings: Settings) -> None:
    store = new_store(f"itest-no-such-table-{uuid.uuid4().hex[:10]}", infra_settings)
    with pytest.raises(RateLimitRefused, match="ResourceNotFoundException") as raised:
        await store.take("key:k", Limit(rate=1, burst=1))
    assert raised.value.retriable is False


async def test_an_unreachable_store_is_a_retriable_error(infra_settings: Settings) -> None:
    args = {
        **infra_settings.aws_client_args(),
        "endpoint_url": f"http://127.0.0.1:{free_port()}",
        "config": Config(connect_timeout=1, read_timeout=1, retries={"max_attempts": 1}),
    }
    store = DynamoDBRateLimitStore("any-table", client_args=args)
    with pytest.raises(RateLimitError) as raised:
        await store.take("key:k", Limit(rate=1, burst=1))
    assert not isinstance(raised.value, RateLimitRefused)
    assert raised.value.retriable is True


async def test_requests_run_off_the_event_loop_thread(store: DynamoDBRateLimitStore) -> None:
    threads: list[int] = []

    def record_thread(**_: Any) -> None:
        threads.append(threading.get_ident())

    store.client().meta.events.register("before-call.dynamodb", record_thread)
    await store.take(fresh_key(), Limit(rate=1, burst=1))
    assert len(threads) == 2  # the read and the write
    assert threading.get_ident() not in threads
