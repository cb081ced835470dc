"""The edge's OpenAPI document: valid OpenAPI 3.1 (the official schema of the OpenAPI
Initiative, 2022-10-07, as bundled by schemathesis: no network needed), and every route of the
project policy described exactly: path and query parameters with their schemas, the request
schema, the success status and schema, the problem+json errors and the security
requirement."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema_rs
import pytest
from schemathesis.specs.openapi.definitions import OPENAPI_31, OPENAPI_31_VALIDATOR

from bus.policy.model import Route, route_segments
from functions.gateway.openapi import (
    ACCEPTED_SCHEMA,
    ERROR_STATUSES,
    PROBLEM_SCHEMA,
    SECURITY_SCHEMES,
)
from tests.unit.edge_support import PROJECT, Edge, edge

GATEWAY_ROUTES = [r for r in PROJECT.routes if r.caller == "gateway"]


@pytest.fixture(scope="module")
def gw() -> Iterator[Edge]:
    with edge(workers=False) as state:
        yield state


@pytest.fixture(scope="module")
def document(gw: Edge) -> dict[str, Any]:
    response = gw.http.get("/openapi.json")
    assert response.status_code == 200
    doc: dict[str, Any] = response.json()
    return doc


def _operation(document: dict[str, Any], route: Route) -> dict[str, Any]:
    operation: dict[str, Any] = document["paths"][route.path][route.method.lower()]
    return operation


def test_the_official_schema_is_the_31_one() -> None:
    assert str(OPENAPI_31["$id"]).startswith("https://spec.openapis.org/oas/3.1/schema/")
    # The validator is not vacuous: it refuses a document without info and a bad response.
    assert not OPENAPI_31_VALIDATOR.is_valid({"openapi": "3.1.0", "paths": {}})
    assert not OPENAPI_31_VALIDATOR.is_valid({
        "openapi": "3.1.0", "info": {"title": "x", "version": "1"},
        "paths": {"/a": {"get": {"responses": {"200": {}}}}}})


def test_document_is_valid_openapi_31(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1.")
    errors = [f"{list(e.instance_path)}: {e.message}"
              for e in OPENAPI_31_VALIDATOR.iter_errors(document)]
    assert errors == []


def test_every_embedded_schema_is_valid_json_schema(document: dict[str, Any]) -> None:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            schemas = [p["schema"] for p in operation.get("parameters", [])]
            body = operation.get("requestBody", {}).get("content", {})
            schemas += [media["schema"] for media in body.values()]
            for response in operation["responses"].values():
                schemas += [media["schema"] for media in response.get("content", {}).values()]
            for schema in schemas:
                assert jsonschema_rs.meta.is_valid(schema), (method, path, schema)


def test_every_policy_route_is_present_and_nothing_else(document: dict[str, Any]) -> None:
    described = {(method.upper(), path) for path, item in document["paths"].items()
                 for method in item}
    expected = {(r.method, r.path) for r in GATEWAY_ROUTES}
    assert expected <= described
    # Besides the policy's routes only the async routes' status route is described.
    assert described - expected == {("GET", "/v1/operations/{operation_id}")}
    assert "/healthz" not in document["paths"]


@pytest.mark.parametrize("route", GATEWAY_ROUTES, ids=[r.name for r in GATEWAY_ROUTES])
def test_route_parameters_are_the_policys(document: dict[str, Any], route: Route) -> None:
    operation = _operation(document, route)
    expected = [{"name": s.strip("{}+"), "in": "path", "required": True,
                 "schema": dict(route.params.get(s.strip("{}+"), {"type": "string"}))}
                for s in route_segments(route.path) if s.startswith("{")]
    expected += [{"name": name, "in": "query", "required": name in route.required_query,
                  "schema": dict(schema)} for name, schema in route.query.items()]
    assert operation.get("parameters", []) == expected


def test_product_route_parameters_exactly(document: dict[str, Any]) -> None:
    operation = document["paths"]["/v1/products/{sku}"]["get"]
    assert operation["parameters"] == [
        {"name": "sku", "in": "path", "required": True,
         "schema": {"type": "string", "pattern": "^[A-Za-z0-9-]{1,64}$"}},
        {"name": "quantity", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": 10000}},
    ]
    assert "requestBody" not in operation


@pytest.mark.parametrize("route", GATEWAY_ROUTES, ids=[r.name for r in GATEWAY_ROUTES])
def test_route_request_schema_is_exact(document: dict[str, Any], route: Route) -> None:
    operation = _operation(document, route)
    if route.request_schema is None:
        assert "requestBody" not in operation
        return
    body = operation["requestBody"]
    assert body["required"] is True
    assert list(body["content"]) == ["application/json"]
    assert body["content"]["application/json"]["schema"] == route.request_schema
    assert "$ref" not in str(route.request_schema)  # the policy's $ref was resolved


@pytest.mark.parametrize("route", GATEWAY_ROUTES, ids=[r.name for r in GATEWAY_ROUTES])
def test_route_responses(document: dict[str, Any], route: Route) -> None:
    responses = _operation(document, route)["responses"]
    success = "202" if route.mode == "async" else str(route.status)
    assert set(responses) == {success, *ERROR_STATUSES}
    schema = responses[success]["content"]["application/json"]["schema"]
    if route.mode == "async":
        assert schema == ACCEPTED_SCHEMA
    elif route.aggregate is not None:
        assert schema["required"] == ["data", "errors", "partial"]
        assert set(schema["properties"]["data"]["properties"]) == set(route.aggregate)
    else:
        # a route without a response schema (policy check accepts it) answers any JSON
        assert schema == (route.response_schema if route.response_schema is not None
                          else {})
    for status in ERROR_STATUSES:
        assert responses[status]["content"] == {
            "application/problem+json": {"schema": PROBLEM_SCHEMA}}


def test_success_statuses_of_the_project_routes(document: dict[str, Any]) -> None:
    statuses: dict[tuple[str, str], str] = {
        (r.method, r.path): next(s for s in _operation(document, r)["responses"]
                                 if s.startswith("2")) for r in GATEWAY_ROUTES}
    demo = {("POST", "/v1/orders"): "201", ("POST", "/v1/partner/orders"): "201",
            ("GET", "/v1/products/{sku}"): "200", ("POST", "/v1/reports"): "202"}
    assert {key: statuses[key] for key in demo} == demo
    # any other route (a service added to policies/): its declared status, 202 when async
    for route in GATEWAY_ROUTES:
        if (route.method, route.path) not in demo:
            wanted = "202" if route.mode == "async" else str(route.status)
            assert statuses[(route.method, route.path)] == wanted


@pytest.mark.parametrize("route", GATEWAY_ROUTES, ids=[r.name for r in GATEWAY_ROUTES])
def test_route_security_requirement(document: dict[str, Any], route: Route) -> None:
    security = _operation(document, route)["security"]
    expected = {"jwt": [{"bearerAuth": list(route.scopes)}], "api_key": [{"apiKey": []}],
                "none": []}[route.auth]
    assert security == expected


def test_security_of_the_project_routes(document: dict[str, Any]) -> None:
    paths = document["paths"]
    assert paths["/v1/orders"]["post"]["security"] == []
    assert paths["/v1/partner/orders"]["post"]["security"] == [{"apiKey": []}]
    assert paths["/v1/products/{sku}"]["get"]["security"] == [{"bearerAuth": ["catalog:read"]}]
    assert paths["/v1/reports"]["post"]["security"] == [{"bearerAuth": ["reports:write"]}]
    assert document["components"]["securitySchemes"] == SECURITY_SCHEMES
    assert SECURITY_SCHEMES["apiKey"] == {"type": "apiKey", "in": "header", "name": "x-api-key"}


def test_operation_ids_are_unique(document: dict[str, Any]) -> None:
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
