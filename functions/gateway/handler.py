"""Lambda entry point: ``functions.gateway.handler.handler``.

The app and its Mangum adapter are built once per process at import; the mesh client (Kafka
clients, identity from Secrets Manager) is created on the first request that needs it, and
Mangum keeps one event loop per process so it survives warm invocations.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from mangum import Mangum

from bus.client import MeshClient
from bus.config import BusSettings
from bus.identity import load_identity
from bus.kafka import KafkaTransport
from bus.traffic.table import TrafficReloader, TrafficTable
from functions.gateway.app import create_app
from functions.shared.secrets import SecretsManagerSource
from functions.shared.ssm_traffic import SsmTrafficSource


async def _client() -> MeshClient:
    settings = BusSettings.resolve(service_name="gateway")
    # Reading the key is a blocking AWS call: keep it off the event loop.
    identity = await asyncio.to_thread(load_identity, settings, secrets=SecretsManagerSource())
    table, reloader = TrafficTable(), None
    parameter = os.environ.get("MESH_TRAFFIC_PARAMETER")
    if parameter:  # the policies' traffic rules, reloaded while the instance lives
        reloader = TrafficReloader(table, SsmTrafficSource(parameter),
                                   float(os.environ.get("MESH_TRAFFIC_RELOAD_S", "30")))
    return MeshClient(KafkaTransport(settings), settings, identity, traffic=table,
                      reloader=reloader)


app = create_app(_client)
_adapter = Mangum(app, lifespan="off")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    response: dict[str, Any] = _adapter(event, context)
    return response
