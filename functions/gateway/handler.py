"""Lambda entry point: ``functions.gateway.handler.handler``.

The app and its Mangum adapter are built once per process at import; the Kafka clients
inside are created on the first request that needs them (Mangum keeps one event loop).
"""

from __future__ import annotations

from typing import Any

from mangum import Mangum

from bus.client import MeshClient
from bus.config import BusSettings
from bus.kafka import KafkaTransport
from functions.gateway.app import create_app


def _client() -> MeshClient:
    settings = BusSettings.resolve(service_name="gateway")
    return MeshClient(KafkaTransport(settings), settings)


app = create_app(_client)
_adapter = Mangum(app, lifespan="off")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    response: dict[str, Any] = _adapter(event, context)
    return response
