"""functions.gateway.cors: the edge's CORS answers exactly as Starlette's ``CORSMiddleware``
(same raw headers, same order, same bodies) for requests with and without ``Origin``,
preflights, and answers that already carry ``Vary`` headers; only the path taken differs."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from functions.gateway.cors import EdgeCorsMiddleware, vary_origin

VARIES = {"none": [], "one": [("Vary", "Accept")],
          "two": [("Vary", "Accept"), ("X-Other", "1"), ("Vary", "Accept-Encoding")]}


async def answer(request: Request) -> Response:
    response = Response("ok", headers={"X-Before": "1"})
    for name, value in VARIES[request.path_params["vary"]]:
        response.raw_headers.append((name.lower().encode(), value.encode()))
    response.raw_headers.append((b"x-after", b"2"))
    return response


def client(cls: type[CORSMiddleware]) -> TestClient:
    app = Starlette(routes=[Route("/{vary}", answer, methods=["GET", "POST"])], middleware=[
        Middleware(cls, allow_origins=["http://localhost:3000"], allow_methods=["GET", "POST"],
                   allow_headers=["content-type"], expose_headers=["x-request-id"],
                   max_age=600)])
    return TestClient(app)


REQUESTS = [
    ("GET", {}),
    ("POST", {"content-type": "application/json"}),
    ("GET", {"origin": "http://localhost:3000"}),
    ("GET", {"origin": "https://evil.example"}),
    ("OPTIONS", {"origin": "http://localhost:3000", "access-control-request-method": "POST"}),
    ("OPTIONS", {"origin": "https://evil.example", "access-control-request-method": "PUT"}),
]


@pytest.mark.parametrize("vary", sorted(VARIES))
@pytest.mark.parametrize(("method", "headers"), REQUESTS)
def test_same_answer_as_starlette(vary: str, method: str, headers: dict[str, str]) -> None:
    with client(CORSMiddleware) as starlette, client(EdgeCorsMiddleware) as edge:
        want = starlette.request(method, f"/{vary}", headers=headers)
        got = edge.request(method, f"/{vary}", headers=headers)
    assert (got.status_code, got.content) == (want.status_code, want.content)
    assert got.headers.raw == want.headers.raw


def test_vary_origin() -> None:
    headers = [(b"vary", b"Accept"), (b"x", b"1"), (b"vary", b"Cookie")]
    vary_origin(headers)
    assert headers == [(b"vary", b"Accept, Cookie, Origin"), (b"x", b"1")]
    empty: list[tuple[bytes, bytes]] = []
    vary_origin(empty)
    assert empty == [(b"vary", b"Origin")]
