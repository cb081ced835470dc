"""Request validation of the edge app against the project policy's schemas: body (422 with
JSON pointers), non-JSON (400), content type (415), size (413, with and without a
content-length), path and query parameters (422); nothing reaches the bus on any of them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.unit.edge_support import (
    ALLOWED_ORIGIN,
    ORDER,
    ORDERS,
    PARTNER_ORDERS,
    PROJECT,
    Edge,
    assert_problem,
    bearer,
    edge,
    with_extra_route,
)

MAX_BODY = PROJECT.edge.max_body_bytes if PROJECT.edge is not None else 0
LINE = {"sku": "sku-1", "quantity": 1, "unit_price": "1.00"}


@pytest.fixture(scope="module")
def gw() -> Iterator[Edge]:
    # One extra route (not in the project policy): a path parameter and a free-form body,
    # the only way to send a body field that clashes with a path parameter.
    policy = with_extra_route(method="POST", path="/v1/customers/{customer}/orders",
                              operation="orders.create", auth="none",
                              params={"customer": {"type": "string", "minLength": 1}})
    with edge(policy) as state:
        yield state


@pytest.fixture(autouse=True)
def _nothing_reaches_the_bus(gw: Edge) -> Iterator[None]:
    gw.handlers.seen.clear()
    before = gw.produced()
    yield
    assert gw.produced() == before
    assert gw.handlers.seen == []


def _errors(response: Any) -> list[dict[str, str]]:
    body = assert_problem(response, 422, "invalid_request")
    errors: list[dict[str, str]] = body["errors"]
    assert errors
    assert all(set(e) == {"pointer", "detail"} and e["detail"] for e in errors)
    return errors


@pytest.mark.parametrize("path", [ORDERS, PARTNER_ORDERS])
def test_a_body_breaking_several_rules_gets_every_violation_in_one_answer(
        gw: Edge, path: str) -> None:
    body = {"customer": "", "admin": True,
            "lines": [{**LINE, "quantity": 0}, {"sku": "a", "quantity": "2"}]}
    errors = _errors(gw.http.post(path, json=body, headers={"x-api-key": gw.partner_key}))
    pointers = sorted(e["pointer"] for e in errors)
    assert pointers == ["/body", "/body/customer", "/body/lines/0/quantity", "/body/lines/1",
                        "/body/lines/1/quantity"], errors
    assert len({(e["pointer"], e["detail"]) for e in errors}) == len(errors), errors


@pytest.mark.parametrize(("body", "pointer"), [
    ({}, "/body"),
    ({"customer": "alice"}, "/body"),
    ({"customer": "", "lines": [LINE]}, "/body/customer"),
    ({"customer": "a" * 129, "lines": [LINE]}, "/body/customer"),
    ({"customer": "alice", "lines": []}, "/body/lines"),
    ({"customer": "alice", "lines": "x"}, "/body/lines"),
    ({"customer": "alice", "lines": [{**LINE, "quantity": 0}]}, "/body/lines/0/quantity"),
    ({"customer": "alice", "lines": [LINE, {**LINE, "quantity": "2"}]},
     "/body/lines/1/quantity"),
    ({"customer": "alice", "lines": [{**LINE, "unit_price": "-1"}]},
     "/body/lines/0/unit_price"),
    ({"customer": "alice", "lines": [{"sku": "a", "quantity": 1}]}, "/body/lines/0"),
    ({**ORDER, "admin": True}, "/body"),
    ([ORDER], "/body"),
    ("alice", "/body"),
], ids=["empty", "no-lines", "empty-customer", "long-customer", "no-line", "lines-not-list",
        "zero-quantity", "string-quantity", "negative-price", "missing-price", "extra-field",
        "array", "string"])
@pytest.mark.parametrize("path", [ORDERS, PARTNER_ORDERS])
def test_body_against_the_schema_is_422_with_a_pointer(
        gw: Edge, path: str, body: Any, pointer: str) -> None:
    response = gw.http.post(path, json=body, headers={"x-api-key": gw.partner_key})
    assert pointer in [e["pointer"] for e in _errors(response)]


def test_missing_body_is_422(gw: Edge) -> None:
    assert _errors(gw.http.post(ORDERS)) == [{"pointer": "/body", "detail": "is required"}]


@pytest.mark.parametrize("content", [b"{nope", b'{"customer": NaN}', b"\xff\xfe{}",
                                     b'{"customer": "a"} trailing',
                                     b"[" * 50_000 + b"]" * 50_000])  # found by make attack
def test_body_that_is_not_json_is_400(gw: Edge, content: bytes) -> None:
    response = gw.http.post(ORDERS, content=content,
                            headers={"content-type": "application/json"})
    assert_problem(response, 400, "malformed_json")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", None])
def test_wrong_content_type_is_415(gw: Edge, content_type: str | None) -> None:
    import json

    headers = {} if content_type is None else {"content-type": content_type}
    response = gw.http.post(ORDERS, content=json.dumps(ORDER).encode(), headers=headers)
    assert_problem(response, 415, "unsupported_media_type")
    assert response.headers["accept"] == "application/json"


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8",
                                          "Application/JSON", "application/merge-patch+json"])
def test_json_media_types_are_accepted(gw: Edge, content_type: str) -> None:
    # Past the media type check (not 415): the (deliberately incomplete) body is validated.
    response = gw.http.post(ORDERS, content=b'{"customer": ""}',
                            headers={"content-type": content_type})
    assert response.status_code == 422


def test_body_over_the_limit_with_content_length_is_413(gw: Edge) -> None:
    big = b'{"customer": "' + b"a" * MAX_BODY + b'"}'
    response = gw.http.post(ORDERS, content=big, headers={"content-type": "application/json"})
    body = assert_problem(response, 413, "body_too_large")
    assert str(MAX_BODY) in body["detail"]
    assert response.headers.get("x-request-id")


def test_body_over_the_limit_without_content_length_is_413(gw: Edge) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"customer": "'
        for _ in range(MAX_BODY // 4096 + 1):
            yield b"a" * 4096
        yield b'"}'

    response = gw.http.post(ORDERS, content=chunks(),
                            headers={"content-type": "application/json"})
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_problem(response, 413, "body_too_large")


def test_body_at_the_limit_is_read(gw: Edge) -> None:
    filler = MAX_BODY - len(b'{"customer": ""}')
    exact = b'{"customer": "' + b"a" * filler + b'"}'
    assert len(exact) == MAX_BODY
    response = gw.http.post(ORDERS, content=exact, headers={"content-type": "application/json"})
    assert response.status_code == 422  # read and validated (no lines), not 413


def test_413_from_the_allowed_origin_is_readable_by_the_browser(gw: Edge) -> None:
    big = b"[" + b"1," * MAX_BODY + b"1]"
    response = gw.http.post(ORDERS, content=big, headers={
        "content-type": "application/json", "origin": ALLOWED_ORIGIN})
    assert_problem(response, 413, "body_too_large")
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN


def test_invalid_content_length_is_refused(gw: Edge) -> None:
    response = gw.http.post(ORDERS, content=b"{}", headers={
        "content-type": "application/json", "content-length": "2x"})
    assert_problem(response, 400, "invalid_content_length")


# --- path and query parameters ---------------------------------------------------------------


@pytest.mark.parametrize("sku", ["bad!sku", "a" * 65, "sku%20one", "%C3%A9t%C3%A9"])
def test_path_parameter_against_its_pattern_is_422(gw: Edge, sku: str) -> None:
    errors = _errors(gw.http.get(f"/v1/products/{sku}", headers=bearer()))
    assert [e["pointer"] for e in errors] == ["/path/sku"]


@pytest.mark.parametrize(("query", "pointers"), [
    ("quantity=abc", ["/query/quantity"]),
    ("quantity=1.5", ["/query/quantity"]),
    ("quantity=0", ["/query/quantity"]),
    ("quantity=10001", ["/query/quantity"]),
    ("quantity=", ["/query/quantity"]),
    ("colour=red", ["/query/colour"]),
    ("quantity=2&debug=1&admin=true", ["/query/admin", "/query/debug"]),
])
def test_query_parameter_of_the_wrong_type_or_unknown_is_422(
        gw: Edge, query: str, pointers: list[str]) -> None:
    errors = _errors(gw.http.get(f"/v1/products/sku-1?{query}", headers=bearer()))
    assert sorted(e["pointer"] for e in errors) == pointers


def test_path_and_query_errors_are_reported_together(gw: Edge) -> None:
    errors = _errors(gw.http.get("/v1/products/bad!?quantity=x&y=1", headers=bearer()))
    assert sorted(e["pointer"] for e in errors) == ["/path/sku", "/query/quantity", "/query/y"]


def test_unknown_query_parameter_on_a_body_route_is_422(gw: Edge) -> None:
    errors = _errors(gw.http.post(f"{ORDERS}?customer=mallory", json=ORDER))
    assert [e["pointer"] for e in errors] == ["/query/customer"]


def test_body_field_clashing_with_a_path_parameter_is_422(gw: Edge) -> None:
    response = gw.http.post("/v1/customers/alice/orders",
                            json={"customer": "mallory", "lines": ORDER["lines"]})
    errors = _errors(response)
    assert errors == [{"pointer": "/body/customer",
                       "detail": "is also a path or query parameter; send it once"}]


def test_get_with_a_body_is_400(gw: Edge) -> None:
    response = gw.http.request("GET", "/v1/products/sku-1", content=b'{"sku": "other"}',
                               headers={**bearer(), "content-type": "application/json"})
    assert_problem(response, 400, "unexpected_body")


def test_auth_comes_before_validation(gw: Edge) -> None:
    """An anonymous caller learns nothing about the route's schema."""
    response = gw.http.get("/v1/products/bad!?quantity=x")
    assert_problem(response, 401, "missing_credentials")
    response = gw.http.post(PARTNER_ORDERS, json={})
    assert_problem(response, 401, "missing_credentials")
