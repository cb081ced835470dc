"""Lambda entry point of the ``orders`` service fed by a Kafka event source mapping:
``functions.orders.lambda_handler.handler``.

The deployed stack runs every service through the one generic handler
(``functions.kafka_service.handler``, told its service by ``MESH_SERVICE_NAME``); this entry
point is the same runner bound to ``orders`` in code, for a function deployed by hand.
"""

from __future__ import annotations

from typing import Any

from functions.kafka_service.handler import ServiceInstance
from functions.orders.service import orders

# The per-process holder: its clients are created on the first invocation.
INSTANCE = ServiceInstance(orders)


def handler(event: object, context: Any) -> dict[str, Any]:
    return INSTANCE.handle(event, context)
