"""The async status route (``GET /v1/operations/{id}``) goes through the edge's guard like
every route: its own per-caller bucket (``edge.status_rate_limit``), the API key's usage plan
and its daily quota. The limiter runs on a frozen clock, so counts are exact."""

from __future__ import annotations

from typing import Any

import pytest

from bus.policy.edge import StatusRateLimit
from bus.policy.model import Policy
from functions.gateway.app import EdgeDeps, LazyMeshClient, create_app
from functions.gateway.auth.api_keys import UsagePlan
from functions.gateway.guard import EdgeGuard
from functions.gateway.ratelimit.quota import DailyQuotaExceeded
from tests.unit.edge_support import (
    PROJECT,
    REPORTS,
    Edge,
    FrozenClockLimiter,
    MemoryOperations,
    OperationRow,
    assert_problem,
    bearer,
    claims,
    edge,
    jwt_verifier,
    with_route,
)

STATUS_KEY = "route:GET /v1/operations/{operation_id}"
OPERATION_ID = "0" * 31 + "1"


def limited(policy: Policy, per_second: float, burst: int) -> Policy:
    assert policy.edge is not None
    return policy.model_copy(update={"edge": policy.edge.model_copy(update={
        "status_rate_limit": StatusRateLimit(per_second=per_second, burst=burst)})})


def read(gw: Edge, headers: dict[str, str], operation_id: str = OPERATION_ID) -> Any:
    return gw.http.get(f"/v1/operations/{operation_id}", headers=headers)


def own(gw: Edge, owner: str) -> None:
    gw.operations.rows[OPERATION_ID] = OperationRow(owner)


def test_status_reads_are_always_limited() -> None:
    assert PROJECT.edge is not None
    assert PROJECT.edge.status_rate_limit == StatusRateLimit(per_second=1.0, burst=10)
    assert StatusRateLimit() == StatusRateLimit(per_second=5.0, burst=20)  # when unset


def test_status_reads_beyond_the_burst_get_429_with_retry_after() -> None:
    limiter = FrozenClockLimiter()
    with edge(limited(PROJECT, 0.5, 3), limiter=limiter, workers=False) as gw:
        own(gw, "alice")
        alice = bearer(claims(sub="alice", scope="reports:write"))
        answers = [read(gw, alice) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert [a.headers["ratelimit-remaining"] for a in answers] == ["2", "1", "0"]
        refused = read(gw, alice)
        assert_problem(refused, 429, "rate_limited")
        assert refused.headers["retry-after"] == "2"  # one token back in 2 s at 0.5/s
        # An unknown id costs a token too: the limit is on reads, not on hits.
        assert_problem(read(gw, alice, "f" * 32), 429, "rate_limited")
        # Another caller has a bucket of its own (and gets 404 for alice's operation).
        assert_problem(read(gw, bearer(claims(sub="bob", scope="reports:write"))), 404)
        limiter.now_ms += 2000
        assert read(gw, alice).status_code == 200
        # Polling does not eat the submitting route's bucket.
        assert gw.produced() == {}
    assert set(limiter.keys) == {f"{STATUS_KEY}|user:alice", f"{STATUS_KEY}|user:bob"}


def test_an_unauthenticated_read_is_refused_before_any_bucket() -> None:
    limiter = FrozenClockLimiter()
    with edge(limited(PROJECT, 0.5, 3), limiter=limiter, workers=False) as gw:
        assert_problem(read(gw, {}), 401)
    assert limiter.keys == []


class CountingQuota:
    def __init__(self, quota_left: int) -> None:
        self.left = quota_left
        self.consumed: list[str] = []

    async def consume(self, key_id: str, quota: int) -> object:
        self.consumed.append(key_id)
        if self.left <= 0:
            raise DailyQuotaExceeded(quota=quota, retry_after_s=3600)
        self.left -= 1
        return None


def test_status_reads_count_against_the_keys_usage_plan_and_daily_quota() -> None:
    api_key_reports = with_route(REPORTS, auth="api_key", scopes=())
    limiter, quota = FrozenClockLimiter(), CountingQuota(quota_left=4)
    with edge(limited(api_key_reports, 1000.0, 1000), limiter=limiter, quota=quota,
              workers=False) as gw:
        key, key_id = gw.issue_key("partner-poller", UsagePlan(rate_per_s=0.5, burst=2,
                                                               daily_quota=100))
        own(gw, "partner-poller")
        headers = {"x-api-key": key}
        first = read(gw, headers)
        assert first.status_code == 200, first.text
        assert read(gw, headers).status_code == 200
        refused = read(gw, headers)  # the plan's burst of 2, though the route allows 1000
        assert_problem(refused, 429, "rate_limited")
        assert refused.headers["ratelimit-limit"] == "2"
        assert f"key:{key_id}" in limiter.keys
        limiter.now_ms += 60_000  # the plan's bucket is full again; the quota is not
        assert [read(gw, headers).status_code for _ in range(2)] == [200, 200]
        limiter.now_ms += 60_000
        used_up = read(gw, headers)  # four reads counted: the quota of this key is gone
        assert_problem(used_up, 429, "quota_exceeded")
        assert used_up.headers["retry-after"] == "3600"
    assert quota.consumed == [key_id] * 5


def test_an_edge_without_a_rate_limit_store_refuses_to_build_a_status_route() -> None:
    guard = EdgeGuard(jwt=jwt_verifier())  # no limiter: the status route cannot be limited

    async def no_mesh() -> Any:
        raise AssertionError("not called")

    with pytest.raises(ValueError, match="rate limited"):
        create_app(PROJECT, EdgeDeps(mesh=LazyMeshClient(no_mesh), guard=guard,
                                     operations=MemoryOperations()))
