"""``POST /bench/echo``: the request body back, 200, with the request's content type."""

from __future__ import annotations

from typing import Any


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    headers = event.get("headers") or {}
    return {
        "statusCode": 200,
        "headers": {"content-type": headers.get("content-type", "application/octet-stream")},
        "body": event.get("body") or "",
        "isBase64Encoded": bool(event.get("isBase64Encoded", False)),
    }
