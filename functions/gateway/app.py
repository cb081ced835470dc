"""The edge's FastAPI app, built from the policy's HTTP routes.

Each route becomes one endpoint that runs, in order: authentication (the route's ``auth``),
required scopes, rate limits, validation of path, query and body against the route's
schemas, then the mesh call (one operation, an aggregation of several, or an async
submission), with the caller's principal signed into the message. Every refusal is
problem+json. Custom routes can still be added to the returned app in code.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.telemetry import TelemetryConfig
from starlette.requests import ClientDisconnect
from starlette.types import Receive

from bus.errors import MeshError
from bus.policy.model import Policy, Route
from bus.runtime.client import MeshClient
from functions.gateway.aggregate import fan_out, merged
from functions.gateway.async_routes import AsyncRoutes, OperationsStore
from functions.gateway.auth.errors import AuthError
from functions.gateway.guard import Caller, EdgeGuard
from functions.gateway.middleware import install_middleware
from functions.gateway.openapi import SECURITY_SCHEMES, route_openapi, starlette_path
from functions.gateway.problems import (
    EdgeRefusal,
    auth_error_response,
    mesh_error_response,
    problem,
    refusal_response,
)
from functions.gateway.route_match import PlainRoute, earliest_first
from functions.gateway.validation import RouteValidator

__all__ = ["EdgeDeps", "LazyMeshClient", "create_app", "mesh_error_response"]

ClientFactory = Callable[[], Awaitable[MeshClient]]
NO_NATIVE_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
NO_QUERY: Mapping[str, str] = MappingProxyType({})  # no query string: nothing to parse
log = logging.getLogger(__name__)


class LazyMeshClient:
    """Builds the mesh client on first use and keeps it for the life of the process."""

    def __init__(self, factory: ClientFactory) -> None:
        self._factory = factory
        self._client: MeshClient | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> MeshClient:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                client = await self._factory()
                await client.start()
                self._client = client
            return self._client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()


@dataclass
class EdgeDeps:
    """What the routes need besides the policy; the mesh client is created lazily."""

    mesh: LazyMeshClient
    guard: EdgeGuard = field(default_factory=EdgeGuard)
    operations: OperationsStore | None = None


def _with_limits(request: Request, response: JSONResponse) -> JSONResponse:
    for name, value in getattr(request.state, "limit_headers", {}).items():
        response.headers.setdefault(name, value)
    return response


def _source_ip(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


async def read_body(receive: Receive) -> bytes:
    """The request body, read once, as ``Request.body()`` reads it but without its async
    generator and its closing context (~6 us a request on the edge, issue 15)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return b"".join(chunks)
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect


class RouteEndpoint:
    """One policy route's request handling (see the module docstring for the order)."""

    def __init__(self, route: Route, deps: EdgeDeps, async_routes: AsyncRoutes | None) -> None:
        self.route = route
        self.deps = deps
        self.validator = RouteValidator(route)
        self.async_routes = async_routes
        self.timeout_s = route.timeout_ms / 1000

    async def __call__(self, request: Request) -> Response:
        route = self.route
        caller = await self.deps.guard.authenticate(route, request.headers, _source_ip(request),
                                                    request.scope.get("aws.event"))
        limit_headers = await self.deps.guard.admit(route, caller)
        # Error answers carry them too (_with_limits reads request.state, this very dict).
        request.scope.setdefault("state", {})["limit_headers"] = limit_headers
        query = request.query_params if request.scope.get("query_string") else NO_QUERY
        payload = self.validator.payload(request.path_params, query,
                                         request.headers.get("content-type"),
                                         await read_body(request.receive))
        client = await self.deps.mesh.get()
        traceparent = None  # the trace is the current span's (functions.gateway.tracing)
        if self.async_routes is not None and route.mode == "async":
            body = await self.async_routes.submit(client, route, payload, caller, traceparent)
            return JSONResponse(body, status_code=202, headers={
                **limit_headers, "Location": body["status_url"]})
        if route.aggregate is not None:
            result = await self._aggregate(client, payload, caller, traceparent)
        else:
            assert route.operation is not None
            result = await client.request(
                route.operation, payload,
                timeout_s=min(self.timeout_s, client.settings.request_timeout_s),
                traceparent=traceparent, headers=request.headers,
                principal=caller.principal_json())
        return JSONResponse(result, status_code=route.status, headers=limit_headers)

    async def _aggregate(self, client: MeshClient, payload: dict[str, Any], caller: Caller,
                         traceparent: str | None) -> dict[str, Any]:
        assert self.route.aggregate is not None
        principal = caller.principal_json()

        async def call(operation: str, timeout_s: float) -> dict[str, Any]:
            return await client.request(operation, payload, timeout_s=timeout_s,
                                        traceparent=traceparent, principal=principal)

        budget_s = min(self.timeout_s, client.settings.request_timeout_s)
        outcomes = await fan_out(self.route.aggregate, call, budget_s)
        return merged(self.route.aggregate, outcomes)


