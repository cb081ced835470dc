"""functions.gateway.envelope: one layer answers exactly as the three it replaced would,
outermost first: the request id, Starlette's ``CORSMiddleware``, the body limit. Same status,
same body, same raw headers in the same order, with and without CORS settings, for requests
with and without ``Origin``, preflights, answers that carry ``Vary`` headers of their own,
request ids sane and not, and bodies declared or found too large."""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bus.policy.edge import CorsSettings
from functions.gateway.envelope import (
    BodyTooLarge,
    EdgeEnvelopeMiddleware,
    request_id_of,
    vary_origin,
)
from functions.gateway.problems import problem

MAX_BYTES = 64
ALLOWED = "http://localhost:3000"
CORS = CorsSettings(allow_origins=(ALLOWED,), allow_methods=("GET", "POST"),
                    allow_headers=("content-type",), expose_headers=("x-request-id",),
                    max_age_s=600)
VARIES = {"none": [], "one": [("Vary", "Accept")],
          "two": [("Vary", "Accept"), ("X-Other", "1"), ("Vary", "Accept-Encoding")]}


# --- the three layers the envelope replaced, as they were (the reference) -----------------


class ReferenceLayer:
    """An HTTP-only layer: anything else (the test client's lifespan) passes through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.http(scope, receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class ReferenceRequestId(ReferenceLayer):
    valid = re.compile(r"[A-Za-z0-9._-]{1,128}")

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = uuid.uuid4().hex
        for name, value in scope["headers"]:
            if name == b"x-request-id" and self.valid.fullmatch(value.decode("latin-1")):
                request_id = value.decode("latin-1")
                break
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)


class ReferenceBodyLimit(ReferenceLayer):
    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        for name, value in scope["headers"]:
            if name == b"content-length" and not value.isdigit():
                await problem(400, "the content-length header is not a number",
                              reason="invalid_content_length")(scope, receive, send)
                return
            if name == b"content-length" and int(value) > MAX_BYTES:
                await self._too_large(scope, receive, send)
                return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > MAX_BYTES:
                raise BodyTooLarge
            return message

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

    @staticmethod
    async def _too_large(scope: Scope, receive: Receive, send: Send) -> None:
        await problem(413, f"the body is over {MAX_BYTES} bytes",
                      reason="body_too_large")(scope, receive, send)


def reference(cors: CorsSettings | None) -> list[Middleware]:
    layers = [Middleware(ReferenceRequestId)]
    if cors is not None:
        layers.append(Middleware(
            CORSMiddleware, allow_origins=list(cors.allow_origins),
            allow_methods=list(cors.allow_methods), allow_headers=list(cors.allow_headers),
            expose_headers=list(cors.expose_headers), max_age=cors.max_age_s))
    return [*layers, Middleware(ReferenceBodyLimit)]


# --- the comparison ---------------------------------------------------------------------------


async def answer(request: Request) -> Response:
    body = await request.body()
    response = Response(b"read " + body, headers={"X-Before": "1"})
    for name, value in VARIES[request.path_params["vary"]]:
        response.raw_headers.append((name.lower().encode(), value.encode()))
    response.raw_headers.append((b"x-after", b"2"))
    return response


class EarlyAnswer:
    """Answers before it reads the body: a body found too large then is an error, no 413."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.body", "body": b"read"})


def client(middleware: list[Middleware], raise_errors: bool = False) -> TestClient:
    app = Starlette(routes=[Route("/early", EarlyAnswer(), methods=["POST"]),
                            Route("/{vary}", answer, methods=["GET", "POST"])],
                    middleware=middleware)
    return TestClient(app, raise_server_exceptions=raise_errors)


