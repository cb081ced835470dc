"""functions.gateway.route_match: the edge reaches its routes sooner without changing which
route answers any request (property tests against Starlette's own matching); and the
endpoints' own body read, against Starlette's."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from starlette.requests import ClientDisconnect, Request
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Receive

from functions.gateway.app import EdgeRoute, read_body
from functions.gateway.route_match import LiteralPrefixRoute, earliest_first
from tests.unit.edge_support import ORDER, edge

SEGMENTS = ["v1", "orders", "docs", "healthz", "x", "openapi.json"]
segment = st.sampled_from(SEGMENTS)
template_part = st.one_of(segment, st.just("{p}"), st.just("{p:path}"))


async def endpoint() -> dict[str, str]:
    return {}


def page(_: Any) -> None:
    raise AssertionError("never called")


@st.composite
def templates(draw: st.DrawFn) -> str:
    parts = draw(st.lists(template_part, min_size=0, max_size=3))
    return "/" + "/".join(part.replace("{p", f"{{p{i}") for i, part in enumerate(parts))


@st.composite
def request_paths(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.one_of(segment, st.just("abc"), st.just("")), max_size=4))
    return "/" + "/".join(parts)


def concrete(template: str) -> str:
    """A request path the template matches (where overlaps are most likely)."""
    return re.sub(r"\{p\d+:path\}", "abc/x", re.sub(r"\{p\d+\}", "abc", template))


def scope(path: str, method: str = "GET", root_path: str = "") -> dict[str, Any]:
    return {"type": "http", "path": path, "root_path": root_path, "method": method,
            "headers": []}


def answering(routes: list[BaseRoute], path: str, method: str) -> BaseRoute | None:
    """The route Starlette's router hands the request to (a full match, else the first
    partial one), or None."""
    partial = None
    for route in routes:
        match, _ = route.matches(scope(path, method))
        if match is Match.FULL:
            return route
        if match is Match.PARTIAL and partial is None:
            partial = route
    return partial


methods = st.sampled_from(["GET", "POST"])


@given(st.lists(st.tuples(templates(), methods), min_size=1, max_size=6),
       st.lists(st.tuples(templates(), methods), max_size=4),
       st.lists(request_paths(), min_size=1, max_size=8), methods)
@example(own=[("/v1/{p1}", "GET")], policy=[("/{p0:path}", "GET")], paths=["/"], method="GET")
@example(own=[("/{p0:path}", "GET")], policy=[("/v1/{p1}", "GET")], paths=["/"], method="GET")
@settings(max_examples=300)
def test_moving_routes_ahead_never_changes_which_route_answers(
        own: list[tuple[str, str]], policy: list[tuple[str, str]], paths: list[str],
        method: str) -> None:
    routes: list[BaseRoute] = [Route(path, page, methods=[verb]) for path, verb in own]
    routes += [LiteralPrefixRoute(path, endpoint, methods=[verb]) for path, verb in policy]
    reordered = earliest_first(routes, lambda r: isinstance(r, LiteralPrefixRoute))
    assert sorted(map(id, reordered)) == sorted(map(id, routes))
    templates_as_paths = [concrete(path) for path, _ in own + policy]
    for path in paths + templates_as_paths:
        assert answering(reordered, path, method) is answering(routes, path, method)


def test_policy_routes_pass_the_edge_pages_they_cannot_collide_with() -> None:
    docs = Route("/docs", page)
    health = Route("/healthz", page)
    under = Route("/v1/{thing}", page)  # has parameters: nothing passes it
    orders = LiteralPrefixRoute("/v1/orders", endpoint, methods=["POST"])
    catch_all = LiteralPrefixRoute("/{rest:path}", endpoint, methods=["GET"])
    ordered = earliest_first([docs, health, under, orders, catch_all],
                             lambda r: isinstance(r, LiteralPrefixRoute))
    assert ordered == [docs, health, under, orders, catch_all]
    ordered = earliest_first([docs, health, orders, catch_all],
                             lambda r: isinstance(r, LiteralPrefixRoute))
    assert ordered == [orders, docs, health, catch_all]  # the catch-all would answer /docs


@given(templates(), request_paths(), st.sampled_from(["GET", "POST"]),
       st.sampled_from(["", "/prod"]))
def test_the_literal_prefix_test_agrees_with_the_regex(template: str, path: str, method: str,
                                                      root_path: str) -> None:
    route = LiteralPrefixRoute(template, endpoint, methods=["GET"])
    request = scope(root_path + path, method, root_path)
    match, child = route.matches(request)
    want, want_child = Route.matches(route, request)
    assert match is want
    if want is not Match.NONE:
        assert child["path_params"] == want_child["path_params"]
        assert child["route"] is route


def test_the_edge_tries_the_policy_routes_first_and_still_serves_its_own_pages() -> None:
    with edge() as gw:
        policy_routes = [route for route in gw.app.routes if isinstance(route, EdgeRoute)]
        assert policy_routes
        assert gw.app.routes[:len(policy_routes)] == policy_routes
        for own in ("/healthz", "/openapi.json", "/docs"):
            assert gw.http.get(own).status_code == 200


MESSAGES = [
    [{"type": "http.request", "body": b'{"a": 1}'}],
    [{"type": "http.request"}],
    [{"type": "http.request", "body": b"ab", "more_body": True},
     {"type": "http.request", "body": b"", "more_body": True},
     {"type": "http.request", "body": b"cd"}],
    [{"type": "http.request", "body": b"ab", "more_body": True}, {"type": "http.disconnect"}],
    [{"type": "http.disconnect"}],
]


@pytest.mark.parametrize("messages", MESSAGES)
def test_the_endpoints_body_read_is_starlettes(messages: list[dict[str, Any]]) -> None:
    """functions.gateway.app.read_body: what ``Request.body()`` reads, or its disconnect."""

    async def read(reader: Callable[[Receive], Awaitable[bytes]]) -> bytes | str:
        queue = iter(messages)

        async def receive() -> dict[str, Any]:
            return next(queue)

        try:
            return await reader(receive)
        except ClientDisconnect:
            return "disconnected"

    def starlette(receive: Receive) -> Awaitable[bytes]:
        return Request({"type": "http", "headers": []}, receive).body()

    assert asyncio.run(read(read_body)) == asyncio.run(read(starlette))


NEAR_MISSES = ["/V1/partner/orders", "/v1/partner/orders/extra", "/docs/v1/partner/orders",
               "/healthz/../v1/partner/orders", "/v1/partner%2Forders", "/v1/partner//orders",
               "/openapi.json/../v1/partner/orders"]


@pytest.mark.parametrize("path", NEAR_MISSES)
def test_no_path_trick_reaches_a_route_past_its_check(path: str) -> None:
    """The edge's own attack (proof/attack/edge_cases.py, route_confusion) in process: a valid
    order without a key at near misses of the API-key route is refused, and nothing reaches
    the bus; the same order with the key is the control."""
    with edge() as gw:
        refused = gw.http.post(path, json=ORDER)
        assert 400 <= refused.status_code < 500, (path, refused.status_code, refused.text)
        assert gw.produced() == {}
        accepted = gw.http.post("/v1/partner/orders", json=ORDER,
                                headers={"x-api-key": gw.partner_key})
        assert accepted.status_code == 201, accepted.text
        assert gw.produced()
