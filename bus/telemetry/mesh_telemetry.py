"""Tracing and metrics for the mesh: one unbroken trace from caller to service and back.

The trace context travels in the envelope's W3C ``traceparent``/``tracestate`` headers.
Spans and attributes follow the OpenTelemetry messaging semantic conventions for Kafka
(span names ``"send {topic}"`` / ``"process {topic}"``, ``messaging.*`` attributes,
``error.type`` on failure). The names are in ``bus.telemetry.conventions``, the span scopes in
``bus.telemetry.scopes``.

API
===

``MeshTelemetry(service_name, tracer_provider=None, meter_provider=None)``
    One per process (or per ``MeshClient`` / worker); holds the tracer, the meter and every
    instrument. With no providers it uses the OpenTelemetry global ones (a proxy until the
    application calls ``trace.set_tracer_provider`` / ``metrics.set_meter_provider``, so it
    may be built before the SDK is configured). Without an SDK (``quiet``) spans are
    skipped outright and ``stamp`` changes nothing; the trace still flows through the
    envelopes' own traceparents (a reply carries its request's, a nested call a child of
    the handled message's).

Propagation (read the current context / an envelope; no side effects)
    ``inject() -> tuple[str | None, str | None]``: (traceparent, tracestate) of the current
        span, ``(None, None)`` when there is no valid span.
    ``stamp(envelope) -> Envelope``: ``envelope`` carrying ``inject()``'s headers; the
        envelope is returned unchanged when there is nothing to inject.
    ``extract(envelope) -> Context``: the trace context the envelope carries, on top of an
        empty context. A missing or malformed ``traceparent`` gives an empty context, so a
        span started from it begins a new trace; it never raises.
    ``extract_headers(traceparent, tracestate=None) -> Context``: the same, from raw values.

Spans (context managers; each yields a ``SpanScope`` whose span is current inside)
    ``request_span(operation, topic, *, parent=None)``: CLIENT span named ``operation``,
        around one whole request/reply (retries and publishes happen inside it). On exit it
        records ``mesh.requests`` and ``mesh.request.duration``.
    ``publish_span(envelope, topic, partition=None, *, key=None)``: PRODUCER span
        ``"send {topic}"``. Call ``stamp`` inside it, so the consumer's parent is this span.
    ``process_span(envelope, topic, partition, group=None, *, offset=None, key=None)``:
        CONSUMER span ``"process {topic}"`` whose parent is ``extract(envelope)`` (an
        ambient span, e.g. a Lambda invocation, becomes a link). On exit it records
        ``messaging.process.duration`` and ``mesh.messages.handled``.
    An exception leaving a span is recorded on it, sets ERROR status and ``error.type``
    (see ``error_type_of``) and propagates. A failure that is not an exception (a handler
    that answered with an error reply) is reported with ``scope.fail(error_type)``.

Metrics (instruments are created once per ``MeshTelemetry``)
    ``record_request(operation, outcome, seconds)``: mesh.requests + mesh.request.duration.
        ``request_span`` already calls it; call it directly only for requests made without
        the span, never both.
    ``record_process(envelope, topic, partition, seconds, *, group=None, error_type=None)``:
        messaging.process.duration + mesh.messages.handled; ``process_span`` already
        calls it.
    ``count_retry(operation, reason)``: mesh.retries.
    ``count_dead_letter(operation, reason)``: mesh.dead_letters.
    ``count_quarantined(reason, topic=None)``: mesh.quarantined.
    ``count_consumed(records, group)``: messaging.client.consumed.messages, per partition.
    ``publish_span`` records messaging.client.sent.messages and
        messaging.client.operation.duration (``messaging.operation.name`` ``send``).
    ``watch_circuits(breakers)`` / ``watch_lag(report)``: the observable gauges
        mesh.circuit.state and mesh.consumer.lag (``bus.telemetry.gauges``).
    Outcomes are ``"ok"`` or an error type (``outcome_of(exc)``). Attributes follow the
    conventions: a failure is ``error.type`` (absent on success; a retry's, dead letter's or
    refusal's reason is one too), the operation is ``mesh.operation``, never a bare key.

Wiring guide
============

Caller (``MeshClient.request``)::

    with tel.request_span(operation, topic):
        envelope = new_request(...)                      # traceparent no longer needed
        with tel.publish_span(envelope, topic, key=envelope.id.encode()):
            envelope = tel.stamp(envelope)               # inside: the consumer's parent
            await transport.send(topic, envelope.value, headers=to_headers(envelope), ...)
        reply = await ...                                # waiting is part of request_span
        if reply.kind == KIND_ERROR:
            raise remote_error(reply)                    # error.type = the remote code
    # on a retry: tel.count_retry(operation, error_type_of(exc)), in the same request_span

A caller-supplied ``traceparent`` (e.g. from the edge) becomes the parent with
``request_span(operation, topic, parent=tel.extract_headers(traceparent))``. The client's
own fallback (``bus.telemetry.tracing.child_of`` / ``new_traceparent``) can stay on the envelope:
``stamp`` only replaces it when a span (recording or an extracted remote one) is current.
``MeshClient.publish`` (events): only ``publish_span`` + ``stamp`` around the send.

Worker (``ServiceWorker._process``) and the Lambda Kafka-event path, per record::

    request = guard.admit(record, now)  # on a refusal (MeshError exc), when parking it:
                                        # tel.count_quarantined(exc.code, record.topic)
    with tel.process_span(request, record.topic, record.partition, group_id,
                          offset=record.offset, key=record.key) as scope:
        outcome = await service.handle(request)       # handler calls nest under this span
        if outcome.error_code is not None:
            scope.fail(outcome.error_code)
        if outcome.reply is not None:
            to = request.reply_to
            with tel.publish_span(outcome.reply, to.topic, to.partition):
                reply = tel.stamp(outcome.reply)
                await transport.send(to.topic, reply.value, headers=to_headers(reply),
                                     partition=to.partition)
    # parking a message on a dead-letter topic: tel.count_dead_letter(request.type, reason)

``Service.handle`` needs nothing: handlers run inside the process span, so a
``MeshClient.request`` made by a handler is its child (asyncio tasks copy the context).

Cost: a span is one ``start_span`` plus one context attach/detach; attribute dicts are
small and built once per span. Without an SDK a span is one isinstance check per global
provider and a shared do-nothing scope (issue 15: the spans, attribute dicts, trace
extraction and injection of the API's no-op path cost ~25 us per request/reply).
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.metrics import Counter, Histogram, Meter, MeterProvider, NoOpMeterProvider
from opentelemetry.metrics import _internal as _metrics_api
from opentelemetry.metrics._internal import _ProxyMeterProvider
from opentelemetry.trace import (
    Link,
    NoOpTracerProvider,
    ProxyTracerProvider,
    Tracer,
    TracerProvider,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from bus.envelope import H_TRACEPARENT, H_TRACESTATE, Envelope
from bus.telemetry.conventions import (
    DURATION_BUCKETS,
    ERROR_TYPE,
    MESH_ATTEMPT,
    MESH_KIND,
    MESH_OPERATION,
    MESH_SERVICE,
    MESH_SOURCE,
    MESSAGING_CONSUMER_GROUP_NAME,
    MESSAGING_DESTINATION_NAME,
    MESSAGING_DESTINATION_PARTITION_ID,
    MESSAGING_KAFKA_MESSAGE_KEY,
    MESSAGING_KAFKA_OFFSET,
    MESSAGING_MESSAGE_BODY_SIZE,
    MESSAGING_MESSAGE_CONVERSATION_ID,
    MESSAGING_MESSAGE_ID,
    MESSAGING_OPERATION_NAME,
    MESSAGING_OPERATION_TYPE,
    MESSAGING_SYSTEM,
    METRIC_CLIENT_CONSUMED,
    METRIC_CLIENT_OPERATION_DURATION,
    METRIC_CLIENT_SENT,
    METRIC_DEAD_LETTERS,
    METRIC_HANDLED,
    METRIC_PROCESS_DURATION,
    METRIC_QUARANTINED,
    METRIC_REQUEST_DURATION,
    METRIC_REQUESTS,
    METRIC_RETRIES,
    OPERATION_NAME_POLL,
    OPERATION_PROCESS,
    OPERATION_RECEIVE,
    OPERATION_SEND,
    OUTCOME_OK,
    SCOPE_NAME,
    SYSTEM_KAFKA,
    Attributes,
    error_type_of,
    outcome_of,
)
from bus.telemetry.gauges import CircuitGauge, ConsumerLagGauge
from bus.telemetry.lag import LagReport
from bus.telemetry.scopes import ProcessScope, PublishScope, QuietScope, RequestScope, SpanScope
from bus.traffic.breaker import Breakers
from bus.transport import Record

__all__ = [
    "DURATION_BUCKETS", "ERROR_TYPE", "MESSAGING_CONSUMER_GROUP_NAME",
    "MESSAGING_DESTINATION_NAME", "MESSAGING_DESTINATION_PARTITION_ID",
    "MESSAGING_KAFKA_MESSAGE_KEY", "MESSAGING_KAFKA_OFFSET", "MESSAGING_MESSAGE_BODY_SIZE",
    "MESSAGING_MESSAGE_CONVERSATION_ID", "MESSAGING_MESSAGE_ID", "MESSAGING_OPERATION_NAME",
    "MESSAGING_OPERATION_TYPE", "MESSAGING_SYSTEM", "METRIC_CLIENT_CONSUMED",
    "METRIC_CLIENT_OPERATION_DURATION", "METRIC_CLIENT_SENT", "METRIC_PROCESS_DURATION",
    "OPERATION_PROCESS", "OPERATION_RECEIVE", "OPERATION_SEND", "SCOPE_NAME", "SYSTEM_KAFKA",
    "MeshTelemetry", "SpanScope", "error_type_of", "outcome_of",
]


def _key_text(key: bytes | str | None) -> str | None:
    """The key's canonical string form (UTF-8), or None when it has none."""
    if key is None or isinstance(key, str):
        return key
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        return None


