"""Unreadable Lambda events get a 400-shaped answer, never an exception (which would make the
runtime restart the process): the check in ``functions.gateway.lambda_events`` covers every
field Mangum reads. Each hostile event is also fed to Mangum itself, over a small app, to
show that it is one the adapter really fails on, and every event the check lets through is
one Mangum reads."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from mangum import Mangum

from functions.gateway.lambda_events import event_problem, refusal

EVENTS = Path(__file__).resolve().parent.parent / "events"
V2: dict[str, Any] = json.loads((EVENTS / "apigw_v2_post_orders.json").read_text())
V1: dict[str, Any] = {
    "resource": "/{proxy+}", "path": "/v1/orders", "httpMethod": "POST", "version": "1.0",
    "headers": {"Host": "api.example.com", "content-type": "application/json"},
    "multiValueHeaders": {"Host": ["api.example.com"]},
    "queryStringParameters": None, "multiValueQueryStringParameters": None,
    "requestContext": {"identity": {"sourceIp": "198.51.100.7"}, "stage": "prod"},
    "body": "{}", "isBase64Encoded": False,
}


def changed(event: dict[str, Any], **fields: Any) -> dict[str, Any]:
    out = copy.deepcopy(event)
    out.update(fields)
    return out


def v2_http(**fields: Any) -> dict[str, Any]:
    out = copy.deepcopy(V2)
    out["requestContext"]["http"].update(fields)
    return out


UNREADABLE: dict[str, object] = {
    "null": None, "empty object": {}, "list": [V2], "string": "GET /", "number": 7,
    "v2 null headers": changed(V2, headers=None),
    "v2 header value not a string": changed(V2, headers={"host": "a", "x-n": 1}),
    "v2 headers a list": changed(V2, headers=[["host", "a"]]),
    "v2 body an object": changed(V2, body={"customer": "x"}),
    "v2 body a number": changed(V2, body=12),
    "v2 bad base64": changed(V2, body="%%%not base64", isBase64Encoded=True),
    "v2 isBase64Encoded a string": changed(V2, isBase64Encoded="yes"),
    "v2 null requestContext": changed(V2, requestContext=None),
    "v2 no http": changed(V2, requestContext={"stage": "$default"}),
    "v2 rawQueryString a list": changed(V2, rawQueryString=["a=1"]),
    "v2 bad port": changed(V2, headers={"host": "api.example.com:https"}),
    "v2 two colons in host": changed(V2, headers={"host": "[::1]:443"}),
    "v2 bad forwarded port": changed(V2, headers={"host": "a", "x-forwarded-port": "eighty"}),
    "v1 query a list": changed(V1, queryStringParameters=["a"]),
    "v1 null identity": changed(V1, requestContext={"identity": None}),
    "alb": changed(V2, requestContext={"elb": {"targetGroupArn": "arn:x"}}),
    "neither v1 nor v2": {"requestContext": {}, "path": "/"},
}
# Mangum reads these without raising, and hands the app garbage (a null method or source
# address, a cookie string taken apart letter by letter): refused too.
PASSED_ON_AS_GARBAGE: dict[str, object] = {
    "v1 header value a number": changed(V1, headers={"host": 1}),
    "v1 multi headers not lists": changed(V1, multiValueHeaders={"host": 5}),
    "v1 null httpMethod": changed(V1, httpMethod=None),
    "v2 cookies a string": changed(V2, cookies="a=1"),
    "v2 null method": v2_http(method=None),
    "v2 null sourceIp": v2_http(sourceIp=None),
}
READABLE: dict[str, dict[str, Any]] = {
    "recorded v2": V2,
    "v2 without headers": {k: v for k, v in V2.items() if k != "headers"},
    "v2 without body": {k: v for k, v in V2.items() if k != "body"},
    "v2 base64 body": changed(V2, body="e30=", isBase64Encoded=True),
    "v1": V1,
    "v1 null headers": changed(V1, headers=None, multiValueHeaders=None),
}


def adapter() -> Mangum:
    app = FastAPI()

    @app.post("/v1/orders", response_model=None)
    async def orders() -> dict[str, str]:
        return {"ok": "yes"}

    return Mangum(app, lifespan="off")


@pytest.mark.parametrize("name", sorted(UNREADABLE))
def test_unreadable_events_are_named_and_mangum_alone_would_raise(name: str) -> None:
    event = UNREADABLE[name]
    assert event_problem(event) is not None
    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever Mangum raises: it raises
        adapter()(event, None)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(PASSED_ON_AS_GARBAGE))
def test_events_mangum_would_pass_on_as_garbage_are_refused_too(name: str) -> None:
    assert event_problem(PASSED_ON_AS_GARBAGE[name]) is not None


@pytest.mark.parametrize("name", sorted(READABLE))
def test_readable_events_pass_and_mangum_answers_them(name: str) -> None:
    assert event_problem(READABLE[name]) is None
    answer = adapter()(READABLE[name], None)  # type: ignore[arg-type]
    assert answer["statusCode"] in (200, 404, 405), answer


def test_the_refusal_is_a_proxy_response_with_a_problem() -> None:
    answer = refusal("the event is NoneType, not a JSON object", instance="abc", invocations=3)
    assert answer["statusCode"] == 400
    assert answer["headers"] == {"content-type": "application/problem+json"}
    body = json.loads(answer["body"])
    assert (body["status"], body["reason"], body["instance"], body["invocations"]) == (
        400, "unreadable_event", "abc", 3)


@pytest.mark.parametrize("event", [None, [1], "x", 7])
def test_the_authorizer_denies_a_non_object_event_without_building_anything(event: object
                                                                            ) -> None:
    from functions.authorizer.handler import UNREADABLE_EVENT, handler

    assert handler(event, None) == UNREADABLE_EVENT
    assert UNREADABLE_EVENT["isAuthorized"] is False


@pytest.mark.parametrize("event", [None, {}, [1], {"eventSource": 5}, {
    "eventSource": "SelfManagedKafka", "bootstrapServers": "127.0.0.1:9092", "records": None}])
def test_the_orders_kafka_function_refuses_an_unreadable_event_without_raising(
        event: object) -> None:
    from functions.orders.lambda_handler import handler

    answer = handler(event, None)
    assert answer["statusCode"] == 400
    assert answer["error"] == "malformed_kafka_event"
    assert "batchItemFailures" not in answer  # a mapping would keep the batch, not drop it
