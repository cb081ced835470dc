"""Async routes: answer 202 at once with an operation id and a status URL, for work longer
than API Gateway's 29 s. The request goes on the bus with its replies addressed to
``mesh.async.replies``; the recorder (``functions.async_results``) keeps the answer in
DynamoDB, and ``GET /v1/operations/{operation_id}`` reads it.

Only the caller who started an operation may read it: another caller gets 404, as if it did
not exist (its id is a 128-bit random token, so on ``auth: none`` routes the URL itself is
the capability).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from bus.policy.edge import StatusRateLimit
from bus.policy.model import RateLimit, Route
from bus.runtime.client import MeshClient
from functions.gateway.guard import Caller, EdgeGuard
from functions.gateway.openapi import OPERATION_STATUS_SCHEMA, problem_responses
from functions.gateway.problems import EdgeRefusal
from functions.gateway.route_match import PlainRoute

STATUS_PATH = "/v1/operations/{operation_id}"
ANONYMOUS = "anonymous"


class OperationRecord(Protocol):
    @property
    def owner(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def result(self) -> Any: ...

    @property
    def error(self) -> Mapping[str, Any] | None: ...


class OperationsStore(Protocol):
    async def create(self, operation_id: str, *, owner: str, route: str, operation: str,
                     expires_at_s: int | None = None, deadline_ms: int | None = None
                     ) -> None: ...

    async def get(self, operation_id: str) -> OperationRecord | None: ...


class Submitter(Protocol):
    async def __call__(self, client: MeshClient, operation: str, payload: dict[str, Any], *,
                       operation_id: str, timeout_s: float, traceparent: str | None,
                       principal: str | None) -> None: ...


def owner_of(caller: Caller) -> str:
    return caller.principal.subject if caller.principal is not None else ANONYMOUS


class AsyncRoutes:
    def __init__(self, store: OperationsStore, guard: EdgeGuard) -> None:
        self.store = store
        self.guard = guard

    async def submit(self, client: MeshClient, route: Route, payload: dict[str, Any],
                     caller: Caller, traceparent: str | None) -> dict[str, Any]:
        assert route.operation is not None
        operation_id = uuid.uuid4().hex
        await self.store.create(operation_id, owner=owner_of(caller), route=route.name,
                                operation=route.operation,
                                deadline_ms=time.time_ns() // 1_000_000 + route.timeout_ms)
        await client.submit(route.operation, payload, operation_id=operation_id,
                            timeout_s=route.timeout_ms / 1000, traceparent=traceparent,
                            principal=caller.principal_json())
        return {"operation_id": operation_id, "status": "pending",
                "status_url": STATUS_PATH.format(operation_id=operation_id)}

    def mount_status(self, app: FastAPI, routes: tuple[Route, ...],
                     limit: StatusRateLimit | None = None) -> None:
        """``GET /v1/operations/{operation_id}``, guarded like every route: authenticated
        like the async routes, then rate limited per caller by ``limit`` (the policy's
        ``edge.status_rate_limit``), the API key's usage plan and its daily quota."""
        async_routes = [route for route in routes if route.mode == "async"]
        auths = {route.auth for route in async_routes}
        if len(auths) != 1:
            raise ValueError("async routes must share one auth so their status route has one")
        template = async_routes[0]
        limit = limit or StatusRateLimit()
        status_route = Route(method="GET", path=STATUS_PATH, operation="edge.status",
                             auth=template.auth, rate_limit=RateLimit(
                                 per_second=limit.per_second, burst=limit.burst, per="caller"))
        self.guard.check_routes((status_route,))

        async def read_status(request: Request) -> JSONResponse:
            caller = await self.guard.authenticate(
                status_route, request.headers,
                request.client.host if request.client else "unknown",
                request.scope.get("aws.event"))
            limit_headers = await self.guard.admit(status_route, caller)
            request.state.limit_headers = limit_headers  # error answers carry them too
            operation_id = request.path_params["operation_id"]
            record = await self.store.get(operation_id) if _valid_id(operation_id) else None
            if record is None or record.owner != owner_of(caller):
                raise EdgeRefusal(404, "unknown_operation", "no such operation")
            body: dict[str, Any] = {"operation_id": operation_id, "status": record.status}
            if record.result is not None:
                body["result"] = record.result
            if record.error is not None:
                body["error"] = dict(record.error)
            return JSONResponse(body, headers=limit_headers)

        security: dict[str, list[dict[str, list[str]]]] = {
            "jwt": [{"bearerAuth": []}], "api_key": [{"apiKey": []}]}
        app.router.add_api_route(
            STATUS_PATH, read_status, methods=["GET"], name="operation status",
            route_class_override=PlainRoute,  # no dependency solving: it reads the request
            openapi_extra={
                "operationId": "get_operation_status",
                "parameters": [{"name": "operation_id", "in": "path", "required": True,
                                "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}}],
                "responses": {"200": {"description": "the operation", "content": {
                    "application/json": {"schema": OPERATION_STATUS_SCHEMA}}},
                    **problem_responses()},
                "security": security.get(template.auth, []),
            })


def _valid_id(text: str) -> bool:
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)
