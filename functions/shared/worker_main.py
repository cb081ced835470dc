"""Run a service as a long-lived worker process: ``main(service)`` from a ``worker.py``.

Identity comes from ``MESH_*`` settings (key from Secrets Manager or a file); the idempotency
store is the DynamoDB table ``MESH_IDEMPOTENCY_TABLE`` names, required unless the process
runs insecure (``functions.shared.durable_store``). A service whose handlers make
nested calls (``bus.context.mesh_client()``) is served with ``nested_calls=True``: the worker
then has a mesh client, sharing its transport, whose reply listener is started before the
first request (on ``MESH_REPLY_TOPIC``, which the service must be allowed to consume).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from bus.config import BusSettings
from bus.delivery.idempotency import IdempotencyStore
from bus.delivery.replay_memory import StoreRequired
from bus.errors import KafkaConfigError, KafkaConnectRefused, MeshError
from bus.runtime import processes
from bus.runtime.client import MeshClient
from bus.runtime.worker import ServiceWorker
from bus.security.identity import Identity
from bus.service import Service
from bus.telemetry.mesh_telemetry import MeshTelemetry
from bus.transport import Transport
from functions.shared import init_gc, key_reload
from functions.shared.durable_store import durable_store
from functions.shared.json_logs import setup_logging
from functions.shared.kafka_connect import kafka_transport
from functions.shared.otel_setup import setup_telemetry

START_TIMEOUT_S = 30.0
log = logging.getLogger(__name__)


def idempotency_store(settings: BusSettings, who: str) -> IdempotencyStore:
    """The durable store (``functions.shared.durable_store``), or the process exits with
    its one-line error."""
    try:
        return durable_store(settings, who)
    except StoreRequired as exc:
        raise SystemExit(exc.message) from None


def stop_on_signals() -> asyncio.Event:
    """An event the running loop sets on SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop


async def process_identity(settings: BusSettings) -> Identity:
    """The process's identity; its key comes from Secrets Manager, read off the loop. Its
    keys are reloaded while the process runs (``functions.shared.key_reload``), until
    ``run_process`` ends."""
    async with asyncio.timeout(START_TIMEOUT_S):
        identity = await asyncio.to_thread(key_reload.load_live_identity, settings)
    key_reload.start_reloading()
    return identity


async def _with_key_reload(serve: Callable[[BusSettings], Coroutine[Any, Any, None]],
                           settings: BusSettings) -> None:
    try:
        await serve(settings)
    finally:
        await key_reload.stop_reloading()


def run_process(name: str, serve: Callable[[BusSettings], Coroutine[Any, Any, None]]) -> None:
    """A worker process's life: JSON logs, telemetry from OTEL_*, ``serve`` on a new loop,
    then the telemetry flushed (after the loop: flushing blocks)."""
    setup_logging(name)  # JSON lines (MESH_LOG_FORMAT=text for humans)
    try:
        settings = BusSettings.resolve(service_name=name)
    except KafkaConfigError as exc:  # MESH_KAFKA_* that cannot work: one line
        raise SystemExit(f"{name}: error: {exc.code}: {exc}") from None
    telemetry = setup_telemetry(name)  # OTEL_* (functions.shared.otel_setup)
    try:
        asyncio.run(_with_key_reload(serve, settings))
    except (KafkaConnectRefused, KafkaConfigError) as exc:  # one line, no stack trace
        raise SystemExit(f"{name}: error: {exc.code}: {exc}") from None
    finally:
        if telemetry is not None:
            telemetry.shutdown()


async def serve(service: Service, settings: BusSettings, *, nested_calls: bool = False) -> None:
    """Serve ``service`` until SIGTERM or SIGINT."""
    store = idempotency_store(settings, f"{service.name} worker")  # before any AWS call
    identity = await process_identity(settings)
    stop = stop_on_signals()
    transport = kafka_transport(settings)
    await warn_if_few_partitions(transport, service.request_topic_of(""))
    # One telemetry for the worker and its client: the SDK keeps only the first observable
    # gauge of a name, so two would hide the circuit or the lag gauge.
    telemetry = MeshTelemetry(service.name)
    client = (MeshClient(transport, settings, identity, telemetry=telemetry)
              if nested_calls else None)
    try:
        if client is not None:
            async with asyncio.timeout(START_TIMEOUT_S):
                await client.start()  # the first nested call does not pay for the listener
        worker = ServiceWorker(service, transport, settings, identity, store=store,
                               client=client, telemetry=telemetry)
        init_gc.settle_for_serving()  # the start frozen, the serving threshold (init_gc)
        await worker.run(stop)
    finally:
        if client is not None:
            await client.close()  # closes the shared transport too
        await transport.close()


async def warn_if_few_partitions(transport: Transport, topic: str) -> None:
    """The first of N worker processes (``bus.runtime.processes``) warns when ``topic`` has
    fewer than N partitions: the others would get none."""
    child = processes.child_info()
    if child is None or child.index != 0:
        return
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            partitions = await transport.partition_count(topic)
    except (MeshError, TimeoutError) as exc:
        log.warning("could not count the partitions of %s: %s", topic, exc)
        return
    warning = processes.partition_shortfall(topic, partitions, child.count)
    if warning is not None:
        log.warning("%s", warning)


def main(service: Service, *, nested_calls: bool = False,
         worker_processes: int | str | None = None) -> None:
    """The worker; ``worker_processes`` (else ``MESH_WORKER_PROCESSES``, else 1; ``auto``:
    one per core) copies of it in one group (``bus.runtime.processes``)."""
    setup_logging(service.name)
    processes.enter(worker_processes)  # N > 1: this process supervises N copies, exits here
    run_process(service.name, lambda settings: serve(service, settings,
                                                     nested_calls=nested_calls))
