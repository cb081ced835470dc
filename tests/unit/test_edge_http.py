"""The edge app's HTTP plumbing on the project policy: request ids, CORS (the policy's
allowed origin against any other), and problem+json for unknown paths and methods."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.unit.edge_support import (
    ALLOWED_ORIGIN,
    ORDER,
    ORDERS,
    Edge,
    assert_problem,
    bearer,
    edge,
)

GENERATED_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(scope="module")
def gw() -> Iterator[Edge]:
    with edge() as state:
        yield state


# --- request ids -----------------------------------------------------------------------------


@pytest.mark.parametrize("request_id", ["abc-123", "req_7.A-b", "x" * 128])
def test_valid_request_id_is_echoed(gw: Edge, request_id: str) -> None:
    ok = gw.http.post(ORDERS, json=ORDER, headers={"x-request-id": request_id})
    refused = gw.http.get("/v1/products/sku-1", headers={"x-request-id": request_id})
    missing = gw.http.get("/nowhere", headers={"x-request-id": request_id})
    assert ok.status_code == 201
    assert refused.status_code == 401
    assert missing.status_code == 404
    for response in (ok, refused, missing):
        assert response.headers.get_list("x-request-id") == [request_id]


@pytest.mark.parametrize("request_id", [
    "has space", "x" * 129, "a/b", "<script>", "a;b", "id\tx", ""])
def test_invalid_request_id_is_replaced(gw: Edge, request_id: str) -> None:
    response = gw.http.post(ORDERS, json=ORDER, headers={"x-request-id": request_id})
    assert response.status_code == 201
    [echoed] = response.headers.get_list("x-request-id")
    assert echoed != request_id
    assert GENERATED_ID.fullmatch(echoed)


def test_each_request_gets_its_own_id(gw: Edge) -> None:
    ids = {gw.http.get("/healthz").headers["x-request-id"] for _ in range(3)}
    assert len(ids) == 3
    assert all(GENERATED_ID.fullmatch(i) for i in ids)


# --- CORS ------------------------------------------------------------------------------------


def test_preflight_from_the_allowed_origin(gw: Edge) -> None:
    before = gw.produced()
    response = gw.http.options(ORDERS, headers={
        "origin": ALLOWED_ORIGIN, "access-control-request-method": "POST",
        "access-control-request-headers": "content-type, x-api-key, authorization"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed = response.headers["access-control-allow-headers"].lower()
    assert {"content-type", "x-api-key", "authorization"} <= {
        h.strip() for h in allowed.split(",")}
    assert response.headers["access-control-max-age"] == "600"
    assert "access-control-allow-credentials" not in response.headers
    assert response.headers.get("x-request-id")
    assert gw.produced() == before


@pytest.mark.parametrize("origin", ["http://evil.example", "http://localhost:3001",
                                    "https://localhost:3000", "null"])
def test_preflight_from_another_origin_is_not_allowed(gw: Edge, origin: str) -> None:
    before = gw.produced()
    response = gw.http.options(ORDERS, headers={
        "origin": origin, "access-control-request-method": "POST"})
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers
    assert gw.produced() == before


def test_preflight_of_a_method_not_allowed_by_cors(gw: Edge) -> None:
    response = gw.http.options(ORDERS, headers={
        "origin": ALLOWED_ORIGIN, "access-control-request-method": "TRACE"})
    assert response.status_code == 400


def test_actual_request_from_the_allowed_origin_exposes_headers(gw: Edge) -> None:
    response = gw.http.post(ORDERS, json=ORDER, headers={"origin": ALLOWED_ORIGIN})
    assert response.status_code == 201
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    exposed = {h.strip().lower() for h in
               response.headers["access-control-expose-headers"].split(",")}
    assert {"x-request-id", "retry-after", "ratelimit-limit", "ratelimit-remaining",
            "ratelimit-reset"} <= exposed


def test_problem_answers_carry_cors_headers_for_the_allowed_origin(gw: Edge) -> None:
    response = gw.http.get("/v1/products/sku-1", headers={"origin": ALLOWED_ORIGIN})
    assert_problem(response, 401)
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN


def test_actual_request_from_another_origin_gets_no_cors_headers(gw: Edge) -> None:
    response = gw.http.post(ORDERS, json=ORDER, headers={"origin": "http://evil.example"})
    assert response.status_code == 201  # CORS is the browser's check; the server just omits
    assert "access-control-allow-origin" not in response.headers


# --- 404 / 405 -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/v1", "/v1/order", "/v1/products", "/v1/products/a/b",
                                  "/v2/orders"])
def test_unknown_path_is_404_problem(gw: Edge, path: str) -> None:
    before = gw.produced()
    response = gw.http.get(path, headers=bearer())
    body = assert_problem(response, 404, "no_route")
    assert body["detail"] == "no route matches this path"
    assert gw.produced() == before


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("GET", ORDERS, "POST"),
    ("DELETE", ORDERS, "POST"),
    ("PUT", "/v1/partner/orders", "POST"),
    ("POST", "/v1/products/sku-1", "GET"),
    ("PATCH", "/v1/products/sku-1", "GET"),
])
def test_wrong_method_is_405_problem_with_allow(gw: Edge, method: str, path: str,
                                                allow: str) -> None:
    before = gw.produced()
    response = gw.http.request(method, path, headers=bearer())
    body = assert_problem(response, 405, "method_not_allowed")
    assert body["detail"] == "the route does not take this method"
    assert response.headers["allow"] == allow
    assert gw.produced() == before


def test_healthz_answers_without_the_bus() -> None:
    with edge(workers=False) as gw:
        response = gw.http.get("/healthz")
        assert gw.app.state.mesh._client is None
    assert response.json() == {"status": "ok"}
