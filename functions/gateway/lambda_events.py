"""Which Lambda events the gateway can read, and the answer to those it cannot (pure).

API Gateway only ever sends well-formed proxy events (HTTP API 2.0, or REST 1.0), but the
function can be invoked directly with anything: ``null``, ``{}``, a list, null headers, a
body that is not a string. Mangum assumes the proxy shape and raises on anything else, and
an uncaught exception makes the runtime restart the process, so the next genuine request
pays a cold start. ``event_problem`` checks every field the adapter reads, with the types it
needs; an unreadable event is answered ``refusal`` (400-shaped, problem+json) instead.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

BAD_EVENT_STATUS = 400
PROBLEM_JSON = "application/problem+json"


def _is_str_map(value: object) -> bool:
    return isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def _is_str_list_map(value: object) -> bool:
    return isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(i, str) for i in v)
        for k, v in value.items())


def _port_problem(headers: Mapping[str, str]) -> str | None:
    """Mangum reads the server from ``host`` (``name[:port]``) or ``x-forwarded-port``."""
    lowered = {k.lower(): v for k, v in headers.items()}
    host = lowered.get("host", "")
    port = host.split(":")[1:] if ":" in host else [lowered.get("x-forwarded-port", "80")]
    if len(port) != 1 or not port[0].isascii() or not port[0].isdigit():
        return "the host header or x-forwarded-port names no valid port"
    return None


def _body_problem(event: Mapping[str, Any]) -> str | None:
    body = event.get("body")
    encoded = event.get("isBase64Encoded", False)
    if not isinstance(encoded, bool):
        return "isBase64Encoded must be a boolean"
    if body is None:
        return None
    if not isinstance(body, str):
        return "body must be a string or null"
    if encoded:
        try:
            base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return "body is marked base64 but is not base64"
    return None


def _v2_problem(event: Mapping[str, Any]) -> str | None:
    http = event["requestContext"].get("http")
    if not isinstance(http, Mapping) or not all(
            isinstance(http.get(name), str) for name in ("method", "path", "sourceIp")):
        return "requestContext.http needs string method, path and sourceIp"
    headers = event.get("headers", {})
    if not _is_str_map(headers):
        return "headers must be an object of strings"
    if not isinstance(event.get("rawQueryString", ""), str):
        return "rawQueryString must be a string"
    cookies = event.get("cookies", [])
    if not isinstance(cookies, list) or not all(isinstance(c, str) for c in cookies):
        return "cookies must be a list of strings"
    return _port_problem(headers)


def _v1_problem(event: Mapping[str, Any]) -> str | None:
    if not isinstance(event.get("httpMethod"), str) or not isinstance(event.get("path"), str):
        return "httpMethod and path must be strings"
    headers = event.get("headers") or {}
    multi = event.get("multiValueHeaders") or {}
    if not _is_str_map(headers) or not _is_str_list_map(multi):
        return "headers must be an object of strings (multiValueHeaders: of string lists)"
    query = event.get("queryStringParameters") or {}
    multi_query = event.get("multiValueQueryStringParameters") or {}
    if not _is_str_map(query) or not _is_str_list_map(multi_query):
        return "query parameters must be objects of strings (or of string lists)"
    identity = event["requestContext"].get("identity", {})
    if not isinstance(identity, Mapping) or not isinstance(identity.get("sourceIp", ""), str):
        return "requestContext.identity must be an object with a string sourceIp"
    return _port_problem({**headers, **{k: ", ".join(v) for k, v in multi.items()}})


def event_problem(event: object) -> str | None:
    """Why the gateway cannot read ``event`` as an API Gateway proxy event (None: it can)."""
    if not isinstance(event, Mapping):
        return f"the event is {type(event).__name__}, not a JSON object"
    context = event.get("requestContext")
    if not isinstance(context, Mapping):
        return "not an API Gateway proxy event: requestContext must be an object"
    if "elb" in context:
        return "an ALB event; the gateway is served by API Gateway"
    if event.get("version") == "2.0":
        problem = _v2_problem(event)
    elif "resource" in event or "version" in event:
        problem = _v1_problem(event)
    else:
        return "not an API Gateway proxy event (HTTP API 2.0 or REST)"
    return problem or _body_problem(event)


def refusal(detail: str, *, instance: str, invocations: int) -> dict[str, Any]:
    """The answer to an unreadable event, in the proxy response shape (v1 and v2 both read
    it). ``instance`` and ``invocations`` (this process's id and its invocations so far) let
    a direct invoker see that the process lived on; API Gateway never sends such events."""
    body = {"type": "about:blank", "title": "Bad Request", "status": BAD_EVENT_STATUS,
            "detail": detail, "reason": "unreadable_event", "instance": instance,
            "invocations": invocations}
    return {"statusCode": BAD_EVENT_STATUS, "headers": {"content-type": PROBLEM_JSON},
            "body": json.dumps(body), "isBase64Encoded": False}
