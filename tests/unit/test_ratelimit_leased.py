"""functions.gateway.ratelimit.leased: tokens leased to an instance in small batches (issue
15). A fake shared bucket (the pure ``bucket.lease`` on a clock the test moves) counts the
store calls; the properties: never more than the shared bucket holds, one store call per
lease, denials remembered only until tokens can exist again, leases that expire are dropped,
small limits taken one token at a time as before, store faults still refused 503."""

from __future__ import annotations

import pytest

from functions.gateway.guard import Caller, EdgeGuard
from functions.gateway.problems import EdgeRefusal
from functions.gateway.ratelimit.bucket import BucketState, Decision, Limit, lease, take
from functions.gateway.ratelimit.dynamodb import RateLimitError, RateLimitRefused
from functions.gateway.ratelimit.leased import (
    MAX_LEASE,
    LeasedRateLimitStore,
    lease_size,
    ms_until_tokens,
)
from tests.unit.edge_support import ORDERS
from tests.unit.edge_support import route as edge_route

KEY = "route:POST /v1/orders"
BIG = Limit(100.0, 100)  # lease 5


class Clocks:
    def __init__(self) -> None:
        self.wall_ms = 1_700_000_000_000

    def monotonic(self) -> float:
        return self.wall_ms / 1000

    def wall(self) -> int:
        return self.wall_ms


class SharedBucket:
    """One bucket every instance leases from, as the DynamoDB store keeps it."""

    def __init__(self, clocks: Clocks) -> None:
        self.clocks = clocks
        self.state: dict[str, BucketState] = {}
        self.calls = 0
        self.wants: list[int] = []
        self.granted = 0

    async def lease(self, key: str, limit: Limit, want: int) -> tuple[int, Decision]:
        self.calls += 1
        self.wants.append(want)
        granted, decision = lease(self.state.get(key), limit, self.clocks.wall_ms, want)
        if granted:
            self.state[key] = decision.state
        self.granted += granted
        return granted, decision


class Broken:
    async def lease(self, key: str, limit: Limit, want: int) -> tuple[int, Decision]:
        raise RateLimitRefused("no such table")


def store(shared: SharedBucket, clocks: Clocks, lease_ttl_s: float = 1.0) -> LeasedRateLimitStore:
    return LeasedRateLimitStore(shared, clock=clocks.monotonic, wall_ms=clocks.wall,
                                jitter=lambda: 0.0, lease_ttl_s=lease_ttl_s)


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


def test_lease_size() -> None:
    assert lease_size(Limit(1.0, 5)) == 1  # small limits: one token per request, as before
    assert lease_size(Limit(20.0, 20)) == 1
    assert lease_size(BIG) == 5
    assert lease_size(Limit(1000.0, 40)) == 2  # 1/20 of the burst
    assert lease_size(Limit(40.0, 10_000)) == 4  # 100 ms of the rate
    assert lease_size(Limit(1e6, 1_000_000)) == MAX_LEASE


async def test_one_store_call_per_lease_growing_with_demand(clocks: Clocks) -> None:
    shared = SharedBucket(clocks)
    limiter = store(shared, clocks)
    decisions = [await limiter.take(KEY, BIG) for _ in range(17)]
    assert all(d.allowed for d in decisions)
    assert shared.wants == [1, 2, 4, 5, 5]  # doubling while spent, up to lease_size
    assert [d.remaining for d in decisions[:5]] == [99, 98, 97, 96, 95]


async def test_a_trickle_on_many_instances_wastes_no_token(clocks: Clocks) -> None:
    """30 instances each see the caller once every 1.2 s: 25 requests/s in all, under the
    limit of 40/s. With fixed leases of 2, every lease would drop a token at expiry (twice
    the tokens spent per request, the caller refused well below its limit when it speeds
    up); leases that grow only with demand take exactly one token per request."""
    limit = Limit(40.0, 40)
    assert lease_size(limit) == 2
    shared = SharedBucket(clocks)
    instances = [store(shared, clocks) for _ in range(30)]
    refused = 0
    for _ in range(40):  # 48 s
        for limiter in instances:
            clocks.wall_ms += 40
            refused += not (await limiter.take(KEY, limit)).allowed
    assert refused == 0
    assert shared.granted == 40 * 30  # every token taken was spent on a request
    assert set(shared.wants) == {1}


async def test_instances_together_never_exceed_the_bucket(clocks: Clocks) -> None:
    shared = SharedBucket(clocks)
    instances = [store(shared, clocks) for _ in range(3)]
    admitted = 0
    for _ in range(100):  # time stands still: only the burst may be admitted
        for limiter in instances:
            admitted += (await limiter.take(KEY, BIG)).allowed
    assert admitted == BIG.burst
    clocks.wall_ms += 1000  # one second: rate more, no more
    for _ in range(100):
        for limiter in instances:
            admitted += (await limiter.take(KEY, BIG)).allowed
    assert admitted == BIG.burst + 100


async def test_a_denial_is_remembered_until_a_lease_can_exist(clocks: Clocks) -> None:
    shared = SharedBucket(clocks)
    limiter = store(shared, clocks)
    while (await limiter.take(KEY, BIG)).allowed:
        pass
    calls = shared.calls
    denied = await limiter.take(KEY, BIG)
    assert not denied.allowed
    assert shared.calls == calls  # answered locally
    assert denied.retry_after_ms == 50  # 5 tokens at 100/s
    clocks.wall_ms += 49
    assert not (await limiter.take(KEY, BIG)).allowed
    assert shared.calls == calls
    clocks.wall_ms += 1
    assert (await limiter.take(KEY, BIG)).allowed
    assert shared.calls == calls + 1


async def test_an_expired_lease_is_dropped(clocks: Clocks) -> None:
    shared = SharedBucket(clocks)
    limiter = store(shared, clocks, lease_ttl_s=1.0)
    await limiter.take(KEY, BIG)  # leases 5, holds 4
    clocks.wall_ms += 1000
    await limiter.take(KEY, BIG)
    assert shared.calls == 2


async def test_small_limits_decide_exactly_as_one_token_per_request(clocks: Clocks) -> None:
    small = Limit(2.0, 3)
    shared = SharedBucket(clocks)
    limiter = store(shared, clocks)
    reference: BucketState | None = None
    for step in range(40):
        clocks.wall_ms += 137 * (step % 4)
        got = await limiter.take(KEY, small)
        expected = take(reference, small, clocks.wall_ms)
        if expected.allowed:
            reference = expected.state
        assert got.allowed == expected.allowed
    assert set(shared.wants) == {1}


def test_ms_until_tokens() -> None:
    denied = take(BucketState(0, 1000), BIG, 1000)
    assert ms_until_tokens(denied, 5, 1000) == 50
    assert ms_until_tokens(denied, 1, 1000) == 10


async def test_store_faults_propagate_and_the_guard_answers_503() -> None:
    limiter = LeasedRateLimitStore(Broken())
    with pytest.raises(RateLimitError):
        await limiter.take(KEY, BIG)
    route = edge_route(ORDERS)  # rate limited per source IP in the project policy
    with pytest.raises(EdgeRefusal) as caught:
        await EdgeGuard(limiter=limiter).admit(route, Caller(None, None, "198.51.100.9"))
    assert (caught.value.status, caught.value.reason) == (503, "ratelimit_unavailable")
