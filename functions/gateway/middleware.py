"""The edge's ASGI middleware (plain ASGI, not ``BaseHTTPMiddleware``: no extra task per
request), outermost first: the request's span, its HTTP metrics, the envelope (request id,
CORS from the policy, body size limit); and problem+json for unknown paths and methods."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from bus.policy.edge import Edge
from functions.gateway.envelope import BodyTooLarge, EdgeEnvelopeMiddleware
from functions.gateway.http_metrics import HttpMetricsMiddleware
from functions.gateway.problems import problem
from functions.gateway.tracing import TracingMiddleware


def install_middleware(app: FastAPI, edge: Edge | None) -> None:
    settings = edge or Edge()

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        headers: dict[str, Any] = dict(exc.headers or {})
        reason = {404: "no_route", 405: "method_not_allowed"}.get(exc.status_code)
        detail = {404: "no route matches this path",
                  405: "the route does not take this method"}.get(exc.status_code,
                                                                  str(exc.detail))
        return problem(exc.status_code, detail, reason=reason, headers=headers)

    # BodyTooLarge is a MeshError (functions.errors): the app's MeshError handler would
    # answer it 502. Re-raised here, it reaches the envelope, which answers 413.
    @app.exception_handler(BodyTooLarge)
    async def on_too_large(request: Request, exc: Exception) -> JSONResponse:
        raise exc

    # Added last runs first. The envelope answers as three layers would, request id
    # outermost (even a 413 or a CORS answer has one), then CORS (a browser can read a 413).
    app.add_middleware(EdgeEnvelopeMiddleware, max_body_bytes=settings.max_body_bytes,
                       cors=settings.cors)
    app.add_middleware(HttpMetricsMiddleware)  # inside the span: exemplars; outside the rest
    app.add_middleware(TracingMiddleware)  # outermost: every answer is in a span
