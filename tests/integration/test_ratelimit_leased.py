"""Leased token buckets (issue 15) on the real DynamoDB API of the AWS emulator.

Several instances, each a ``LeasedRateLimitStore`` over its own ``DynamoDBRateLimitStore``
and client (as separate Lambda instances are), hammer one bucket from their own threads and
event loops. Together they are granted no more than the shared bucket allows,
``burst + rate * elapsed`` (+1 for the boundary), although they asked it far less often than
they admitted (leases of several tokens), and a lease refused by a store that is not there
is an error (the guard answers 503), never a grant.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from functions.gateway.ratelimit import Limit, bucket_key
from functions.gateway.ratelimit.dynamodb import (
    DynamoDBRateLimitStore,
    RateLimitContention,
    RateLimitRefused,
    wall_clock_ms,
)
from functions.gateway.ratelimit.leased import LeasedRateLimitStore, lease_size
from functions.gateway.ratelimit.table import rate_limit_table
from infra.settings import Settings
from tests.support import scratch_table

pytestmark = pytest.mark.integration

WAIT_S = 60.0
LIMIT = Limit(rate=100.0, burst=60)  # leases of 3


@pytest.fixture(scope="module")
def table(infra_settings: Settings) -> Iterator[str]:
    ddb: Any = boto3.session.Session().client("dynamodb", **infra_settings.aws_client_args())
    with scratch_table(ddb, "leased", rate_limit_table(), wait_s=int(WAIT_S)) as name:
        yield name


@dataclass
class Tally:
    granted: int = 0
    denied: int = 0
    leases: int = 0
    contended: int = 0
    errors: list[BaseException] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def hammer(table: str, settings: Settings, key: str, *, instances: int,
           takes: int) -> tuple[Tally, int]:
    """Each instance takes ``takes`` times as fast as it can (a count, not a duration)."""
    tally = Tally()
    start = threading.Barrier(instances + 1, timeout=WAIT_S)

    def instance() -> None:
        shared = DynamoDBRateLimitStore(table, client_args=settings.aws_client_args())
        shared.client()
        limiter = LeasedRateLimitStore(shared)

        async def run() -> None:
            granted = denied = contended = 0
            for _ in range(takes):
                try:
                    decision = await limiter.take(key, LIMIT)
                except RateLimitContention:
                    contended += 1
                    continue
                granted += decision.allowed
                denied += not decision.allowed
            with tally.lock:
                tally.granted += granted
                tally.denied += denied
                tally.contended += contended
                tally.leases += limiter.leases

        try:
            start.wait()
            asyncio.run(run())
        except BaseException as exc:
            with tally.lock:
                tally.errors.append(exc)

    threads = [threading.Thread(target=instance, daemon=True) for _ in range(instances)]
    for thread in threads:
        thread.start()
    began = wall_clock_ms()
    start.wait()
    for thread in threads:
        thread.join(WAIT_S * 2)
    elapsed_ms = wall_clock_ms() - began
    assert not any(thread.is_alive() for thread in threads)
    return tally, elapsed_ms


def test_instances_with_leases_never_exceed_the_shared_bucket(
        table: str, infra_settings: Settings) -> None:
    assert lease_size(LIMIT) == 3
    key = bucket_key(route="POST /v1/orders", key=uuid.uuid4().hex)
    tally, elapsed_ms = hammer(table, infra_settings, key, instances=4, takes=400)
    assert tally.errors == []
    bound = LIMIT.burst + LIMIT.rate * elapsed_ms / 1000 + 1
    assert tally.granted <= bound, (tally, elapsed_ms)
    assert tally.granted >= LIMIT.burst, (tally, elapsed_ms)
    assert tally.denied > 0, (tally, elapsed_ms)  # 1,600 takes did outrun the bucket
    # Fewer calls to the table than grants: the burst alone was leased 3 tokens at a time.
    assert tally.leases < tally.granted, tally


async def test_a_lease_from_a_missing_table_is_an_error_never_a_grant(
        infra_settings: Settings) -> None:
    missing = DynamoDBRateLimitStore(f"itest-no-such-{uuid.uuid4().hex[:8]}",
                                     client_args=infra_settings.aws_client_args())
    with pytest.raises(RateLimitRefused):
        await LeasedRateLimitStore(missing).take("route:x", LIMIT)


class CountingStore(DynamoDBRateLimitStore):
    def __init__(self, table: str, settings: Settings) -> None:
        super().__init__(table, client_args=settings.aws_client_args())
        self.reads = 0

    def _read(self, key: str) -> Mapping[str, Any] | None:
        self.reads += 1
        return super()._read(key)


async def test_a_bucket_this_store_wrote_last_costs_one_call(
        table: str, infra_settings: Settings) -> None:
    """The store starts from the item it last wrote (one conditional write, no read); when
    another instance wrote in between, the write fails, and the take goes on from the item
    the failure returns: nothing is taken twice."""
    key = bucket_key(route="POST /v1/orders", key=uuid.uuid4().hex)
    now = wall_clock_ms()
    mine = CountingStore(table, infra_settings)
    for _ in range(3):
        assert (await mine.take(key, LIMIT, now_ms=now)).allowed
    assert mine.reads == 1  # the first take only
    other = DynamoDBRateLimitStore(table, client_args=infra_settings.aws_client_args())
    assert (await other.take(key, LIMIT, now_ms=now)).remaining == LIMIT.burst - 4
    decision = await mine.take(key, LIMIT, now_ms=now)  # from a stale item: the swap fails
    assert decision.allowed
    assert decision.remaining == LIMIT.burst - 5
    assert mine.reads == 1  # the failed write returned the winner's item
