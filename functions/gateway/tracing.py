"""A SERVER span per HTTP request (plain ASGI middleware, outermost of the edge's own).

The span continues the trace the request names (``trace_context.incoming_trace``: W3C
``traceparent``, else the X-Ray header, else a new trace), is current while the route runs,
so the route's mesh calls are its children, and its ``traceparent`` goes back on the answer.
Its name is ``"{method} {route template}"`` once routing has matched (``"{method}"`` for an
unmatched path, as the HTTP conventions ask); a 5xx answer or an exception is an error.

Without an SDK the tracer is the API's no-op: no span is recorded, yet an incoming context
is still current, so the mesh messages carry the caller's trace on.
"""

from __future__ import annotations

from typing import Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TracerProvider,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bus.telemetry.mesh_telemetry import no_tracer_sdk
from functions.gateway.trace_context import IncomingTrace, incoming_trace

SCOPE_NAME: Final = "meshgate.gateway"
TRACEPARENT: Final = b"traceparent"
_PROPAGATOR = TraceContextTextMapPropagator()


def parent_context(scope: Scope) -> Context:
    """The remote parent of a request (an empty context when it continues no trace)."""
    return _parent_of(incoming_trace(scope.get("headers", ())))


def _parent_of(incoming: IncomingTrace | None) -> Context:
    if incoming is None:
        return Context()
    if incoming.tracestate:  # the propagator parses and bounds the vendors' state
        carrier = {"traceparent": incoming.traceparent, "tracestate": incoming.tracestate}
        return _PROPAGATOR.extract(carrier, context=Context())
    # A traceparent incoming_trace has validated: build its context directly, as the
    # propagator would (the propagator's regex and carrier cost a few us per request).
    fields = incoming.traceparent.split("-")
    parent = SpanContext(int(fields[1], 16), int(fields[2], 16), is_remote=True,
                         trace_flags=TraceFlags(int(fields[3][:2], 16)))
    return trace.set_span_in_context(NonRecordingSpan(parent), Context())


def traceparent_of(span: Span) -> str | None:
    """The W3C traceparent naming ``span`` (None for an invalid span)."""
    context = span.get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def _request_attributes(scope: Scope) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {
        "http.request.method": str(scope.get("method", "_OTHER")),
        "url.path": str(scope.get("path", "")),
        "url.scheme": str(scope.get("scheme", "http")),
    }
    client = scope.get("client")
    if client:
        attributes["client.address"] = str(client[0])
    for name, value in scope.get("headers", ()):
        if name == b"user-agent":
            attributes["user_agent.original"] = value.decode("latin-1")
            break
    event = scope.get("aws.event")
    if isinstance(event, dict) and isinstance(event.get("requestContext"), dict):
        request_id = event["requestContext"].get("requestId")
        if isinstance(request_id, str):
            attributes["aws.request_id"] = request_id
    return attributes


class TracingMiddleware:
    def __init__(self, app: ASGIApp, tracer_provider: TracerProvider | None = None) -> None:
        self.app = app
        self._provider = tracer_provider
        self._tracer = trace.get_tracer(SCOPE_NAME, tracer_provider=tracer_provider)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._provider is None and no_tracer_sdk():
            await self._untraced(scope, receive, send)
            return
        method = str(scope.get("method", "_OTHER"))
        span = self._tracer.start_span(
            method, context=parent_context(scope), kind=SpanKind.SERVER,
            attributes=_request_attributes(scope), record_exception=False,
            set_status_on_exception=False,
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        header = traceparent_of(span)
        status = 0

        async def send_traced(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                if header is not None:
                    headers = [h for h in message.get("headers", []) if h[0] != TRACEPARENT]
                    headers.append((TRACEPARENT, header.encode()))
                    message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_traced)
        except BaseException as exc:
            if span.is_recording():
                span.record_exception(exc)
                span.set_attribute("error.type", type(exc).__qualname__)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise
        finally:
            otel_context.detach(token)
            _finish(span, scope, method, status)


    async def _untraced(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Without an SDK, what the API's no-op tracer would do, without its span: the
        incoming trace is current (the mesh calls carry it on) and goes back on the answer;
        no attributes are gathered for a span nobody records (the AWS default: no
        ``MESHGATE_OTEL_*``)."""
        incoming = incoming_trace(scope.get("headers", ()))
        token = otel_context.attach(_parent_of(incoming))
        try:
            if incoming is None:
                await self.app(scope, receive, send)
                return
            # The W3C form of the parent made current, byte for byte what traceparent_of()
            # prints for it (tests/unit/test_gateway_tracing_untraced.py).
            value = incoming.traceparent.encode()

            async def send_traced(message: Message) -> None:
                if message["type"] == "http.response.start":
                    headers = [h for h in message.get("headers", []) if h[0] != TRACEPARENT]
                    headers.append((TRACEPARENT, value))
                    message = {**message, "headers": headers}
                await send(message)

            await self.app(scope, receive, send_traced)
        finally:
            otel_context.detach(token)


def _finish(span: Span, scope: Scope, method: str, status: int) -> None:
    if span.is_recording():
        route = getattr(scope.get("route"), "path", None)
        if isinstance(route, str):
            span.update_name(f"{method} {route}")
            span.set_attribute("http.route", route)
        if status:
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_attribute("error.type", str(status))
                span.set_status(Status(StatusCode.ERROR))
    span.end()
