"""Run the async results recorder: ``python -m functions.async_results.worker``.

It acts as the ``gateway`` (the service that submitted the operations and may consume
``mesh.async.replies``): its key is the gateway's (``MESH_SIGNING_KEY_SECRET``, used only to
sign what it parks on the quarantine topic), and it writes to the table named by
``MESH_OPERATIONS_TABLE``.
"""

from __future__ import annotations

import asyncio
import signal

from bus.client import ASYNC_REPLY_TOPIC
from bus.config import BusSettings
from bus.errors import MeshError
from bus.identity import Identity, load_identity
from bus.kafka import KafkaTransport
from bus.quarantine import park
from bus.telemetry import MeshTelemetry
from bus.transport import Record, Transport
from functions.async_results.recorder import Quarantine, ReplyRecorder, recorder_guard
from functions.async_results.runner import CONCURRENCY, GROUP_ID, RecorderRunner
from functions.shared.json_logs import setup_logging
from functions.shared.operations_store import ENV_TABLE, OperationsStore, operations_store_from_env
from functions.shared.otel_setup import setup_telemetry
from functions.shared.secrets import SecretsManagerSource

SERVICE = "gateway"


def quarantine_to(transport: Transport, settings: BusSettings,
                  telemetry: MeshTelemetry) -> Quarantine:
    async def quarantine(record: Record, error: MeshError) -> None:
        telemetry.count_quarantined(error.code, record.topic)
        await park(transport, record, error, by=settings.service_name,
                   max_value_bytes=settings.max_message_bytes)

    return quarantine


def build(store: OperationsStore, transport: Transport, settings: BusSettings,
          identity: Identity, *, topic: str = ASYNC_REPLY_TOPIC, group_id: str = GROUP_ID,
          concurrency: int = CONCURRENCY) -> RecorderRunner:
    """The runner of one recorder (also what tests run in-process)."""
    telemetry = MeshTelemetry(identity.service)
    recorder = ReplyRecorder(store, recorder_guard(identity, settings),
                             quarantine_to(transport, settings, telemetry))
    runner = RecorderRunner(recorder, transport, topic=topic, group_id=group_id,
                            concurrency=concurrency)
    identity.access.check_consume(identity.service, runner.topic)
    return runner


async def serve(settings: BusSettings) -> None:
    store = operations_store_from_env()
    if store is None:
        raise SystemExit(f"async results recorder: error: {ENV_TABLE} is not set; "
                         "name the operations table")
    identity = await asyncio.to_thread(load_identity, settings, secrets=SecretsManagerSource())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    transport = KafkaTransport(settings)
    try:
        await build(store, transport, settings, identity).run(stop)
    finally:
        await transport.close()


def main() -> None:
    setup_logging(SERVICE)  # JSON lines (MESH_LOG_FORMAT=text for humans)
    telemetry = setup_telemetry(SERVICE)  # OTEL_* (functions.shared.otel_setup)
    try:
        asyncio.run(serve(BusSettings.resolve(service_name=SERVICE)))
    finally:
        if telemetry is not None:  # after the loop: flushing blocks
            telemetry.shutdown()


if __name__ == "__main__":
    main()
