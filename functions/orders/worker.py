"""Run the ``orders`` service as a long-lived worker: ``python -m functions.orders.worker``."""

from __future__ import annotations

import asyncio
import logging
import signal

from bus.config import BusSettings
from bus.kafka import KafkaTransport
from bus.worker import ServiceWorker
from functions.orders.service import orders


async def serve(settings: BusSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    transport = KafkaTransport(settings)
    try:
        await ServiceWorker(orders, transport).run(stop)
    finally:
        await transport.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(serve(BusSettings.resolve(service_name="orders")))


if __name__ == "__main__":
    main()