class EdgeRoute(PlainRoute):
    """A policy route: FastAPI keeps it for routing and the OpenAPI document, but a request
    goes straight to its ``RouteEndpoint`` (which reads the request itself, and validates it
    against the policy's schemas): without FastAPI's dependency solving, its two exit stacks
    and its response handling, none of which a policy route uses (about a fifth of the
    edge's own time per request, issue 15)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if not isinstance(endpoint, RouteEndpoint):
            raise TypeError("an EdgeRoute serves a RouteEndpoint")
        super().__init__(path, endpoint, **kwargs)


def _mount(app: FastAPI, route: Route, deps: EdgeDeps, async_routes: AsyncRoutes | None) -> None:
    status = 202 if route.mode == "async" else route.status
    app.router.add_api_route(
        starlette_path(route.path), RouteEndpoint(route, deps, async_routes),
        methods=ALL_METHODS if route.method == "ANY" else [route.method],
        status_code=status, name=route.name, openapi_extra=route_openapi(route, status),
        description=f"{route.auth} auth; calls {', '.join(route.operations())}",
        include_in_schema=True, route_class_override=EdgeRoute,
    )


def _install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(policy: Policy, deps: EdgeDeps) -> FastAPI:
    """The edge app serving ``policy.routes`` (those whose caller is ``gateway``)."""
    routes = tuple(r for r in policy.routes if r.caller == "gateway")
    deps.guard.check_routes(routes)
    edge = policy.edge
    # The edge's telemetry is its own middleware's: one SERVER span (functions.gateway.tracing:
    # X-Ray too, traceparent on the answer), the HTTP metrics (functions.gateway.http_metrics)
    # and its error log. FastAPI's native telemetry would record the same metrics a second
    # time under its own scope, and asks the providers on every request even when off.
    app = FastAPI(title="meshgate edge", version="0.1.0", telemetry=NO_NATIVE_TELEMETRY)
    app.state.mesh = deps.mesh
    install_middleware(app, edge)

    @app.exception_handler(MeshError)
    async def on_mesh_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, MeshError)
        return _with_limits(request, mesh_error_response(exc))

    @app.exception_handler(AuthError)
    async def on_auth_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AuthError)
        return _with_limits(request, auth_error_response(exc))

    @app.exception_handler(EdgeRefusal)
    async def on_refusal(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, EdgeRefusal)
        return _with_limits(request, refusal_response(exc))

    # Anything no handler above knows (a bug, an unexpected library error) is a 500
    # problem+json naming nothing internal; the traceback goes to the log only. Starlette
    # answers with this, then re-raises for the server (Mangum logs it, keeps the answer).
    @app.exception_handler(Exception)
    async def on_unknown(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled %s on %s %s", type(exc).__name__, request.method,
                  request.url.path, exc_info=exc)
        return problem(500, "the gateway could not complete the request", reason="internal")

    # response_model=None: a return annotation would make FastAPI import pydantic.v1 (16 ms).
    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    app.router.add_api_route("/healthz", healthz, methods=["GET"], include_in_schema=False,
                             response_model=None, route_class_override=PlainRoute)

    async_routes = None
    if any(route.mode == "async" for route in routes):
        if deps.operations is None:
            raise ValueError("async routes need an operations store (MESH_OPERATIONS_TABLE)")
        async_routes = AsyncRoutes(deps.operations, deps.guard)
        async_routes.mount_status(app, routes, edge.status_rate_limit if edge else None)
    for route in routes:
        _mount(app, route, deps, async_routes)
    # The policy's routes ahead of the edge's own pages (docs, health) they cannot collide
    # with: the router tries routes in turn, and nearly every request is for a policy route.
    app.router.routes[:] = earliest_first(app.router.routes,
                                          lambda r: isinstance(r, EdgeRoute))
    _install_openapi(app)
    return app
