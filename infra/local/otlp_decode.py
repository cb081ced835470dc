"""OTLP/HTTP protobuf requests to flat JSON rows (pure; the local collector's decoding).

``span_rows(body)``: one row per span of an ``ExportTraceServiceRequest``::

    {"trace_id": 32 hex, "span_id": 16 hex, "parent_span_id": 16 hex | None,
     "name", "kind": "SERVER" | "CLIENT" | "PRODUCER" | "CONSUMER" | "INTERNAL",
     "service.name", "scope", "start_ns", "end_ns", "status": "UNSET" | "OK" | "ERROR",
     "status_message", "attributes": {...}, "links": [{"trace_id", "span_id"}],
     "events": [names]}

``metric_rows(body)``: one row per metric of an ``ExportMetricsServiceRequest`` with
``service.name``, ``scope``, ``name``, ``unit``, ``type`` and its data points (as the
protobuf JSON mapping gives them). ``decompress(body, encoding)`` undoes ``gzip`` or
``deflate``. A body that is not the message raises ``OtlpDecodeError``.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterable
from typing import Any, Final

from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped]
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from infra.errors import InfraError

KINDS: Final = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER",
                5: "CONSUMER"}
STATUSES: Final = {0: "UNSET", 1: "OK", 2: "ERROR"}


class OtlpDecodeError(InfraError, ValueError):
    """The body is not the OTLP message it should be (the sender's fault: not retriable)."""

    code = "otlp_decode"

    retriable = False


def decompress(body: bytes, encoding: str | None) -> bytes:
    name = (encoding or "identity").strip().lower()
    try:
        if name == "gzip":
            return gzip.decompress(body)
        if name == "deflate":
            return zlib.decompress(body)
    except (OSError, zlib.error, EOFError) as exc:
        raise OtlpDecodeError(f"the body is not valid {name}: {exc}") from exc
    if name != "identity":
        raise OtlpDecodeError(f"content-encoding {encoding!r} is not gzip, deflate or identity")
    return body


def any_value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value(item) for item in value.array_value.values]
    if which == "kvlist_value":
        return attributes(value.kvlist_value.values)
    if which == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, which)


def attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    return {pair.key: any_value(pair.value) for pair in pairs}


def span_rows(body: bytes) -> list[dict[str, Any]]:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise OtlpDecodeError(f"not an ExportTraceServiceRequest: {exc}") from exc
    rows: list[dict[str, Any]] = []
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        service = resource.get("service.name")
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                rows.append({
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_span_id": span.parent_span_id.hex() or None,
                    "name": span.name,
                    "kind": KINDS.get(span.kind, str(span.kind)),
                    "service.name": service,
                    "scope": scope_spans.scope.name,
                    "start_ns": span.start_time_unix_nano,
                    "end_ns": span.end_time_unix_nano,
                    "status": STATUSES.get(span.status.code, str(span.status.code)),
                    "status_message": span.status.message or None,
                    "attributes": attributes(span.attributes),
                    "links": [{"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex()}
                              for link in span.links],
                    "events": [event.name for event in span.events],
                })
    return rows


def metric_rows(body: bytes) -> list[dict[str, Any]]:
    request = ExportMetricsServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise OtlpDecodeError(f"not an ExportMetricsServiceRequest: {exc}") from exc
    rows: list[dict[str, Any]] = []
    for resource_metrics in request.resource_metrics:
        service = attributes(resource_metrics.resource.attributes).get("service.name")
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                data = MessageToDict(getattr(metric, kind)) if kind is not None else {}
                rows.append({
                    "service.name": service,
                    "scope": scope_metrics.scope.name,
                    "name": metric.name,
                    "unit": metric.unit,
                    "type": kind,
                    **data,
                })
    return rows
