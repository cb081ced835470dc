"""Run the async results recorder: ``python -m functions.async_results.worker``.

It acts as the ``gateway`` (the service that submitted the operations and may consume
``mesh.async.replies``): its key is the gateway's (``MESH_SIGNING_KEY_SECRET``, used only to
sign what it parks on the quarantine topic), and it writes to the table named by
``MESH_OPERATIONS_TABLE``.
"""

from __future__ import annotations

from bus.config import BusSettings
from bus.errors import MeshError
from bus.runtime.client import ASYNC_REPLY_TOPIC
from bus.security.identity import Identity
from bus.security.quarantine import park
from bus.telemetry.mesh_telemetry import MeshTelemetry
from bus.transport import Record, Transport
from functions.async_results.recorder import Quarantine, ReplyRecorder, recorder_guard
from functions.async_results.runner import CONCURRENCY, GROUP_ID, RecorderRunner
from functions.shared.kafka_connect import kafka_transport
from functions.shared.operations_store import ENV_TABLE, OperationsStore, operations_store_from_env
from functions.shared.worker_main import process_identity, run_process, stop_on_signals

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
    identity = await process_identity(settings)
    stop = stop_on_signals()
    transport = kafka_transport(settings)
    try:
        await build(store, transport, settings, identity).run(stop)
    finally:
        await transport.close()


def main() -> None:
    run_process(SERVICE, serve)


if __name__ == "__main__":
    main()
