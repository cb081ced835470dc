"""The live workers export their metrics to the local collector: after one call through the
HTTP endpoint, the collector's metrics file holds the standard messaging and mesh metrics of
the orders worker (written by ``meshgate up``'s collector, read from its file)."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from infra.settings import Settings
from infra.stack.otel_env import METRICS_FILE, telemetry_dir

pytestmark = pytest.mark.e2e
WAIT_S = 30.0
ORDER: dict[str, Any] = {"customer": "e2e-metrics",
                         "lines": [{"sku": "m-1", "quantity": 1, "unit_price": "1.00"}]}


def metric_names(settings: Settings, service: str) -> set[str]:
    path = telemetry_dir(settings) / METRICS_FILE
    if not path.exists():
        return set()
    names = set()
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row.get("service.name") == service:
            names.add(str(row["name"]))
    return names


def test_the_orders_worker_exports_standard_metrics(endpoint: str, settings: Settings) -> None:
    response = httpx.post(f"{endpoint}/v1/orders", json=ORDER, timeout=30)
    assert response.status_code == 201, response.text
    wanted = {"messaging.process.duration", "messaging.client.consumed.messages",
              "messaging.client.sent.messages", "mesh.messages.handled", "mesh.consumer.lag"}
    deadline = time.monotonic() + WAIT_S
    seen: set[str] = set()
    while time.monotonic() < deadline and not wanted <= seen:
        seen = metric_names(settings, "orders")
        time.sleep(1)
    assert wanted <= seen, sorted(seen)
