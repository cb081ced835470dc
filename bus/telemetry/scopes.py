"""One span in progress (``SpanScope``) and its kinds: a request, a publish, the processing of
a message, and the quiet scope used while no SDK is installed. Each records its metrics on
exit through the ``MeshTelemetry`` that made it (``bus.telemetry.mesh_telemetry``)."""

from __future__ import annotations

import time
from contextvars import Token
from types import TracebackType
from typing import Protocol, Self

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import INVALID_SPAN, Link, Span, SpanKind, Status, StatusCode, Tracer

from bus.envelope import Envelope
from bus.telemetry.conventions import (
    ERROR_TYPE,
    OPERATION_PROCESS,
    OPERATION_SEND,
    OUTCOME_OK,
    Attributes,
    error_type_of,
)


class ScopeOwner(Protocol):
    """What a scope needs of ``bus.telemetry.mesh_telemetry.MeshTelemetry`` (a protocol, so
    the two modules do not import each other)."""

    tracer: Tracer

    def record_request(self, operation: str, outcome: str, seconds: float) -> None: ...

    def record_send(self, topic: str, partition: int | None, seconds: float,
                    error_type: str | None = None) -> None: ...

    def record_process(self, envelope: Envelope, topic: str, partition: int, seconds: float,
                       *, group: str | None = None, error_type: str | None = None) -> None: ...


class SpanScope:
    """One span in progress; ``with`` makes it current, ``fail`` marks a non-exception error.

    Returned by ``MeshTelemetry.request_span`` / ``publish_span`` / ``process_span``; use it
    once. ``span`` is the OpenTelemetry span (for extra attributes or events).
    """

    __slots__ = (
        "_attributes", "_kind", "_links", "_name", "_parent", "_start", "_telemetry", "_token",
        "description", "error_type", "span",
    )

    def __init__(
        self,
        telemetry: ScopeOwner,
        name: str,
        kind: SpanKind,
        attributes: Attributes,
        parent: Context | None = None,
        links: list[Link] | None = None,
    ) -> None:
        self._telemetry = telemetry
        self._name = name
        self._kind = kind
        self._attributes = attributes
        self._parent = parent
        self._links = links
        self._start = 0.0
        self._token: Token[Context] | None = None
        self.span: Span = INVALID_SPAN
        self.error_type: str | None = None
        self.description: str | None = None

    def fail(self, error_type: str, description: str | None = None) -> None:
        """Mark the operation failed without raising (e.g. an error reply was sent)."""
        self.error_type = error_type
        self.description = description

    def __enter__(self) -> Self:
        span = self._telemetry.tracer.start_span(
            self._name,
            context=self._parent,
            kind=self._kind,
            attributes=self._attributes,
            links=self._links,
            record_exception=False,
            set_status_on_exception=False,
        )
        self.span = span
        # Keep the ambient context's other values; only the current span changes.
        self._token = otel_context.attach(trace.set_span_in_context(span))
        self._start = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        seconds = time.perf_counter() - self._start
        if self._token is not None:
            otel_context.detach(self._token)
            self._token = None
        span = self.span
        if exc is not None and self.error_type is None:
            self.error_type = error_type_of(exc)
            if self.description is None:
                self.description = f"{type(exc).__name__}: {exc}"
        if span.is_recording():
            if exc is not None:
                span.record_exception(exc)
            if self.error_type is not None:
                span.set_attribute(ERROR_TYPE, self.error_type)
                span.set_status(Status(StatusCode.ERROR, self.description))
        span.end()
        self._record(seconds)

    def _record(self, seconds: float) -> None:
        """Metrics for the finished operation (none for a publish)."""


class RequestScope(SpanScope):
    __slots__ = ("_operation",)

    def __init__(
        self, telemetry: ScopeOwner, operation: str, attributes: Attributes,
        parent: Context | None,
    ) -> None:
        super().__init__(telemetry, operation, SpanKind.CLIENT, attributes, parent)
        self._operation = operation

    def _record(self, seconds: float) -> None:
        self._telemetry.record_request(
            self._operation, self.error_type or OUTCOME_OK, seconds
        )


class PublishScope(SpanScope):
    __slots__ = ("_partition", "_topic")

    def __init__(
        self, telemetry: ScopeOwner, topic: str, partition: int | None,
        attributes: Attributes,
    ) -> None:
        super().__init__(telemetry, f"{OPERATION_SEND} {topic}", SpanKind.PRODUCER, attributes)
        self._topic = topic
        self._partition = partition

    def _record(self, seconds: float) -> None:
        self._telemetry.record_send(self._topic, self._partition, seconds, self.error_type)


class ProcessScope(SpanScope):
    __slots__ = ("_envelope", "_group", "_partition", "_topic")

    def __init__(
        self,
        telemetry: ScopeOwner,
        envelope: Envelope,
        topic: str,
        partition: int,
        group: str | None,
        attributes: Attributes,
        parent: Context,
        links: list[Link] | None,
    ) -> None:
        super().__init__(
            telemetry, f"{OPERATION_PROCESS} {topic}", SpanKind.CONSUMER, attributes, parent,
            links,
        )
        self._envelope = envelope
        self._topic = topic
        self._partition = partition
        self._group = group

    def _record(self, seconds: float) -> None:
        self._telemetry.record_process(
            self._envelope, self._topic, self._partition, seconds,
            group=self._group, error_type=self.error_type,
        )


class QuietScope(SpanScope):
    """What every span is while no SDK is installed: nothing to start, attach or record."""

    __slots__ = ()

    def __init__(self, telemetry: ScopeOwner) -> None:
        super().__init__(telemetry, "", SpanKind.INTERNAL, {})

    def fail(self, error_type: str, description: str | None = None) -> None:
        """Nothing records it."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None
