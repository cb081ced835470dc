"""bus.telemetry.mesh_telemetry: one trace across a simulated Kafka hop, conventions, errors,
metrics."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    Metric,
    NumberDataPoint,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.semconv._incubating.attributes import messaging_attributes as semconv_msg
from opentelemetry.semconv._incubating.metrics import messaging_metrics as semconv_msg_metrics
from opentelemetry.semconv.attributes import error_attributes as semconv_error
from opentelemetry.trace import SpanContext, SpanKind, StatusCode
from opentelemetry.util.types import AttributeValue

from bus.envelope import Envelope, ReplyTo, from_record, new_request, now_ms, to_headers
from bus.errors import DeadlineExceeded, HandlerError, RemoteError
from bus.telemetry import mesh_telemetry as tm
from bus.telemetry.mesh_telemetry import MeshTelemetry, error_type_of, outcome_of

REQUESTS = "orders.requests"
UPSTREAM = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@dataclass
class Otel:
    """Per-test SDK providers with in-memory span and metric capture."""

    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def telemetry(self, service: str) -> MeshTelemetry:
        return MeshTelemetry(service, self.tracer_provider, self.meter_provider)

    def spans(self) -> dict[str, ReadableSpan]:
        found = {span.name: span for span in self.exporter.get_finished_spans()}
        assert len(found) == len(self.exporter.get_finished_spans()), "span names must differ"
        return found

    def metric(self, name: str) -> Metric:
        data = self.reader.get_metrics_data()
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        return metric
        raise AssertionError(f"no metric {name}")

    def counts(self, name: str) -> dict[frozenset[tuple[str, AttributeValue]], int | float]:
        points = self.metric(name).data.data_points
        return {
            frozenset((point.attributes or {}).items()): point.value
            for point in points
            if isinstance(point, NumberDataPoint)
        }

    def histogram(self, name: str) -> list[HistogramDataPoint]:
        points = self.metric(name).data.data_points
        return [point for point in points if isinstance(point, HistogramDataPoint)]


@pytest.fixture
def otel() -> Iterator[Otel]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield Otel(exporter, reader, tracer_provider, meter_provider)
    tracer_provider.shutdown()
    meter_provider.shutdown()


def attrs(**values: AttributeValue) -> frozenset[tuple[str, AttributeValue]]:
    return frozenset(values.items())


def ctx(span: ReadableSpan) -> SpanContext:
    context = span.context
    assert isinstance(context, SpanContext)
    return context


def parent(span: ReadableSpan) -> SpanContext:
    assert span.parent is not None, f"{span.name} has no parent"
    return span.parent


def attributes(span: ReadableSpan) -> Mapping[str, AttributeValue]:
    return span.attributes or {}


def request(traceparent: str | None = None) -> Envelope:
    return new_request(
        source="gateway",
        operation="orders.create",
        value=b'{"sku": "a-1"}',
        reply_to=ReplyTo("gateway.replies", 2),
        deadline_ms=now_ms() + 5000,
        traceparent=traceparent,
    )


def wire(envelope: Envelope) -> Envelope:
    """What the consumer reads: the envelope through Kafka headers."""
    return from_record(to_headers(envelope), envelope.value)


# -- one trace across the hop -------------------------------------------------------------


def consume(service: MeshTelemetry, received: Envelope) -> None:
    key = received.id.encode()
    with (
        service.process_span(received, REQUESTS, 3, "orders", offset=42, key=key),
        service.request_span("inventory.reserve", "inventory.requests"),  # a handler's call
    ):
        pass


def test_hop_is_one_trace_with_producer_and_process_links(otel: Otel) -> None:
    caller, service = otel.telemetry("gateway"), otel.telemetry("orders")
    with caller.request_span("orders.create", REQUESTS):
        envelope = request()
        with caller.publish_span(envelope, REQUESTS, key=envelope.id.encode()):
            envelope = caller.stamp(envelope)
        received = wire(envelope)
        # The service runs elsewhere: an empty context, not the caller's.
        contextvars.Context().run(consume, service, received)

    spans = otel.spans()
    outer, send = spans["orders.create"], spans["send orders.requests"]
    process, nested = spans["process orders.requests"], spans["inventory.reserve"]
    assert {ctx(span).trace_id for span in spans.values()} == {ctx(outer).trace_id}
    assert outer.parent is None
    assert parent(send).span_id == ctx(outer).span_id
    assert parent(process).span_id == ctx(send).span_id
    assert parent(process).is_remote
    assert parent(nested).span_id == ctx(process).span_id
    assert process.links == ()
    assert (received.traceparent or "").startswith(
        f"00-{ctx(send).trace_id:032x}-{ctx(send).span_id:016x}-"
    )


async def test_nested_call_in_an_async_handler_task_is_a_child(otel: Otel) -> None:
    service = otel.telemetry("orders")

    async def handler() -> None:
        await asyncio.sleep(0)
        with service.request_span("inventory.reserve", "inventory.requests"):
            await asyncio.sleep(0)

    with service.process_span(wire(request(UPSTREAM)), REQUESTS, 0, "orders"):
        await asyncio.wait_for(handler(), 1.0)  # runs in its own task

    spans = otel.spans()
    process, nested = spans["process orders.requests"], spans["inventory.reserve"]
    assert f"{ctx(process).trace_id:032x}" == UPSTREAM.split("-")[1]
    assert parent(nested).span_id == ctx(process).span_id


def test_reply_publish_inside_process_continues_the_trace(otel: Otel) -> None:
    service = otel.telemetry("orders")
    received = wire(request(UPSTREAM))
    with (
        service.process_span(received, REQUESTS, 0, "orders"),
        service.publish_span(received, "gateway.replies", 2),
    ):
        reply = service.stamp(received)
    spans = otel.spans()
    send = spans["send gateway.replies"]
    assert parent(send).span_id == ctx(spans["process orders.requests"]).span_id
    assert reply.traceparent is not None
    assert reply.traceparent.split("-")[1] == UPSTREAM.split("-")[1]
    assert reply.traceparent.split("-")[2] == f"{ctx(send).span_id:016x}"


def test_current_span_is_restored_after_each_scope(otel: Otel) -> None:
    service = otel.telemetry("orders")
    before = trace.get_current_span()
    with service.request_span("orders.create", REQUESTS) as scope:
        assert trace.get_current_span() is scope.span
        with pytest.raises(ValueError, match="boom"), service.publish_span(request(), REQUESTS):
            raise ValueError("boom")
        assert trace.get_current_span() is scope.span
    assert trace.get_current_span() is before


def test_explicit_parent_and_tracestate_round_trip(otel: Otel) -> None:
    caller = otel.telemetry("gateway")
    edge = caller.extract_headers(UPSTREAM, "vendor=opaque")
    with (
        caller.request_span("orders.create", REQUESTS, parent=edge),
        caller.publish_span(request(), REQUESTS),
    ):
        traceparent, tracestate = caller.inject()
    assert traceparent is not None
    assert traceparent.split("-")[1] == UPSTREAM.split("-")[1]
    assert tracestate == "vendor=opaque"
    received = wire(replace(request(), traceparent=traceparent, tracestate=tracestate))
    extracted = trace.get_current_span(caller.extract(received)).get_span_context()
    assert extracted.is_remote
    assert extracted.trace_state.to_header() == "vendor=opaque"
    assert parent(otel.spans()["orders.create"]).span_id == int(UPSTREAM.split("-")[2], 16)


# -- malformed or missing context ---------------------------------------------------------


@pytest.mark.parametrize(
    "traceparent",
    [
        None,
        "",
        "garbage",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # zero trace id
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # zero span id
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # forbidden version
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b71692033-01",  # short span id
    ],
)
def test_malformed_traceparent_starts_a_new_trace(otel: Otel, traceparent: str | None) -> None:
    service = otel.telemetry("orders")
    received = wire(request(traceparent))
    assert not trace.get_current_span(service.extract(received)).get_span_context().is_valid
    with service.process_span(received, REQUESTS, 0, "orders"):
        pass
    process = otel.spans()["process orders.requests"]
    assert process.parent is None
    assert ctx(process).is_valid
    assert ctx(process).trace_id != int(UPSTREAM.split("-")[1], 16)


def test_ambient_span_becomes_a_link_not_the_parent(otel: Otel) -> None:
    service = otel.telemetry("orders")
    tracer = otel.tracer_provider.get_tracer("lambda")
    with (
        tracer.start_as_current_span("invocation") as invocation,
        service.process_span(wire(request(UPSTREAM)), REQUESTS, 0, "orders"),
    ):
        pass
    process = otel.spans()["process orders.requests"]
    assert parent(process).span_id == int(UPSTREAM.split("-")[2], 16)
    assert [link.context for link in process.links] == [invocation.get_span_context()]


# -- conventions --------------------------------------------------------------------------


def test_publish_span_attributes_follow_the_conventions(otel: Otel) -> None:
    caller = otel.telemetry("gateway")
    envelope = request()
    with caller.publish_span(envelope, REQUESTS, 5, key=envelope.id.encode()):
        pass
    send = otel.spans()["send orders.requests"]
    assert send.kind is SpanKind.PRODUCER
    assert send.status.status_code is StatusCode.UNSET
    assert dict(attributes(send)) == {
        "messaging.system": "kafka",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": REQUESTS,
        "messaging.destination.partition.id": "5",
        "messaging.message.id": envelope.id,
        "messaging.message.conversation_id": envelope.correlation_id,
        "messaging.message.body.size": len(envelope.value),
        "messaging.kafka.message.key": envelope.id,
        "mesh.operation": "orders.create",
        "mesh.kind": "request",
        "mesh.attempt": 1,
    }


def test_process_span_attributes_follow_the_conventions(otel: Otel) -> None:
    service = otel.telemetry("orders")
    received = wire(request(UPSTREAM))
    with service.process_span(received, REQUESTS, 3, "orders", offset=42, key="k-1"):
        pass
    process = otel.spans()["process orders.requests"]
    assert process.kind is SpanKind.CONSUMER
    assert dict(attributes(process)) == {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": REQUESTS,
        "messaging.destination.partition.id": "3",
        "messaging.consumer.group.name": "orders",
        "messaging.kafka.offset": 42,
        "messaging.message.id": received.id,
        "messaging.message.conversation_id": received.correlation_id,
        "messaging.message.body.size": len(received.value),
        "messaging.kafka.message.key": "k-1",
        "mesh.operation": "orders.create",
        "mesh.kind": "request",
        "mesh.attempt": 1,
        "mesh.source": "gateway",
    }


def test_request_span_is_a_client_span_named_by_operation(otel: Otel) -> None:
    with otel.telemetry("gateway").request_span("orders.create", REQUESTS):
        pass
    outer = otel.spans()["orders.create"]
    assert outer.kind is SpanKind.CLIENT
    assert dict(attributes(outer)) == {
        "messaging.system": "kafka",
        "messaging.destination.name": REQUESTS,
        "mesh.operation": "orders.create",
    }
    scope = outer.instrumentation_scope
    assert scope is not None
    assert scope.name == tm.SCOPE_NAME
    assert dict(scope.attributes or {}) == {"mesh.service": "gateway"}


def test_key_without_a_canonical_string_is_left_out(otel: Otel) -> None:
    caller = otel.telemetry("gateway")
    with caller.publish_span(request(), REQUESTS, key=b"\xff\xfe"):
        pass
    assert "messaging.kafka.message.key" not in attributes(otel.spans()["send orders.requests"])


def test_attribute_names_match_the_installed_semantic_conventions() -> None:
    assert tm.MESSAGING_SYSTEM == semconv_msg.MESSAGING_SYSTEM
    assert tm.MESSAGING_OPERATION_TYPE == semconv_msg.MESSAGING_OPERATION_TYPE
    assert tm.MESSAGING_OPERATION_NAME == semconv_msg.MESSAGING_OPERATION_NAME
    assert tm.MESSAGING_DESTINATION_NAME == semconv_msg.MESSAGING_DESTINATION_NAME
    assert tm.MESSAGING_DESTINATION_PARTITION_ID == (
        semconv_msg.MESSAGING_DESTINATION_PARTITION_ID
    )
    assert tm.MESSAGING_MESSAGE_ID == semconv_msg.MESSAGING_MESSAGE_ID
    assert tm.MESSAGING_MESSAGE_CONVERSATION_ID == semconv_msg.MESSAGING_MESSAGE_CONVERSATION_ID
    assert tm.MESSAGING_MESSAGE_BODY_SIZE == semconv_msg.MESSAGING_MESSAGE_BODY_SIZE
    assert tm.MESSAGING_KAFKA_MESSAGE_KEY == semconv_msg.MESSAGING_KAFKA_MESSAGE_KEY
    assert tm.MESSAGING_KAFKA_OFFSET == semconv_msg.MESSAGING_KAFKA_OFFSET
    assert tm.MESSAGING_CONSUMER_GROUP_NAME == semconv_msg.MESSAGING_CONSUMER_GROUP_NAME
    assert tm.ERROR_TYPE == semconv_error.ERROR_TYPE
    assert semconv_msg.MessagingSystemValues.KAFKA.value == tm.SYSTEM_KAFKA
    assert semconv_msg.MessagingOperationTypeValues.SEND.value == tm.OPERATION_SEND
    assert semconv_msg.MessagingOperationTypeValues.PROCESS.value == tm.OPERATION_PROCESS
    assert tm.METRIC_PROCESS_DURATION == semconv_msg_metrics.MESSAGING_PROCESS_DURATION
    assert tm.METRIC_CLIENT_OPERATION_DURATION == (
        semconv_msg_metrics.MESSAGING_CLIENT_OPERATION_DURATION
    )
    assert tm.METRIC_CLIENT_SENT == semconv_msg_metrics.MESSAGING_CLIENT_SENT_MESSAGES
    assert tm.METRIC_CLIENT_CONSUMED == semconv_msg_metrics.MESSAGING_CLIENT_CONSUMED_MESSAGES
    assert semconv_msg.MessagingOperationTypeValues.RECEIVE.value == tm.OPERATION_RECEIVE


# -- failures -----------------------------------------------------------------------------


class OutOfStock(Exception):
    pass


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (HandlerError("out_of_stock", "none left"), "out_of_stock"),
        (RemoteError("not_found", "no such order", False), "not_found"),
        (DeadlineExceeded("too late"), "deadline_exceeded"),
        (asyncio.CancelledError(), "cancelled"),
        (ValueError("bad"), "ValueError"),
        (OutOfStock(), f"{__name__}.OutOfStock"),
    ],
)
def test_error_type_of(error: BaseException, expected: str) -> None:
    assert error_type_of(error) == expected
    assert outcome_of(error) == expected
    assert outcome_of(None) == "ok"


def test_exception_in_process_sets_error_status_and_records_it(otel: Otel) -> None:
    service = otel.telemetry("orders")
    with (
        pytest.raises(HandlerError, match="none left"),
        service.process_span(wire(request(UPSTREAM)), REQUESTS, 0, "orders"),
    ):
        raise HandlerError("out_of_stock", "none left")
    process = otel.spans()["process orders.requests"]
    assert process.status.status_code is StatusCode.ERROR
    assert process.status.description == "HandlerError: none left"
    assert attributes(process)["error.type"] == "out_of_stock"
    [event] = process.events
    assert event.name == "exception"
    assert (event.attributes or {})["exception.type"] == "bus.errors.HandlerError"
    assert (event.attributes or {})["exception.message"] == "none left"


def test_remote_error_fails_the_request_span(otel: Otel) -> None:
    caller = otel.telemetry("gateway")
    with (
        pytest.raises(RemoteError),
        caller.request_span("orders.create", REQUESTS),
    ):
        raise RemoteError("not_found", "no such order", False)
    outer = otel.spans()["orders.create"]
    assert outer.status.status_code is StatusCode.ERROR
    assert attributes(outer)["error.type"] == "not_found"
    assert otel.counts("mesh.requests") == {
        attrs(**{"mesh.operation": "orders.create", "error.type": "not_found"}): 1
    }


def test_fail_without_exception_marks_the_span_and_the_outcome(otel: Otel) -> None:
    service = otel.telemetry("orders")
    with service.process_span(wire(request(UPSTREAM)), REQUESTS, 0, "orders") as scope:
        scope.fail("internal", "handler failed; error reply sent")
    process = otel.spans()["process orders.requests"]
    assert process.status.status_code is StatusCode.ERROR
    assert process.status.description == "handler failed; error reply sent"
    assert attributes(process)["error.type"] == "internal"
    assert process.events == ()
    assert otel.counts("mesh.messages.handled") == {
        attrs(**{"mesh.operation": "orders.create", "error.type": "internal"}): 1
    }
    [point] = otel.histogram("messaging.process.duration")
    assert (point.attributes or {})["error.type"] == "internal"


# -- metrics ------------------------------------------------------------------------------


def test_request_span_records_request_metrics(otel: Otel) -> None:
    caller = otel.telemetry("gateway")
    for _ in range(2):
        with caller.request_span("orders.create", REQUESTS):
            pass
    caller.record_request("orders.get", "deadline_exceeded", 0.25)
    assert otel.counts("mesh.requests") == {
        attrs(**{"mesh.operation": "orders.create"}): 2,
        attrs(**{"mesh.operation": "orders.get", "error.type": "deadline_exceeded"}): 1,
    }
    duration = otel.metric("mesh.request.duration")
    assert duration.unit == "s"
    points = {frozenset((p.attributes or {}).items()): p for p in otel.histogram(duration.name)}
    slow = points[attrs(**{"mesh.operation": "orders.get", "error.type": "deadline_exceeded"})]
    assert (slow.count, slow.sum) == (1, 0.25)
    assert tuple(slow.explicit_bounds) == tm.DURATION_BUCKETS
    fast = points[attrs(**{"mesh.operation": "orders.create"})]
    assert fast.count == 2
    assert 0 <= fast.sum < 1


def test_process_span_records_process_metrics(otel: Otel) -> None:
    service = otel.telemetry("orders")
    with service.process_span(wire(request(UPSTREAM)), REQUESTS, 3, "orders"):
        pass
    [point] = otel.histogram("messaging.process.duration")
    assert otel.metric("messaging.process.duration").unit == "s"
    assert dict(point.attributes or {}) == {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": REQUESTS,
        "messaging.destination.partition.id": "3",
        "messaging.consumer.group.name": "orders",
    }
    assert point.count == 1
    assert otel.counts("mesh.messages.handled") == {
        attrs(**{"mesh.operation": "orders.create"}): 1
    }


def test_counters_carry_their_attributes(otel: Otel) -> None:
    tel = otel.telemetry("orders")
    tel.count_retry("orders.create", "transport")
    tel.count_retry("orders.create", "transport")
    tel.count_dead_letter("orders.create", "retries_exhausted")
    tel.count_quarantined("bad_signature", REQUESTS)
    tel.count_quarantined("bad_envelope")
    assert otel.counts("mesh.retries") == {
        attrs(**{"mesh.operation": "orders.create", "error.type": "transport"}): 2
    }
    assert otel.counts("mesh.dead_letters") == {
        attrs(**{"mesh.operation": "orders.create", "error.type": "retries_exhausted"}): 1
    }
    assert otel.counts("mesh.quarantined") == {
        attrs(**{"error.type": "bad_signature", "messaging.destination.name": REQUESTS}): 1,
        attrs(**{"error.type": "bad_envelope"}): 1,
    }


# -- without an SDK -----------------------------------------------------------------------


def test_noop_providers_still_carry_an_incoming_trace() -> None:
    tel = MeshTelemetry(
        "orders", trace.NoOpTracerProvider(), metrics.NoOpMeterProvider()
    )
    envelope = request()
    assert tel.inject() == (None, None)
    assert tel.stamp(envelope) is envelope
    with tel.process_span(wire(request(UPSTREAM)), REQUESTS, 0, "orders") as scope:
        assert not scope.span.is_recording()
        with (
            tel.request_span("inventory.reserve", "inventory.requests"),
            tel.publish_span(envelope, "inventory.requests"),
        ):
            stamped = tel.stamp(envelope)
        scope.fail("internal")
    assert stamped.traceparent == UPSTREAM
    tel.count_quarantined("bad_envelope")


def test_global_providers_are_the_default() -> None:
    tel = MeshTelemetry("orders")
    with (
        pytest.raises(ValueError, match="boom"),
        tel.process_span(wire(request(UPSTREAM)), REQUESTS, 0),
    ):
        raise ValueError("boom")
    with tel.request_span("orders.create", REQUESTS):
        pass
    tel.count_retry("orders.create", "transport")
