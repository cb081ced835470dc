"""functions.gateway.http_metrics: HTTP server metrics by route template, through TestClient."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.semconv.attributes import http_attributes, url_attributes
from opentelemetry.semconv.metrics import http_metrics as semconv_http

from bus.policy.edge import Edge
from functions.gateway import http_metrics as hm
from functions.gateway.http_metrics import HttpMetricsMiddleware
from functions.gateway.middleware import install_middleware


class Edge_:
    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader])
        self.active_seen: list[int] = []
        app = FastAPI()

        @app.get("/v1/products/{sku}")
        async def product(sku: str) -> dict[str, str]:
            self.active_seen.append(self.active())
            return {"sku": sku}

        @app.post("/v1/boom")
        async def boom() -> None:
            raise RuntimeError("boom")

        app.add_middleware(HttpMetricsMiddleware, meter_provider=self.provider)
        self.client = TestClient(app, raise_server_exceptions=False)

    def points(self, name: str) -> dict[frozenset[tuple[str, Any]], Any]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return {frozenset((p.attributes or {}).items()): p
                for rm in data.resource_metrics for sm in rm.scope_metrics
                for m in sm.metrics if m.name == name for p in m.data.data_points}

    def active(self) -> int:
        return sum(int(p.value) for p in self.points(hm.METRIC_ACTIVE).values())


@pytest.fixture
def edge() -> Iterator[Edge_]:
    found = Edge_()
    yield found
    found.provider.shutdown()


def test_duration_uses_the_route_template_not_the_raw_path(edge: Edge_) -> None:
    for sku in ("a-1", "b-2", "c-3"):
        assert edge.client.get(f"/v1/products/{sku}").status_code == 200
    points = edge.points(hm.METRIC_DURATION)
    expected = frozenset({"http.request.method": "GET", "url.scheme": "http",
                          "http.route": "/v1/products/{sku}",
                          "http.response.status_code": 200}.items())
    assert list(points) == [expected]
    assert points[expected].count == 3
    assert tuple(points[expected].explicit_bounds) == hm.DURATION_BUCKETS


def test_unmatched_paths_have_no_route_and_odd_methods_are_other(edge: Edge_) -> None:
    edge.client.get("/nowhere/1")
    edge.client.get("/nowhere/2")
    edge.client.request("BREW", "/v1/products/a")
    points = edge.points(hm.METRIC_DURATION)
    assert points[frozenset({"http.request.method": "GET", "url.scheme": "http",
                             "http.response.status_code": 404}.items())].count == 2
    [other] = [k for k in points if dict(k)["http.request.method"] == "_OTHER"]
    assert dict(other)["http.response.status_code"] == 405


def test_a_server_error_carries_error_type(edge: Edge_) -> None:
    assert edge.client.post("/v1/boom").status_code == 500
    [attributes] = list(edge.points(hm.METRIC_DURATION))
    assert dict(attributes)["error.type"] == "RuntimeError"
    assert dict(attributes)["http.route"] == "/v1/boom"


def test_active_requests_count_the_request_in_flight(edge: Edge_) -> None:
    edge.client.get("/v1/products/a")
    assert edge.active_seen == [1]
    assert edge.active() == 0
    [attributes] = list(edge.points(hm.METRIC_ACTIVE))
    assert dict(attributes) == {"http.request.method": "GET", "url.scheme": "http"}


def test_duration_attributes_of_a_5xx_without_exception() -> None:
    scope = {"type": "http", "method": "GET", "scheme": "https"}
    assert hm.duration_attributes(scope, "GET", 503, None) == {
        "http.request.method": "GET", "url.scheme": "https",
        "http.response.status_code": 503, "error.type": "503"}
    assert hm.duration_attributes(scope, "GET", 0, TimeoutError()) == {
        "http.request.method": "GET", "url.scheme": "https", "error.type": "TimeoutError"}


def test_names_match_the_semantic_conventions() -> None:
    assert hm.METRIC_DURATION == semconv_http.HTTP_SERVER_REQUEST_DURATION
    assert hm.HTTP_REQUEST_METHOD == http_attributes.HTTP_REQUEST_METHOD
    assert hm.HTTP_ROUTE == http_attributes.HTTP_ROUTE
    assert hm.HTTP_RESPONSE_STATUS_CODE == http_attributes.HTTP_RESPONSE_STATUS_CODE
    assert hm.URL_SCHEME == url_attributes.URL_SCHEME
    from opentelemetry.semconv._incubating.metrics import http_metrics as incubating
    assert hm.METRIC_ACTIVE == incubating.HTTP_SERVER_ACTIVE_REQUESTS


def test_the_edge_installs_it() -> None:
    app = FastAPI()
    install_middleware(app, Edge())
    installed: list[object] = [m.cls for m in app.user_middleware]
    assert HttpMetricsMiddleware in installed


_LATE_SDK = """
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from functions.gateway.http_metrics import HttpMetricsMiddleware

app = FastAPI()

@app.get("/ping")
async def ping() -> dict[str, bool]:
    return {"ok": True}

app.add_middleware(HttpMetricsMiddleware)  # no provider given: the global one, when there is one
client = TestClient(app)
assert client.get("/ping").status_code == 200  # no SDK yet: skipped
reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
assert client.get("/ping").status_code == 200
assert client.get("/ping").status_code == 200
data = reader.get_metrics_data()
counts = [point.count for rm in data.resource_metrics for sm in rm.scope_metrics
          if sm.scope.name == "meshgate.gateway"  # not FastAPI's own, on in this bare app
          for metric in sm.metrics if metric.name == "http.server.request.duration"
          for point in metric.data.data_points]
print(counts)
"""


def test_without_an_sdk_nothing_is_measured_and_an_sdk_installed_later_counts_from_then() -> None:
    """The middleware skips its work while no meter SDK is installed (the AWS default: no
    OTEL_* variables); the global read per request means one installed later (in a fresh
    interpreter: the global can be set once) sees the requests made after it."""
    done = subprocess.run([sys.executable, "-c", _LATE_SDK], capture_output=True, text=True,
                          timeout=60, check=False, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[2]"
