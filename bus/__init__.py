"""meshgate mesh client: service-to-service calls over Kafka topics."""

from bus.envelope import Envelope
from bus.errors import (
    DeadlineExceeded,
    EnvelopeError,
    MeshError,
    RemoteError,
    TransportError,
)
from bus.runtime.client import MeshClient
from bus.service import Service

__all__ = [
    "DeadlineExceeded",
    "Envelope",
    "EnvelopeError",
    "MeshClient",
    "MeshError",
    "RemoteError",
    "Service",
    "TransportError",
]
