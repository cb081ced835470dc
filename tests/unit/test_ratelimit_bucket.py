"""Token-bucket arithmetic with a fake clock: exact values, no sleeping."""

from __future__ import annotations

import pytest

from functions.gateway.ratelimit import (
    BucketState,
    Decision,
    Limit,
    bucket_key,
    refill,
    take,
)
from functions.gateway.ratelimit.table import rate_limit_access, rate_limit_table

T0 = 1_700_000_000_000
LIMIT = Limit(rate=2, burst=5)  # one token every 500 ms, five at once


class FakeClock:
    def __init__(self, now_ms: int = T0) -> None:
        self.now_ms = now_ms

    def advance(self, ms: int) -> int:
        self.now_ms += ms
        return self.now_ms


class Bucket:
    """One bucket driven through ``take``, the way a store would keep its state."""

    def __init__(self, limit: Limit, clock: FakeClock) -> None:
        self.limit, self.clock = limit, clock
        self.state: BucketState | None = None

    def take(self, cost: int = 1) -> Decision:
        decision = take(self.state, self.limit, self.clock.now_ms, cost)
        self.state = decision.state
        return decision


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def bucket(clock: FakeClock) -> Bucket:
    return Bucket(LIMIT, clock)


def test_a_new_bucket_is_full_and_allows_a_burst(bucket: Bucket) -> None:
    decisions = [bucket.take() for _ in range(5)]
    assert [d.allowed for d in decisions] == [True] * 5
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0]
    assert [d.retry_after_ms for d in decisions] == [0] * 5
    assert bucket.state == BucketState(0, T0)


def test_past_the_burst_it_denies_with_the_exact_wait(bucket: Bucket) -> None:
    for _ in range(5):
        bucket.take()
    denied = bucket.take()
    assert not denied.allowed
    assert denied.remaining == 0
    assert denied.retry_after_ms == 500
    assert denied.retry_after_s == 1
    assert denied.reset_ms == 2500
    assert denied.state == BucketState(0, T0)  # a denial consumes nothing


def test_tokens_refill_at_the_rate(bucket: Bucket, clock: FakeClock) -> None:
    for _ in range(5):
        bucket.take()
    clock.advance(499)
    partial = bucket.take()
    assert not partial.allowed
    assert partial.state == BucketState(998, T0 + 499)
    assert partial.retry_after_ms == 1
    clock.advance(1)
    assert bucket.take().allowed
    assert bucket.state == BucketState(0, T0 + 500)
    clock.advance(1250)  # 2.5 tokens
    assert [bucket.take().allowed for _ in range(3)] == [True, True, False]
    assert bucket.state == BucketState(500, T0 + 1750)


def test_refill_is_capped_at_the_burst(bucket: Bucket, clock: FakeClock) -> None:
    bucket.take()
    clock.advance(3_600_000)
    assert [bucket.take().allowed for _ in range(6)] == [True] * 5 + [False]


def test_a_clock_behind_the_bucket_refills_nothing_and_never_rewinds() -> None:
    state = BucketState(1000, T0)
    assert refill(state, LIMIT, T0 - 10_000) == state
    decision = take(BucketState(0, T0), LIMIT, T0 - 100)
    assert not decision.allowed
    assert decision.state == BucketState(0, T0)
    assert decision.retry_after_ms == 600  # 100 ms of clock lag + 500 ms for a token


def test_cost_takes_several_tokens(bucket: Bucket, clock: FakeClock) -> None:
    assert bucket.take(cost=3).remaining == 2
    denied = bucket.take(cost=3)
    assert not denied.allowed
    assert denied.retry_after_ms == 500
    clock.advance(500)
    assert bucket.take(cost=3).allowed
    with pytest.raises(ValueError, match="exceeds the burst"):
        bucket.take(cost=6)
    with pytest.raises(ValueError, match="cost"):
        bucket.take(cost=0)


def test_a_fractional_rate_rounds_in_the_callers_disfavour() -> None:
    limit = Limit(rate=0.25, burst=1)  # a token every 4000 ms; 1 milli-token every 4 ms
    empty = BucketState(0, T0 + 1)  # T0 + 1 is between two milli-token ticks
    denied = take(empty, limit, T0 + 1)
    assert denied.retry_after_ms == 3999
    assert not take(empty, limit, T0 + 3999).allowed
    assert take(empty, limit, T0 + 4000).allowed


def test_frequent_requests_at_a_fractional_rate_lose_no_refill() -> None:
    """Polling every millisecond gains exactly what one long wait does (no starvation)."""
    limit = Limit(rate=0.25, burst=1)
    state: BucketState | None = BucketState(0, T0 + 1)
    allowed_at = None
    for now in range(T0 + 2, T0 + 5000):
        decision = take(state, limit, now)
        state = decision.state
        if decision.allowed:
            allowed_at = now
            break
    assert allowed_at == T0 + 4000


def test_headers_when_allowed(bucket: Bucket) -> None:
    assert bucket.take().headers() == {
        "RateLimit-Limit": "5",
        "RateLimit-Remaining": "4",
        "RateLimit-Reset": "1",  # 500 ms until full again, rounded up
    }


def test_headers_when_denied(bucket: Bucket, clock: FakeClock) -> None:
    for _ in range(5):
        bucket.take()
    clock.advance(100)
    assert bucket.take().headers() == {
        "RateLimit-Limit": "5",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "3",  # 2400 ms
        "Retry-After": "1",  # 400 ms, rounded up to whole seconds
    }


def test_retry_after_is_rounded_up_to_whole_seconds() -> None:
    slow = Limit(rate=0.5, burst=1)
    decision = take(BucketState(0, T0), slow, T0 + 1)
    assert decision.retry_after_ms == 1999
    assert decision.headers()["Retry-After"] == "2"


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (float("inf"), 1), (1, 0)])
def test_invalid_limits_are_rejected(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        Limit(rate=rate, burst=burst)


def test_bucket_keys() -> None:
    assert bucket_key(route="POST /v1/orders", key="abc") == "route:POST /v1/orders|key:abc"
    assert bucket_key(user="u1", route="GET /x") == "route:GET /x|user:u1"
    assert bucket_key(key="k") == "key:k"
    with pytest.raises(ValueError, match="at least one"):
        bucket_key()
    with pytest.raises(ValueError, match="separates"):
        bucket_key(key="a|b")


def test_the_table_resource() -> None:
    assert rate_limit_table("limits") == {
        "Type": "AWS::DynamoDB::Table",
        "Properties": {
            "TableName": "limits",
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": "bucket", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "bucket", "KeyType": "HASH"}],
            "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
        },
    }
    assert "TableName" not in rate_limit_table()["Properties"]
    assert rate_limit_access("Limits")["Action"] == ["dynamodb:GetItem", "dynamodb:PutItem"]
