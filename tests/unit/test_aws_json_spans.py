"""The fast item calls make the CLIENT span botocore's instrumentation would have made (it
does not see them): one per call, retries included, a refusal ended as an error; none at all
without a tracer SDK. Against the scripted server of test_aws_json_client (real sockets)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from opentelemetry import context, trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from proof.procs import free_port
from tests.unit.test_aws_json_client import Scripted, client_for, running_server

THROTTLED = {"__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException",
             "message": "slow down"}


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)  # trace.set_tracer_provider
    yield exporter
    provider.shutdown()


@pytest.fixture
def server() -> Iterator[Scripted]:
    with running_server() as scripted:
        yield scripted


def only(exporter: InMemorySpanExporter) -> ReadableSpan:
    (span,) = exporter.get_finished_spans()
    return span


def test_an_item_call_is_one_client_span_named_as_the_aws_conventions_say(
        spans: InMemorySpanExporter, server: Scripted) -> None:
    server.replies = [(400, THROTTLED, True), (200, {"Item": {}}, True)]
    parent = trace.get_tracer("test").start_span("process orders.requests")
    token = context.attach(trace.set_span_in_context(parent))
    try:
        client_for(server.server_port).get_item(TableName="orders-idem", Key={},
                                                ConsistentRead=True)
    finally:
        context.detach(token)
        parent.end()
    span = next(s for s in spans.get_finished_spans() if s.name == "DynamoDB.GetItem")
    assert span.kind is SpanKind.CLIENT
    assert span.parent is not None
    assert span.parent.span_id == parent.get_span_context().span_id
    assert dict(span.attributes or {}) == {
        "rpc.system": "aws-api", "rpc.service": "DynamoDB", "rpc.method": "GetItem",
        "db.system.name": "aws.dynamodb", "db.operation.name": "GetItem",
        "db.collection.name": "orders-idem", "aws.dynamodb.table_names": ("orders-idem",),
        "aws.dynamodb.consistent_read": True, "cloud.region": "eu-west-1",
        "server.address": "127.0.0.1", "server.port": server.server_port,
        "aws.request_id": "req-2", "http.response.status_code": 200, "aws.retry_attempts": 1}
    assert span.status.status_code is StatusCode.UNSET


def test_a_refusal_ends_the_span_as_an_error_with_its_code(
        spans: InMemorySpanExporter, server: Scripted) -> None:
    server.replies = [(400, {"__type": "com.amazonaws.dynamodb.v20120810#"
                                       "ValidationException", "message": "no"}, True)]
    with pytest.raises(ClientError):
        client_for(server.server_port).put_item(TableName="t", Item={})
    span = only(spans)
    assert span.name == "DynamoDB.PutItem"
    assert span.status.status_code is StatusCode.ERROR
    attributes = dict(span.attributes or {})
    assert attributes["error.type"] == "ValidationException"
    assert attributes["db.response.status_code"] == "ValidationException"
    assert attributes["aws.request_id"] == "req-1"
    assert attributes["http.response.status_code"] == 400
    assert [event.name for event in span.events] == ["exception"]


def test_a_failed_condition_is_recorded_and_not_an_error(
        spans: InMemorySpanExporter, server: Scripted) -> None:
    """A claim held by another delivery, a rate limiter's lost race: the write's "no" is an
    answer its caller reads, so the trace of a healthy request shows no failure."""
    server.replies = [(400, {"__type": "com.amazonaws.dynamodb.v20120810#"
                                       "ConditionalCheckFailedException", "message": "no"}, True)]
    with pytest.raises(ClientError):
        client_for(server.server_port).put_item(TableName="t", Item={})
    span = only(spans)
    assert span.status.status_code is StatusCode.UNSET
    attributes = dict(span.attributes or {})
    assert attributes["db.response.status_code"] == "ConditionalCheckFailedException"
    assert "error.type" not in attributes
    assert span.events == ()


def test_a_dead_endpoint_ends_the_span_as_an_error(spans: InMemorySpanExporter) -> None:
    with pytest.raises(EndpointConnectionError):
        client_for(free_port(), attempts=1).delete_item(TableName="t", Key={})
    span = only(spans)
    assert span.name == "DynamoDB.DeleteItem"
    assert span.status.status_code is StatusCode.ERROR


def test_without_a_tracer_sdk_no_span_is_made(monkeypatch: pytest.MonkeyPatch,
                                              server: Scripted) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    server.replies = [(200, {}, True)]
    client_for(server.server_port).put_item(TableName="t", Item={})
    assert exporter.get_finished_spans() == ()
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)  # and one once there is one
    server.replies = [(200, {}, True)]
    client_for(server.server_port).put_item(TableName="t", Item={})
    assert [span.name for span in exporter.get_finished_spans()] == ["DynamoDB.PutItem"]
