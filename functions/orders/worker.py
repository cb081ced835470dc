"""Run the ``orders`` service as a long-lived worker: ``python -m functions.orders.worker``.

Identity comes from ``MESH_*`` settings (key from Secrets Manager or a file); the
idempotency store is DynamoDB when ``MESH_IDEMPOTENCY_TABLE`` names a table.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from bus.config import BusSettings
from bus.idempotency import IdempotencyStore
from bus.identity import load_identity
from bus.kafka import KafkaTransport
from bus.worker import ServiceWorker
from functions.orders.service import orders
from functions.shared.dynamodb_idempotency import DynamoDBIdempotencyStore
from functions.shared.secrets import SecretsManagerSource


def idempotency_store() -> IdempotencyStore | None:
    table = os.environ.get("MESH_IDEMPOTENCY_TABLE")
    return DynamoDBIdempotencyStore(table) if table else None


async def serve(settings: BusSettings) -> None:
    identity = await asyncio.to_thread(load_identity, settings, secrets=SecretsManagerSource())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    transport = KafkaTransport(settings)
    worker = ServiceWorker(orders, transport, settings, identity, store=idempotency_store())
    try:
        await worker.run(stop)
    finally:
        await transport.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(serve(BusSettings.resolve(service_name="orders")))


if __name__ == "__main__":
    main()
