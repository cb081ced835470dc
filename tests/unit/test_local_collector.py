"""infra.local.otlp_decode, infra.local.span_log and infra.local.collector: real OTLP requests
(built by the SDK's own encoder and sent by its own OTLP/HTTP exporters over a loopback socket)
become one JSON line per span; the files rotate at their bound."""

from __future__ import annotations

import gzip
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from functions.shared.otel_setup import TelemetryConfig, telemetry_config
from infra.local import workers as local
from infra.local.collector import CollectorConfig, CollectorServer
from infra.local.otlp_decode import OtlpDecodeError, decompress, span_rows
from infra.local.span_log import JsonLines, read_rows, rotated
from infra.settings import Settings
from infra.stack.otel_env import otel_environment
from proof.serving import serving


def _spans() -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "orders"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("meshgate.bus")
    attributes: dict[str, AttributeValue] = {
        "messaging.kafka.offset": 7, "tags": ["a", "b"], "ok": True}
    with (tracer.start_as_current_span("process orders.requests", kind=SpanKind.CONSUMER,
                                       attributes=attributes),
          tracer.start_as_current_span("inventory.stock", kind=SpanKind.CLIENT) as child):
        child.set_status(Status(StatusCode.ERROR, "out of stock"))
    return list(memory.get_finished_spans())


def test_a_trace_request_decodes_to_one_row_per_span() -> None:
    spans = _spans()
    body = encode_spans(spans).SerializeToString()
    rows = {row["name"]: row for row in span_rows(body)}
    process, call = rows["process orders.requests"], rows["inventory.stock"]
    assert process["trace_id"] == f"{spans[0].context.trace_id:032x}"
    assert process["parent_span_id"] is None
    assert call["parent_span_id"] == process["span_id"]
    assert call["trace_id"] == process["trace_id"]
    assert process["kind"] == "CONSUMER"
    assert call["kind"] == "CLIENT"
    assert process["service.name"] == "orders"
    assert process["scope"] == "meshgate.bus"
    assert process["attributes"] == {"messaging.kafka.offset": 7, "tags": ["a", "b"], "ok": True}
    assert (call["status"], call["status_message"]) == ("ERROR", "out of stock")
    assert process["status"] == "UNSET"
    assert 0 < process["start_ns"] <= call["start_ns"] <= call["end_ns"] <= process["end_ns"]


def test_garbage_is_refused_not_guessed() -> None:
    with pytest.raises(OtlpDecodeError):
        span_rows(b"\xff\xff\xff garbage")
    with pytest.raises(OtlpDecodeError):
        decompress(b"not gzip", "gzip")
    with pytest.raises(OtlpDecodeError):
        decompress(b"x", "br")
    assert decompress(gzip.compress(b"abc"), "gzip") == b"abc"


def test_json_lines_rotate_at_the_bound(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    lines = JsonLines(path, max_bytes=200)
    for number in range(30):
        lines.append([{"n": number, "pad": "x" * 20}])
    assert path.stat().st_size <= 200
    assert rotated(path).stat().st_size <= 200
    numbers = [row["n"] for row in read_rows(path)]
    assert numbers == sorted(numbers)
    assert numbers[-1] == 29
    assert len(numbers) < 30  # the oldest went with the older rotation
    path.write_bytes(path.read_bytes() + b'{"torn": ')  # a torn last line is skipped
    assert [row["n"] for row in read_rows(path)] == numbers


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[CollectorServer]:
    with serving(CollectorServer(CollectorConfig(folder=tmp_path, port=0))) as server:
        yield server


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_the_sdk_exporter_delivers_spans_over_http(collector: CollectorServer,
                                                   compression: Compression) -> None:
    spans = _spans()
    exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{collector.port}/v1/traces",
                                compression=compression, timeout=5)
    assert exporter.export(spans).name == "SUCCESS"
    exporter.shutdown()  # type: ignore[no-untyped-call]
    rows = list(read_rows(collector.spans.path))
    assert sorted(row["name"] for row in rows) == ["inventory.stock", "process orders.requests"]


def test_metrics_are_kept_too(collector: CollectorServer) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader],
                             resource=Resource.create({"service.name": "orders"}))
    provider.get_meter("meshgate.bus").create_counter("mesh.requests").add(2, {"outcome": "ok"})
    data = reader.get_metrics_data()
    assert data is not None
    exporter = OTLPMetricExporter(endpoint=f"http://127.0.0.1:{collector.port}/v1/metrics",
                                  timeout=5)
    assert exporter.export(data).name == "SUCCESS"
    [row] = list(read_rows(collector.metrics.path))
    assert (row["service.name"], row["name"], row["type"]) == ("orders", "mesh.requests", "sum")
    assert row["dataPoints"][0]["asInt"] == "2"


def _post(port: int, path: str, body: bytes, content_type: str) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body,
                                     headers={"content-type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_refusals_follow_otlp_http(collector: CollectorServer) -> None:
    port = collector.port
    assert _post(port, "/v1/traces", b"\xff\xff junk", "application/x-protobuf") == 400
    assert _post(port, "/v1/traces", b"{}", "application/json") == 415
    assert _post(port, "/v1/logs", b"", "application/x-protobuf") == 404
    assert not collector.spans.path.exists()


def test_local_processes_export_to_the_collector_and_aws_gets_only_what_is_asked() -> None:
    local_settings = Settings.resolve(env={})
    [orders] = [spec for spec in local.workers(local_settings) if spec.name == "orders"]
    env = local.worker_environment(local_settings, orders)
    assert env["OTEL_SERVICE_NAME"] == "orders"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:4318"
    assert env["OTEL_TRACES_EXPORTER"] == "otlp"
    # long-lived workers export metrics too; the gateway Lambda (flushed per call) does not
    assert telemetry_config(env) == TelemetryConfig(traces=("otlp",), metrics=("otlp",))
    assert env["OTEL_METRIC_EXPORT_INTERVAL"] == "5000"
    assert otel_environment(local_settings, "gateway")["OTEL_METRICS_EXPORTER"] == "none"
    assert "collector" in {spec.name for spec in local.workers(local_settings)}
    aws = Settings.resolve(env={"MESHGATE_ENDPOINT_URL": "aws"})
    assert otel_environment(aws, "gateway", {}) == {}
    assert otel_environment(aws, "gateway", {
        "MESHGATE_OTEL_EXPORTER_OTLP_ENDPOINT": "https://otel.example:4318", "OTEL_X": "no",
    }) == {"OTEL_EXPORTER_OTLP_ENDPOINT": "https://otel.example:4318",
           "OTEL_SERVICE_NAME": "gateway"}
