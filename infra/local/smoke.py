"""The demo call: one order through the HTTP endpoint (stdlib HTTP, so it runs anywhere)."""

from __future__ import annotations

import json
import shlex
import time
import urllib.error
import urllib.request
from typing import Any

from infra.errors import NotReachable

DEMO_ORDER: dict[str, Any] = {
    "customer": "demo",
    "lines": [{"sku": "sku-1", "quantity": 2, "unit_price": "9.99"},
              {"sku": "sku-2", "quantity": 1, "unit_price": "5.00"}],
}


def curl_line(endpoint: str) -> str:
    body = json.dumps(DEMO_ORDER, separators=(",", ":"))
    return (f"curl -sS -X POST {shlex.quote(endpoint + '/v1/orders')} "
            f"-H 'content-type: application/json' -d {shlex.quote(body)}")


def more_lines(endpoint: str) -> list[str]:
    """How to try the authenticated routes (a dev-issuer token, an API key, an async call)."""
    products = shlex.quote(endpoint + "/v1/products/sku-1?quantity=2")
    reports = shlex.quote(endpoint + "/v1/reports")
    partner = shlex.quote(endpoint + "/v1/partner/orders")
    order = shlex.quote(json.dumps(DEMO_ORDER, separators=(",", ":")))
    return [
        "TOKEN=$(.venv/bin/meshgate token --sub you --scope 'catalog:read reports:write')",
        f'curl -sS {products} -H "authorization: Bearer $TOKEN"   # aggregation',
        f"curl -sS -X POST {reports} -H \"authorization: Bearer $TOKEN\" "
        "-H 'content-type: application/json' -d '{\"customer\":\"demo\",\"work_ms\":3000}'"
        "   # async: 202 + status_url",
        ".venv/bin/meshgate keys issue --owner you --rate 5 --burst 10   # prints KEY once",
        f"curl -sS -X POST {partner} -H \"x-api-key: $KEY\" "
        f"-H 'content-type: application/json' -d {order}",
    ]


def post_json(url: str, body: dict[str, Any], timeout_s: float = 30.0) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST",
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw or b"null")
        except json.JSONDecodeError:
            return exc.code, raw.decode(errors="replace")


def demo_call(endpoint: str, within_s: float = 90.0) -> dict[str, Any]:
    """Make the demo call until it succeeds (the worker may still be joining its group)."""
    deadline = time.monotonic() + within_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            status, body = post_json(endpoint + "/v1/orders", DEMO_ORDER)
        except (OSError, json.JSONDecodeError) as exc:
            last = exc
        else:
            if 200 <= status < 300 and isinstance(body, dict):
                return body
            last = f"HTTP {status}: {body}"
            if 400 <= status < 500:
                break  # the request itself is wrong: retrying will not help
        time.sleep(1.0)
    raise NotReachable(f"the demo call to {endpoint} did not succeed in {within_s:g}s ({last})",
                       "check .local/workers/orders.log and the emulator log")