_NO_SDK_TRACERS = (ProxyTracerProvider, NoOpTracerProvider)


def no_tracer_sdk() -> bool:
    """No tracer provider that records is installed (none set, or the API's proxy or no-op).
    The global is read directly: ``trace.get_tracer_provider()`` looks its environment
    variable up on every call while none is set. A provider named by that variable is loaded
    and set when a tracer is first asked for, so None still means "no SDK" after that."""
    provider = trace._TRACER_PROVIDER
    return provider is None or isinstance(provider, _NO_SDK_TRACERS)


def _ambient_span() -> bool:
    """Whether a valid span context is current (e.g. one an edge extracted from an HTTP
    request): even without an SDK, ``stamp`` must carry it on."""
    return trace.get_current_span().get_span_context().is_valid

_NO_SDK_METERS = (_ProxyMeterProvider, NoOpMeterProvider)


def no_meter_sdk() -> bool:
    """No meter provider that records is installed (none set, or the API's proxy or no-op).
    Read directly, as ``no_tracer_sdk`` reads its global: ``metrics.get_meter_provider()``
    looks its environment variable up on every call while none is set."""
    provider = _metrics_api._METER_PROVIDER
    return provider is None or isinstance(provider, _NO_SDK_METERS)


class MeshTelemetry:
    """Tracer, meter, propagator and instruments of one mesh participant (see module doc)."""

    def __init__(
        self,
        service_name: str,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.service_name = service_name
        # Providers given here are used whatever the globals are; else see ``quiet``.
        self._explicit = tracer_provider is not None or meter_provider is not None
        self._quiet_scope = QuietScope(self)
        scope_attributes: Attributes = {MESH_SERVICE: service_name}
        self.tracer: Tracer = trace.get_tracer(
            SCOPE_NAME, tracer_provider=tracer_provider, attributes=scope_attributes
        )
        meter = metrics.get_meter(
            SCOPE_NAME, meter_provider=meter_provider, attributes=scope_attributes
        )
        self._propagator = TraceContextTextMapPropagator()
        self._requests: Counter = meter.create_counter(
            METRIC_REQUESTS, unit="{request}", description="Requests sent, by outcome"
        )
        self._request_duration = _histogram(
            meter, METRIC_REQUEST_DURATION, "Caller-side request/reply duration"
        )
        self._retries = meter.create_counter(
            METRIC_RETRIES, unit="{retry}", description="Request attempts retried"
        )
        self._dead_letters = meter.create_counter(
            METRIC_DEAD_LETTERS, unit="{message}", description="Messages parked as dead letters"
        )
        self._quarantined = meter.create_counter(
            METRIC_QUARANTINED, unit="{message}",
            description="Messages refused before any handler (bad envelope, signature, ...)",
        )
        self._handled = meter.create_counter(
            METRIC_HANDLED, unit="{message}", description="Messages handled, by outcome"
        )
        self._process_duration = _histogram(
            meter, METRIC_PROCESS_DURATION, "Duration of processing one message"
        )
        self._client_duration = _histogram(
            meter, METRIC_CLIENT_OPERATION_DURATION, "Duration of one send to the broker"
        )
        self._sent = meter.create_counter(
            METRIC_CLIENT_SENT, unit="{message}",
            description="Messages the producer attempted to send",
        )
        self._consumed = meter.create_counter(
            METRIC_CLIENT_CONSUMED, unit="{message}",
            description="Messages delivered to the consumer by the broker",
        )
        self._circuits = CircuitGauge(meter)
        self._lag = ConsumerLagGauge(meter)

    @property
    def quiet(self) -> bool:
        """No SDK is installed (no providers given here, and the global ones are still the
        API's proxies or no-ops): spans would not record and instruments would drop every
        value, so spans are skipped outright and, unless a context is current (an edge's,
        extracted from its HTTP request), ``stamp`` leaves envelopes as they are (the
        envelope's own traceparent, ``bus.telemetry.tracing.child_of`` the handled message's,
        carries the trace). A request span with an explicit parent is still made (it makes
        the parent current). Checked per call: an SDK installed later takes effect at once."""
        if self._explicit:
            return False
        return no_tracer_sdk() and no_meter_sdk()

    # -- propagation -------------------------------------------------------------------

    def inject(self) -> tuple[str | None, str | None]:
        """(traceparent, tracestate) of the current span; (None, None) without one."""
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier)
        return carrier.get(H_TRACEPARENT), carrier.get(H_TRACESTATE)

    def stamp(self, envelope: Envelope) -> Envelope:
        """``envelope`` with the current trace context (unchanged if there is none)."""
        if self.quiet and not _ambient_span():
            return envelope
        traceparent, tracestate = self.inject()
        if traceparent is None:
            return envelope
        return envelope.with_trace(traceparent, tracestate)

    def extract(self, envelope: Envelope) -> Context:
        """The trace context ``envelope`` carries (empty when absent or malformed)."""
        return self.extract_headers(envelope.traceparent, envelope.tracestate)

    def extract_headers(self, traceparent: str | None, tracestate: str | None = None) -> Context:
        """The trace context of raw W3C header values (empty when absent or malformed)."""
        if not traceparent:
            return Context()
        carrier = {H_TRACEPARENT: traceparent}
        if tracestate:
            carrier[H_TRACESTATE] = tracestate
        return self._propagator.extract(carrier, context=Context())

    # -- spans -------------------------------------------------------------------------

    def request_span(
        self, operation: str, topic: str, *, parent: Context | None = None
    ) -> SpanScope:
        """CLIENT span around a whole request/reply; parent = ``parent`` or the current."""
        if parent is None and self.quiet:  # a parent is made current even without an SDK
            return self._quiet_scope
        attributes: Attributes = {
            MESSAGING_SYSTEM: SYSTEM_KAFKA,
            MESSAGING_DESTINATION_NAME: topic,
            MESH_OPERATION: operation,
        }
        return RequestScope(self, operation, attributes, parent)

    def publish_span(
        self,
        envelope: Envelope,
        topic: str,
        partition: int | None = None,
        *,
        key: bytes | str | None = None,
    ) -> SpanScope:
        """PRODUCER span ``"send {topic}"``; ``stamp`` the envelope inside it."""
        if self.quiet:
            return self._quiet_scope
        attributes = self._message_attributes(envelope, topic, partition, OPERATION_SEND, key)
        return PublishScope(self, topic, partition, attributes)

    def process_span(
        self,
        envelope: Envelope,
        topic: str,
        partition: int,
        group: str | None = None,
        *,
        offset: int | None = None,
        key: bytes | str | None = None,
    ) -> SpanScope:
        """CONSUMER span ``"process {topic}"``, child of the envelope's trace context."""
        if self.quiet and not _ambient_span():  # else the envelope's context replaces it
            return self._quiet_scope
        attributes = self._message_attributes(
            envelope, topic, partition, OPERATION_PROCESS, key
        )
        if group is not None:
            attributes[MESSAGING_CONSUMER_GROUP_NAME] = group
        if offset is not None:
            attributes[MESSAGING_KAFKA_OFFSET] = offset
        attributes[MESH_SOURCE] = envelope.source
        parent = self.extract(envelope)
        ambient = trace.get_current_span().get_span_context()
        links = [Link(ambient)] if ambient.is_valid else None
        return ProcessScope(
            self, envelope, topic, partition, group, attributes, parent, links
        )

    @staticmethod
    def _message_attributes(
        envelope: Envelope,
        topic: str,
        partition: int | None,
        operation: str,
        key: bytes | str | None,
    ) -> Attributes:
        attributes: Attributes = {
            MESSAGING_SYSTEM: SYSTEM_KAFKA,
            MESSAGING_OPERATION_TYPE: operation,
            MESSAGING_OPERATION_NAME: operation,
            MESSAGING_DESTINATION_NAME: topic,
            MESSAGING_MESSAGE_ID: envelope.id,
            MESSAGING_MESSAGE_BODY_SIZE: len(envelope.value),
            MESH_OPERATION: envelope.type,
            MESH_KIND: envelope.kind,
            MESH_ATTEMPT: envelope.attempt,
        }
        if partition is not None:
            attributes[MESSAGING_DESTINATION_PARTITION_ID] = str(partition)
        if envelope.correlation_id is not None:
            attributes[MESSAGING_MESSAGE_CONVERSATION_ID] = envelope.correlation_id
        key_text = _key_text(key)
        if key_text is not None:
            attributes[MESSAGING_KAFKA_MESSAGE_KEY] = key_text
        return attributes

    # -- metrics -----------------------------------------------------------------------

    def record_request(self, operation: str, outcome: str, seconds: float) -> None:
        """One finished request (caller side): count and duration."""
        attributes = _with_error({MESH_OPERATION: operation}, outcome)
        self._requests.add(1, attributes)
        self._request_duration.record(seconds, attributes)

    def record_send(
        self, topic: str, partition: int | None, seconds: float, error_type: str | None = None
    ) -> None:
        """One send (``publish_span`` calls it): sent messages and client operation duration."""
        attributes: Attributes = {
            MESSAGING_SYSTEM: SYSTEM_KAFKA,
            MESSAGING_OPERATION_TYPE: OPERATION_SEND,
            MESSAGING_OPERATION_NAME: OPERATION_SEND,
            MESSAGING_DESTINATION_NAME: topic,
        }
        if partition is not None:
            attributes[MESSAGING_DESTINATION_PARTITION_ID] = str(partition)
        if error_type is not None:
            attributes[ERROR_TYPE] = error_type
        self._sent.add(1, attributes)
        self._client_duration.record(seconds, attributes)

    def count_consumed(self, records: Sequence[Record], group: str | None = None) -> None:
        """Records a fetch delivered: messaging.client.consumed.messages per partition."""
        if not records or self.quiet:
            return
        per_partition: dict[tuple[str, int], int] = {}
        for record in records:
            key = (record.topic, record.partition)
            per_partition[key] = per_partition.get(key, 0) + 1
        for (topic, partition), count in per_partition.items():
            attributes: Attributes = {
                MESSAGING_SYSTEM: SYSTEM_KAFKA,
                MESSAGING_OPERATION_TYPE: OPERATION_RECEIVE,
                MESSAGING_OPERATION_NAME: OPERATION_NAME_POLL,
                MESSAGING_DESTINATION_NAME: topic,
                MESSAGING_DESTINATION_PARTITION_ID: str(partition),
            }
            if group is not None:
                attributes[MESSAGING_CONSUMER_GROUP_NAME] = group
            self._consumed.add(count, attributes)

    def record_process(
        self,
        envelope: Envelope,
        topic: str,
        partition: int,
        seconds: float,
        *,
        group: str | None = None,
        error_type: str | None = None,
    ) -> None:
        """One handled message (service side): messaging.process.duration and count."""
        attributes: Attributes = {
            MESSAGING_SYSTEM: SYSTEM_KAFKA,
            MESSAGING_OPERATION_TYPE: OPERATION_PROCESS,
            MESSAGING_OPERATION_NAME: OPERATION_PROCESS,
            MESSAGING_DESTINATION_NAME: topic,
            MESSAGING_DESTINATION_PARTITION_ID: str(partition),
        }
        if group is not None:
            attributes[MESSAGING_CONSUMER_GROUP_NAME] = group
        if error_type is not None:
            attributes[ERROR_TYPE] = error_type
        self._process_duration.record(seconds, attributes)
        self._handled.add(
            1, _with_error({MESH_OPERATION: envelope.type}, error_type or OUTCOME_OK)
        )

    def count_retry(self, operation: str, reason: str) -> None:
        self._retries.add(1, {MESH_OPERATION: operation, ERROR_TYPE: reason})

    def count_dead_letter(self, operation: str, reason: str) -> None:
        self._dead_letters.add(1, {MESH_OPERATION: operation, ERROR_TYPE: reason})

    def count_quarantined(self, reason: str, topic: str | None = None) -> None:
        attributes: Attributes = {ERROR_TYPE: reason}
        if topic is not None:
            attributes[MESSAGING_DESTINATION_NAME] = topic
        self._quarantined.add(1, attributes)

    # -- gauges ------------------------------------------------------------------------

    def watch_circuits(self, breakers: Breakers) -> None:
        """Report ``breakers`` in mesh.circuit.state (until collected or ``unwatch``)."""
        self._circuits.watch(breakers)

    def unwatch_circuits(self, breakers: Breakers) -> None:
        self._circuits.unwatch(breakers)

    def watch_lag(self, report: LagReport) -> None:
        """Report ``report`` in mesh.consumer.lag (until collected or ``unwatch``)."""
        self._lag.watch(report)

    def unwatch_lag(self, report: LagReport) -> None:
        self._lag.unwatch(report)


def _with_error(attributes: Attributes, outcome: str) -> Attributes:
    if outcome != OUTCOME_OK:
        attributes[ERROR_TYPE] = outcome
    return attributes


def _histogram(meter: Meter, name: str, description: str) -> Histogram:
    try:
        return meter.create_histogram(
            name, unit="s", description=description,
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
    except TypeError:  # opentelemetry-api < 1.28 has no bucket advice
        return meter.create_histogram(name, unit="s", description=description)
