"""The names the mesh's telemetry uses: the OpenTelemetry semantic conventions for messaging
and errors (plain constants, checked against the installed ``opentelemetry.semconv`` by the
unit tests, so the package's incubating modules are never imported at runtime), the mesh's own
attributes and metrics, and how an exception becomes an ``error.type``."""

from __future__ import annotations

import asyncio
from typing import Final

from opentelemetry.util.types import AttributeValue

from bus.errors import HandlerError, MeshError, RemoteError

SCOPE_NAME: Final = "meshgate.bus"

# OpenTelemetry semantic conventions (messaging, error); names as in opentelemetry.semconv.
MESSAGING_SYSTEM: Final = "messaging.system"
MESSAGING_OPERATION_TYPE: Final = "messaging.operation.type"
MESSAGING_OPERATION_NAME: Final = "messaging.operation.name"
MESSAGING_DESTINATION_NAME: Final = "messaging.destination.name"
MESSAGING_DESTINATION_PARTITION_ID: Final = "messaging.destination.partition.id"
MESSAGING_MESSAGE_ID: Final = "messaging.message.id"
MESSAGING_MESSAGE_CONVERSATION_ID: Final = "messaging.message.conversation_id"
MESSAGING_MESSAGE_BODY_SIZE: Final = "messaging.message.body.size"
MESSAGING_KAFKA_MESSAGE_KEY: Final = "messaging.kafka.message.key"
MESSAGING_KAFKA_OFFSET: Final = "messaging.kafka.offset"
MESSAGING_CONSUMER_GROUP_NAME: Final = "messaging.consumer.group.name"
ERROR_TYPE: Final = "error.type"
SYSTEM_KAFKA: Final = "kafka"
OPERATION_SEND: Final = "send"
OPERATION_PROCESS: Final = "process"
OPERATION_RECEIVE: Final = "receive"
OPERATION_NAME_POLL: Final = "poll"  # Kafka's name for a receive
METRIC_PROCESS_DURATION: Final = "messaging.process.duration"
METRIC_CLIENT_OPERATION_DURATION: Final = "messaging.client.operation.duration"
METRIC_CLIENT_SENT: Final = "messaging.client.sent.messages"
METRIC_CLIENT_CONSUMED: Final = "messaging.client.consumed.messages"

# Mesh-specific attributes (no convention covers them).
MESH_SERVICE: Final = "mesh.service"
MESH_OPERATION: Final = "mesh.operation"
MESH_KIND: Final = "mesh.kind"
MESH_SOURCE: Final = "mesh.source"
MESH_ATTEMPT: Final = "mesh.attempt"

# Metric names and their attribute keys.
METRIC_REQUESTS: Final = "mesh.requests"
METRIC_REQUEST_DURATION: Final = "mesh.request.duration"
METRIC_RETRIES: Final = "mesh.retries"
METRIC_DEAD_LETTERS: Final = "mesh.dead_letters"
METRIC_QUARANTINED: Final = "mesh.quarantined"
METRIC_HANDLED: Final = "mesh.messages.handled"
OUTCOME_OK: Final = "ok"

# Seconds; finer than the conventions' advice at the low end, where the mesh overhead lives.
DURATION_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0, 30.0,
)

Attributes = dict[str, AttributeValue]


def error_type_of(exc: BaseException) -> str:
    """The ``error.type`` / outcome for an exception: the mesh error code when there is one
    (the remote code for ``RemoteError``, the handler's code for ``HandlerError``),
    ``"cancelled"`` for task cancellation, else the exception's qualified class name."""
    if isinstance(exc, RemoteError):
        return exc.remote_code
    if isinstance(exc, HandlerError):
        return exc.error_code
    if isinstance(exc, MeshError):
        return exc.code
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def outcome_of(exc: BaseException | None) -> str:
    """``"ok"`` without an exception, else ``error_type_of(exc)``."""
    return OUTCOME_OK if exc is None else error_type_of(exc)
