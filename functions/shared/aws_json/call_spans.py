"""A CLIENT span per fast item call, as OpenTelemetry's conventions for AWS SDK calls and for
DynamoDB describe it (span ``DynamoDB.PutItem``; ``rpc.system`` ``aws-api``, ``rpc.service``,
``rpc.method``, ``aws.request_id``, ``aws.dynamodb.table_names``, ...): the calls that skip
botocore's pipeline also skip the botocore instrumentation a user may have installed, so the
client makes the span that instrumentation would have made. One span per call, retries
included (``aws.retry_attempts``); a refusal or a connection failure ends it as an error,
except a failed condition (see ``NOT_FAILURES``). Without a tracer SDK nothing is made (the
check is one global read)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final

from botocore.exceptions import ClientError
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from bus.telemetry.mesh_telemetry import no_tracer_sdk

TRACER_NAME: Final = "meshgate.aws_json"
SERVICE_NAME: Final = "DynamoDB"
# A conditional write's "no" is the compare-and-swap's answer (a claim held elsewhere, a lost
# race in the rate limiter), read by the caller as an outcome: recorded, not an error.
NOT_FAILURES: Final = frozenset({"ConditionalCheckFailedException"})


def request_attributes(operation: str, params: Mapping[str, Any], *, region: str,
                       host: str, port: int | None) -> dict[str, Any]:
    """What is known of the call before it is sent (pure)."""
    attributes: dict[str, Any] = {
        "rpc.system": "aws-api",
        "rpc.service": SERVICE_NAME,
        "rpc.method": operation,
        "db.system.name": "aws.dynamodb",
        "db.operation.name": operation,
        "cloud.region": region,
        "server.address": host,
    }
    if port is not None:
        attributes["server.port"] = port
    table = params.get("TableName")
    if isinstance(table, str):
        attributes["aws.dynamodb.table_names"] = (table,)
        attributes["db.collection.name"] = table
    consistent = params.get("ConsistentRead")
    if isinstance(consistent, bool):
        attributes["aws.dynamodb.consistent_read"] = consistent
    projection = params.get("ProjectionExpression")
    if isinstance(projection, str):
        attributes["aws.dynamodb.projection"] = projection
    return attributes


def response_attributes(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """What the answer's ``ResponseMetadata`` adds (pure); the same for a refusal's."""
    attributes: dict[str, Any] = {}
    if metadata.get("RequestId"):
        attributes["aws.request_id"] = str(metadata["RequestId"])
    if metadata.get("HTTPStatusCode"):
        attributes["http.response.status_code"] = int(metadata["HTTPStatusCode"])
    if "RetryAttempts" in metadata:
        attributes["aws.retry_attempts"] = int(metadata["RetryAttempts"])
    return attributes


@contextmanager
def item_call_span(operation: str, params: Mapping[str, Any], *, region: str, host: str,
                   port: int | None) -> Iterator[Span | None]:
    """The call's span, current while the call runs; None without a tracer SDK. An exception
    leaving it is recorded: a refusal with its code (``db.response.status_code``) and, unless
    it is a failed condition, as the span's error."""
    if no_tracer_sdk():
        yield None
        return
    tracer = trace.get_tracer(TRACER_NAME)
    with tracer.start_as_current_span(
            f"{SERVICE_NAME}.{operation}", kind=SpanKind.CLIENT,
            attributes=request_attributes(operation, params, region=region, host=host,
                                          port=port),
            record_exception=False, set_status_on_exception=False) as span:
        try:
            yield span
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            span.set_attributes({**response_attributes(exc.response.get("ResponseMetadata", {})),
                                 "db.response.status_code": code})
            if code not in NOT_FAILURES:
                _failed(span, exc, code)
            raise
        except Exception as exc:
            _failed(span, exc, type(exc).__name__)
            raise


def record_answer(span: Span | None, metadata: Mapping[str, Any]) -> None:
    if span is not None:
        span.set_attributes(response_attributes(metadata))


def _failed(span: Span, exc: BaseException, error_type: str) -> None:
    span.record_exception(exc)
    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR, error_type))
