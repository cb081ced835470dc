"""The edge's ASGI middleware (plain ASGI, not ``BaseHTTPMiddleware``: no extra task per
request): a request id on every answer, a body size limit enforced before anything parses
the body, CORS from the policy, and problem+json for unknown paths and methods."""

from __future__ import annotations

import re
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bus.policy.edge import Edge
from functions.errors import FunctionError
from functions.gateway.cors import EdgeCorsMiddleware
from functions.gateway.http_metrics import HttpMetricsMiddleware
from functions.gateway.problems import problem
from functions.gateway.tracing import TracingMiddleware

REQUEST_ID = "x-request-id"
_VALID_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


def request_id_of(scope: Scope) -> str:
    """The caller's ``x-request-id`` if it is sane, else API Gateway's request id, else new."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if _VALID_ID.fullmatch(text):
                return str(text)
    event = scope.get("aws.event")
    if isinstance(event, dict):
        context = event.get("requestContext")
        if isinstance(context, dict) and isinstance(context.get("requestId"), str):
            return str(context["requestId"])
    return uuid.uuid4().hex


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID.encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)


class BodyTooLarge(FunctionError):
    """The request body is over the edge's limit (the middleware answers 413)."""

    code = "body_too_large"

    def __init__(self, message: str = "the request body is too large") -> None:
        super().__init__(message)


class BodyLimitMiddleware:
    """413 when ``content-length`` says too much, or when the body read turns out to be."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and not value.isdigit():
                response = problem(400, "the content-length header is not a number",
                                   reason="invalid_content_length")
                await response(scope, receive, send)
                return
            if name == b"content-length" and int(value) > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except BodyTooLarge:
            if started:
                raise
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(413, f"the body is over {self.max_bytes} bytes",
                           reason="body_too_large")
        await response(scope, receive, send)


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
    # answer it 502. Re-raised here, it reaches BodyLimitMiddleware, which answers 413.
    @app.exception_handler(BodyTooLarge)
    async def on_too_large(request: Request, exc: Exception) -> JSONResponse:
        raise exc

    # Added last runs first: request id outermost, so even a 413 or CORS answer has one;
    # CORS outside the body limit, so a browser can read a 413 too.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.cors is not None:
        cors = settings.cors
        app.add_middleware(
            EdgeCorsMiddleware, allow_origins=list(cors.allow_origins),
            allow_methods=list(cors.allow_methods), allow_headers=list(cors.allow_headers),
            expose_headers=list(cors.expose_headers), allow_credentials=cors.allow_credentials,
            max_age=cors.max_age_s,
        )
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(HttpMetricsMiddleware)  # inside the span: exemplars; outside the rest
    app.add_middleware(TracingMiddleware)  # outermost: every answer is in a span