def chunked(size: int) -> Iterator[bytes]:
    for _ in range(size // 16):
        yield b"x" * 16


REQUESTS: list[tuple[str, dict[str, str], Any]] = [
    ("GET", {}, None),
    ("POST", {"content-type": "application/json"}, b"{}"),
    ("GET", {"origin": ALLOWED}, None),
    ("GET", {"origin": "https://evil.example"}, None),
    ("OPTIONS", {"origin": ALLOWED, "access-control-request-method": "POST"}, None),
    ("OPTIONS", {"origin": "https://evil.example", "access-control-request-method": "PUT"},
     None),
    ("GET", {"x-request-id": "abc-123"}, None),
    ("GET", {"x-request-id": "has space"}, None),
    ("POST", {"x-request-id": "x" * 129, "origin": ALLOWED}, b"{}"),
    ("POST", {}, b"x" * MAX_BYTES),
    ("POST", {}, b"x" * (MAX_BYTES + 1)),
    ("POST", {"origin": ALLOWED}, b"x" * (MAX_BYTES + 1)),
    ("POST", {"content-length": "2x"}, b"{}"),
    ("POST", {"origin": ALLOWED, "content-length": "2x"}, b"{}"),
    ("POST", {}, "chunked"),
    ("POST", {"origin": ALLOWED}, "chunked"),
]


def same_new_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new request id is random: each side gets the same sequence of them."""
    counter = itertools.count()
    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(int=next(counter)))


@pytest.mark.parametrize("cors", [CORS, None], ids=["cors", "no_cors"])
@pytest.mark.parametrize("vary", sorted(VARIES))
@pytest.mark.parametrize(("method", "headers", "body"), REQUESTS)
def test_same_answer_as_the_three_layers(cors: CorsSettings | None, vary: str, method: str,
                                         headers: dict[str, str], body: Any,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    envelope = [Middleware(EdgeEnvelopeMiddleware, max_body_bytes=MAX_BYTES, cors=cors)]
    answers = []
    for layers in (reference(cors), envelope):
        same_new_ids(monkeypatch)
        content = chunked(MAX_BYTES * 2) if body == "chunked" else body
        with client(layers) as http:
            answers.append(http.request(method, f"/{vary}", headers=headers, content=content))
    want, got = answers
    assert (got.status_code, got.content) == (want.status_code, want.content)
    assert got.headers.raw == want.headers.raw


@pytest.mark.parametrize("cors", [CORS, None], ids=["cors", "no_cors"])
@pytest.mark.parametrize("headers", [{}, {"origin": ALLOWED}], ids=["api", "browser"])
def test_too_large_after_the_answer_started_is_an_error(
        cors: CorsSettings | None, headers: dict[str, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    answers = []
    for layers in (reference(cors),
                   [Middleware(EdgeEnvelopeMiddleware, max_body_bytes=MAX_BYTES, cors=cors)]):
        same_new_ids(monkeypatch)
        with client(layers, raise_errors=True) as http, pytest.raises(BodyTooLarge):
            http.post("/early", headers=headers, content=chunked(MAX_BYTES * 2))
        with client(layers) as http:
            answers.append(http.post("/early", headers=headers, content=b"small"))
    want, got = answers
    assert (got.status_code, got.content, got.headers.raw) == (
        want.status_code, want.content, want.headers.raw)


def test_the_cases_reach_every_outcome() -> None:
    """The table above is not all one kind of answer: 200, preflight 400, 413 and 400."""
    statuses = set()
    for method, headers, body in REQUESTS:
        content = chunked(MAX_BYTES * 2) if body == "chunked" else body
        envelope = [Middleware(EdgeEnvelopeMiddleware, max_body_bytes=MAX_BYTES, cors=CORS)]
        with client(envelope) as http:
            response = http.request(method, "/none", headers=headers, content=content)
        statuses.add((response.status_code, response.headers.get("content-type")))
    assert {status for status, _ in statuses} == {200, 400, 413}
    assert (413, "application/problem+json") in statuses
    assert (400, "application/problem+json") in statuses


def test_request_id_from_api_gateway_when_the_caller_sent_none_sane() -> None:
    event = {"requestContext": {"requestId": "apigw-1"}}
    assert request_id_of(None, event) == "apigw-1"
    assert request_id_of(b"mine", event) == "mine"
    assert re.fullmatch(r"[0-9a-f]{32}", request_id_of(None, {"requestContext": {}}))


def test_vary_origin() -> None:
    headers = [(b"vary", b"Accept"), (b"x", b"1"), (b"vary", b"Cookie")]
    vary_origin(headers)
    assert headers == [(b"vary", b"Accept, Cookie, Origin"), (b"x", b"1")]
    empty: list[tuple[bytes, bytes]] = []
    vary_origin(empty)
    assert empty == [(b"vary", b"Origin")]
