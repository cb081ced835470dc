"""The edge's routes: reached with as few failed matches as possible, served without what a
policy route does not use.

Starlette's router tries each route in turn, and nearly every request to the edge is for
one of the policy's routes. Two things keep the misses cheap (issue 15: the edge's own
cost, ~1 us a route tried):

- ``LiteralPrefixRoute`` refuses a request for another path with a string test on its
  literal part (the path up to its first parameter, or all of it) before Starlette's regex
  and FastAPI's included-router lookup;
- ``earliest_first`` puts the policy's routes ahead of the edge's own pages (OpenAPI, docs,
  health) wherever no request path can match both, so which route answers never changes.

``PlainRoute`` serves an endpoint that takes the ``Request`` and returns a ``Response``
directly: no dependency solving (FastAPI keeps the route for routing and the OpenAPI
document) and one exception layer, the app's own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]


class LiteralPrefixRoute(APIRoute):
    """An ``APIRoute`` whose ``matches`` first compares the path with its literal part."""

    def __init__(self, path: str, endpoint: Any, **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.literal_prefix, brace, _ = self.path_format.partition("{")
        self.exact = not brace

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and not scope.get("root_path"):  # else Starlette's rule
            path = scope["path"]
            other = path != self.literal_prefix if self.exact else not path.startswith(
                self.literal_prefix)
            if other:
                return Match.NONE, {}
        return super().matches(scope)


class PlainRoute(LiteralPrefixRoute):
    """A route whose endpoint takes the ``Request`` and returns a ``Response``, served as
    Starlette serves a plain endpoint but without its per-route exception wrapper: the
    endpoint's errors go up to the app's ``ExceptionMiddleware``, which holds the very
    handlers that wrapper (``request_response``) would look up again (~1.5 us a request on
    a policy route; ~50 us on the status route, which FastAPI also solved dependencies for)."""

    def __init__(self, path: str, endpoint: Endpoint, **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.app = served(endpoint)


def served(endpoint: Endpoint) -> ASGIApp:
    """``endpoint`` as an ASGI app (see ``PlainRoute``)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        response = await endpoint(Request(scope, receive, send))
        await response(scope, receive, send)

    return app


def _literal(route: Route) -> str:
    return route.path_format.partition("{")[0]


def _may_pass(route: BaseRoute, other: BaseRoute) -> bool:
    """No request path matches both: ``other`` has a single path that ``route`` refuses, or
    the two literal prefixes part (every path either matches starts with its prefix)."""
    if not (isinstance(route, Route) and isinstance(other, Route)):
        return False  # a Mount, a websocket route...: kept in place
    if not other.param_convertors:
        return route.path_regex.match(other.path) is None
    mine, theirs = _literal(route), _literal(other)
    return not (mine.startswith(theirs) or theirs.startswith(mine))


def earliest_first(routes: Sequence[BaseRoute], early: Callable[[BaseRoute], bool]) -> list[
        BaseRoute]:
    """``routes`` with each ``early`` one moved ahead of the routes before it that it can
    never compete with (see ``_may_pass``), so the router reaches it sooner. Which route
    answers a request is unchanged: only routes whose path sets are disjoint change places,
    and no request is matched by both of them."""
    front: list[BaseRoute] = []
    rest: list[BaseRoute] = []
    for route in routes:
        if early(route) and all(_may_pass(route, other) for other in rest):
            front.append(route)
        else:
            rest.append(route)
    return front + rest
