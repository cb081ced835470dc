"""bus.telemetry.mesh_telemetry without an SDK (issue 15): spans are skipped outright, and the
trace context still travels exactly where the API's no-op path carried it."""

from __future__ import annotations

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.metrics import _internal as metrics_api
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NoOpTracerProvider

from bus.envelope import ReplyTo, new_request, reply_for
from bus.telemetry.mesh_telemetry import MeshTelemetry

UPSTREAM = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
EDGE = "00-1bf7651916cd43dd8448eb211c80319c-c7ad6b7169203331-01"


@pytest.fixture
def no_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    """The globals as in a process that never installed an SDK."""
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    monkeypatch.setattr(metrics_api, "_METER_PROVIDER", None)


@pytest.mark.usefixtures("no_sdk")
def test_without_an_sdk_spans_are_one_shared_scope_and_stamp_changes_nothing() -> None:
    tel = MeshTelemetry("echo")
    assert tel.quiet
    envelope = new_request(source="caller", operation="echo.echo", value=b"{}",
                           reply_to=ReplyTo("mesh.replies", 0), deadline_ms=10**13,
                           traceparent=UPSTREAM)
    scopes = {id(tel.request_span("echo.echo", "echo.requests")),
              id(tel.publish_span(envelope, "echo.requests")),
              id(tel.process_span(envelope, "echo.requests", 0))}
    assert len(scopes) == 1
    with tel.process_span(envelope, "echo.requests", 0) as scope:
        scope.fail("boom")  # recorded nowhere, and no state kept on the shared scope
        assert scope.error_type is None
        assert not trace.get_current_span().get_span_context().is_valid
        reply = reply_for(envelope, source="echo", value=b"{}")
        assert tel.stamp(reply) is reply
        assert reply.traceparent == UPSTREAM  # the reply carries its request's trace


@pytest.mark.usefixtures("no_sdk")
def test_an_ambient_context_is_still_stamped_and_made_the_process_parent() -> None:
    """An edge extracts the HTTP request's traceparent and makes it current; its calls carry
    it (as the API's no-op spans did)."""
    tel = MeshTelemetry("gateway")
    token = otel_context.attach(tel.extract_headers(EDGE))
    try:
        envelope = new_request(source="gateway", operation="echo.echo", value=b"{}",
                               reply_to=ReplyTo("mesh.replies", 0), deadline_ms=10**13)
        with tel.request_span("echo.echo", "echo.requests"), \
                tel.publish_span(envelope, "echo.requests"):
            assert tel.stamp(envelope).traceparent == EDGE
        # A record handled under an ambient span: the record's own context becomes current.
        handled = envelope.with_trace(UPSTREAM, None)
        with tel.process_span(handled, "echo.requests", 0):
            assert tel.inject()[0] == UPSTREAM
    finally:
        otel_context.detach(token)


@pytest.mark.usefixtures("no_sdk")
def test_an_explicit_parent_is_made_current_without_an_sdk() -> None:
    tel = MeshTelemetry("gateway")
    envelope = new_request(source="gateway", operation="echo.echo", value=b"{}",
                           reply_to=ReplyTo("mesh.replies", 0), deadline_ms=10**13)
    with tel.request_span("echo.echo", "echo.requests", parent=tel.extract_headers(EDGE)):
        assert tel.stamp(envelope).traceparent == EDGE


@pytest.mark.usefixtures("no_sdk")
def test_providers_given_or_installed_are_never_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    provider = TracerProvider()
    assert not MeshTelemetry("echo", tracer_provider=provider).quiet
    tel = MeshTelemetry("echo")  # built before the SDK is installed
    assert tel.quiet
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)  # trace.set_tracer_provider
    assert not tel.quiet
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", NoOpTracerProvider())
    assert tel.quiet
    monkeypatch.setattr(metrics_api, "_METER_PROVIDER", MeterProvider())
    assert not tel.quiet  # metrics alone are recorded
    monkeypatch.setattr(metrics_api, "_METER_PROVIDER", NoOpMeterProvider())
    assert tel.quiet
