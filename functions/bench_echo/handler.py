"""``POST /bench/echo``: the request body back, 200, with the request's content type.

It logs one line per request, as the gateway does. Besides being what a function does, this
keeps the emulator fair: ministack waits up to 50 ms for a silent handler's log output after
each invocation (``lambda_runtime._drain_stderr_bounded``), and 5 ms of quiet after a line.
"""

from __future__ import annotations

import sys
from typing import Any


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    headers = event.get("headers") or {}
    body = event.get("body") or ""
    print(f"bench-echo: {len(body)} bytes", file=sys.stderr, flush=True)
    return {
        "statusCode": 200,
        "headers": {"content-type": headers.get("content-type", "application/octet-stream")},
        "body": body,
        "isBase64Encoded": bool(event.get("isBase64Encoded", False)),
    }
