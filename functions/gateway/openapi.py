"""The OpenAPI description of each policy route, exactly as the policy declares it: path and
query parameters with their schemas, the body schema, the success answer, the problem+json
errors and the security requirement. FastAPI merges it into the operation it generates."""

from __future__ import annotations

from typing import Any

from bus.policy.model import Route, route_segments

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"},
        "status": {"type": "integer"}, "detail": {"type": "string"},
        "reason": {"type": "string"},
        "errors": {"type": "array", "items": {
            "type": "object", "properties": {"pointer": {"type": "string"},
                                             "detail": {"type": "string"}}}},
    },
}
ACCEPTED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["operation_id", "status", "status_url"],
    "properties": {"operation_id": {"type": "string"}, "status": {"type": "string"},
                   "status_url": {"type": "string"}},
}
OPERATION_STATUS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["operation_id", "status"],
    "properties": {
        "operation_id": {"type": "string"},
        "status": {"type": "string", "enum": ["pending", "succeeded", "failed"]},
        "result": {}, "error": {"type": "object"},
    },
}
SECURITY_SCHEMES: dict[str, Any] = {
    "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
}
ERROR_STATUSES = ("400", "401", "403", "404", "413", "415", "422", "429", "502", "503", "504")


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def problem_responses() -> dict[str, Any]:
    return {status: {"description": "a problem",
                     "content": {"application/problem+json": {"schema": PROBLEM_SCHEMA}}}
            for status in ERROR_STATUSES}


def success_schema(route: Route) -> dict[str, Any]:
    if route.aggregate is not None:
        return {"type": "object", "required": ["data", "errors", "partial"], "properties": {
            "data": {"type": "object", "properties": {name: {"type": "object"}
                                                      for name in route.aggregate}},
            "errors": {"type": "object"}, "partial": {"type": "boolean"}}}
    return dict(route.response_schema) if route.response_schema is not None else {}


def route_openapi(route: Route, status: int) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = []
    for segment in route_segments(route.path):
        if segment.startswith("{"):
            name = segment.strip("{}+")
            schema = dict(route.params.get(name, {"type": "string"}))
            parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    for name, schema in route.query.items():
        parameters.append({"name": name, "in": "query", "schema": dict(schema),
                           "required": name in route.required_query})
    operation: dict[str, Any] = {
        "operationId": f"{route.method.lower()}_{route.path}".replace("/", "_").strip("_"),
        "summary": " + ".join(route.operations()),
        "parameters": parameters,
        "responses": {
            str(status): (_json(ACCEPTED_SCHEMA, "accepted: poll status_url")
                          if route.mode == "async" else _json(success_schema(route), "done")),
            **problem_responses(),
        },
    }
    if route.request_schema is not None:
        operation["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": dict(route.request_schema)}}}
    if route.auth == "jwt":
        operation["security"] = [{"bearerAuth": list(route.scopes)}]
    elif route.auth == "api_key":
        operation["security"] = [{"apiKey": []}]
    else:
        operation["security"] = []
    return operation


def starlette_path(path: str) -> str:
    """``/files/{rest+}`` (API Gateway's greedy parameter) as Starlette writes it."""
    return "/".join(f"{{{s[1:-2]}:path}}" if s.endswith("+}") else s for s in path.split("/"))
