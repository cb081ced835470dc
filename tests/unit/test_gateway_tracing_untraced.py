"""functions.gateway.tracing without an SDK (issue 15's fast path): the incoming trace is
current in the route and goes back on the answer, exactly as through the API's no-op tracer
(the slow path, forced here by passing the no-op provider explicitly), and nothing is
carried on when the request names no trace."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.trace import NoOpTracerProvider

from functions.gateway.tracing import TracingMiddleware

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _app(provider: Any) -> TestClient:
    app = FastAPI()

    @app.get("/here", response_model=None)
    async def here() -> dict[str, str]:
        context = trace.get_current_span().get_span_context()
        return {"trace": f"{context.trace_id:032x}", "span": f"{context.span_id:016x}"}

    app.add_middleware(TracingMiddleware, tracer_provider=provider)
    return TestClient(app)


@pytest.fixture
def no_sdk(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """No SDK installed (the global provider unset, what
    ``bus.telemetry.mesh_telemetry.no_tracer_sdk`` reads), and a count of the requests that
    took the fast path."""
    calls: list[int] = []
    untraced = TracingMiddleware._untraced

    async def counted(self: TracingMiddleware, *args: Any) -> None:
        calls.append(1)
        await untraced(self, *args)

    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    monkeypatch.setattr(TracingMiddleware, "_untraced", counted)
    return calls


@pytest.mark.parametrize("headers", [
    {"traceparent": TRACEPARENT},
    {"traceparent": TRACEPARENT[:-2] + "00"},  # not sampled
    {"traceparent": TRACEPARENT, "tracestate": "vendor=opaque,other=1"},
    {"x-amzn-trace-id": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;"
                        "Sampled=1"},
    {},
])
def test_without_an_sdk_the_answer_is_what_the_no_op_tracer_gives(
        no_sdk: list[int], headers: dict[str, str]) -> None:
    with _app(None) as fast, _app(NoOpTracerProvider()) as slow:
        quick = fast.get("/here", headers=headers)
        reference = slow.get("/here", headers=headers)
    assert no_sdk == [1]  # the fast path was taken once, the explicit no-op provider's not
    assert quick.status_code == reference.status_code == 200
    assert quick.json() == reference.json()
    assert quick.headers.get("traceparent") == reference.headers.get("traceparent")
    if headers:
        assert quick.headers["traceparent"].split("-")[1] == quick.json()["trace"]
    else:
        assert "traceparent" not in quick.headers
        assert quick.json()["trace"] == "0" * 32
