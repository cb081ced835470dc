"""Rate limits of the edge app: per source IP on POST /v1/orders (the project policy's burst
100), the API key's usage plan on POST /v1/partner/orders, and a ``per: route`` bucket shared
by every caller. The limiter is ``InMemoryRateLimitStore`` on a frozen clock, so counts are
exact; a refused request is 429 problem+json with Retry-After and RateLimit-* headers and
never reaches the bus."""

from __future__ import annotations

from typing import Any

from functions.gateway.auth.api_keys import UsagePlan
from tests.unit.edge_support import (
    CLIENT_IP_HEADER,
    ORDER,
    ORDERS,
    PARTNER_ORDERS,
    PRODUCT,
    Edge,
    FrozenClockLimiter,
    assert_problem,
    bearer,
    claims,
    edge,
    route,
    with_route,
)


def _from(ip: str) -> dict[str, str]:
    return {CLIENT_IP_HEADER: ip}


def _order(gw: Edge, ip: str = "198.51.100.1", **headers: str) -> Any:
    return gw.http.post(ORDERS, json=ORDER, headers={**_from(ip), **headers})


def _assert_limited(gw: Edge, response: Any, *, limit: int, retry_after: int,
                    orders_before: int) -> None:
    assert_problem(response, 429, "rate_limited")
    assert response.headers["retry-after"] == str(retry_after)
    assert response.headers["ratelimit-limit"] == str(limit)
    assert response.headers["ratelimit-remaining"] == "0"
    assert int(response.headers["ratelimit-reset"]) >= 1
    assert len(gw.records("orders.requests")) == orders_before  # nothing reached the bus


def test_project_policy_allows_a_burst_of_100_per_ip_then_429() -> None:
    limit = route(ORDERS).rate_limit
    assert limit is not None
    assert (limit.burst, limit.per_second, limit.per) == (
        100, 50.0, "caller")
    limiter = FrozenClockLimiter()
    with edge(limiter=limiter) as gw:
        answers = [_order(gw) for _ in range(100)]
        assert [a.status_code for a in answers] == [201] * 100
        assert [a.headers["ratelimit-remaining"] for a in answers[:3]] == ["99", "98", "97"]
        assert answers[-1].headers["ratelimit-remaining"] == "0"
        assert answers[-1].headers["ratelimit-limit"] == "100"
        assert answers[-1].headers["ratelimit-reset"] == "2"  # 100 tokens at 50/s
        # At 50/s one token comes back in 20 ms: Retry-After rounds up to 1 s.
        _assert_limited(gw, _order(gw), limit=100, retry_after=1, orders_before=100)
        assert _order(gw, "198.51.100.2").status_code == 201  # another IP, another bucket
        assert len(gw.handlers.saw("orders.create")) == 101
    assert set(limiter.keys) == {"route:POST /v1/orders|user:ip 198.51.100.1",
                                 "route:POST /v1/orders|user:ip 198.51.100.2"}


SMALL = with_route(ORDERS, rate_limit={"per_second": 0.5, "burst": 3})


def test_small_burst_per_ip_refills_with_time() -> None:
    limiter = FrozenClockLimiter()
    with edge(SMALL, limiter=limiter) as gw:
        assert [_order(gw).status_code for _ in range(3)] == [201, 201, 201]
        _assert_limited(gw, _order(gw), limit=3, retry_after=2, orders_before=3)
        assert _order(gw, "203.0.113.9").status_code == 201
        limiter.now_ms += 1999
        assert _order(gw).status_code == 429
        limiter.now_ms += 1  # 2 s at 0.5/s: one token
        ok = _order(gw)
        assert ok.status_code == 201
        assert ok.headers["ratelimit-remaining"] == "0"
        assert _order(gw).status_code == 429
        assert len(gw.records("orders.requests")) == 5


def test_api_key_usage_plan_limits_each_key() -> None:
    limiter = FrozenClockLimiter()
    with edge(limiter=limiter) as gw:
        key, key_id = gw.issue_key("partner-small", UsagePlan(rate_per_s=1.0, burst=2))
        other, _ = gw.issue_key("partner-other", UsagePlan(rate_per_s=1.0, burst=2))
        first = gw.http.post(PARTNER_ORDERS, json=ORDER, headers={"x-api-key": key})
        second = gw.http.post(PARTNER_ORDERS, json=ORDER, headers={"x-api-key": key})
        assert (first.status_code, second.status_code) == (201, 201)
        assert (first.headers["ratelimit-limit"], first.headers["ratelimit-remaining"]) == (
            "2", "1")
        assert second.headers["ratelimit-remaining"] == "0"
        third = gw.http.post(PARTNER_ORDERS, json=ORDER, headers={"x-api-key": key})
        _assert_limited(gw, third, limit=2, retry_after=1, orders_before=2)
        # The plan follows the key, not the address: another IP does not help ...
        again = gw.http.post(PARTNER_ORDERS, json=ORDER,
                             headers={"x-api-key": key, **_from("192.0.2.77")})
        assert again.status_code == 429
        # ... and another key has its own bucket.
        assert gw.http.post(PARTNER_ORDERS, json=ORDER,
                            headers={"x-api-key": other}).status_code == 201
        limiter.now_ms += 1000
        assert gw.http.post(PARTNER_ORDERS, json=ORDER,
                            headers={"x-api-key": key}).status_code == 201
        assert [s.principal and s.principal["sub"] for s in gw.handlers.saw(
            "orders.create")] == ["partner-small", "partner-small", "partner-other",
                                  "partner-small"]
    assert f"key:{key_id}" in limiter.keys


def test_per_route_bucket_is_shared_by_every_caller() -> None:
    shared = with_route(ORDERS, rate_limit={"per_second": 1, "burst": 2, "per": "route"})
    limiter = FrozenClockLimiter()
    with edge(shared, limiter=limiter) as gw:
        assert _order(gw, "198.51.100.1").status_code == 201
        assert _order(gw, "198.51.100.2").status_code == 201
        _assert_limited(gw, _order(gw, "198.51.100.1"), limit=2, retry_after=1,
                        orders_before=2)
        _assert_limited(gw, _order(gw, "198.51.100.3"), limit=2, retry_after=1,
                        orders_before=2)
    assert set(limiter.keys) == {"route:POST /v1/orders"}


def test_per_caller_jwt_route_buckets_by_subject() -> None:
    small = with_route(PRODUCT, rate_limit={"per_second": 1, "burst": 1})
    limiter = FrozenClockLimiter()
    with edge(small, limiter=limiter) as gw:
        ada, bob = bearer(claims(sub="auth0|ada")), bearer(claims(sub="auth0|bob"))
        assert gw.http.get("/v1/products/sku-1", headers=ada).status_code == 200
        assert gw.http.get("/v1/products/sku-1", headers=bob).status_code == 200
        before = gw.produced()
        refused = gw.http.get("/v1/products/sku-1", headers=ada)
        assert_problem(refused, 429, "rate_limited")
        assert gw.produced() == before
    assert limiter.keys == ["route:GET /v1/products/{sku}|user:auth0%7Cada",
                            "route:GET /v1/products/{sku}|user:auth0%7Cbob",
                            "route:GET /v1/products/{sku}|user:auth0%7Cada"]
