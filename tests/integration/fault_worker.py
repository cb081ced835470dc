"""A service worker for the fault tests, run as a subprocess so a test can SIGKILL it:
``python -m tests.integration.fault_worker``.

The service has one operation, ``<service>.apply``. Its handler first appends one line
``<correlation id> <n> <pid>`` to ``FAULT_APPLIED_FILE`` (one ``write`` on an ``O_APPEND``
descriptor: atomic between processes, and in the kernel as soon as it returns, so it survives
a SIGKILL of this process), then sleeps ``hold_s`` from the payload (default
``FAULT_HANDLER_MS``), then answers ``{"n": n, "by": pid}``. The line is the handler's
observable effect: the test counts applications per request from it.

Environment:
- ``MESH_BOOTSTRAP_SERVERS``, ``MESH_SERVICE_NAME``, ``MESH_SIGNING_KEY`` (base64 of the raw
  Ed25519 key), ``MESH_KEYRING_JSON``, ``MESH_ACCESS_JSON``: the usual bus settings/identity;
- ``FAULT_APPLIED_FILE`` (required): where the handler records its applications;
- ``FAULT_IDEMPOTENCY_TABLE``: a DynamoDB table on the emulator (``infra.settings``) to use
  as the idempotency store; none without it;
- ``FAULT_HANDLER_MS`` (30): how long a handler takes;
- ``FAULT_MAX_SECONDS`` (180): the worker stops by itself after this long.

It stops on SIGTERM/SIGINT, when its stdin reaches EOF (so it never outlives the test that
started it), or after ``FAULT_MAX_SECONDS``.
"""

from __future__ import annotations

import asyncio
import logging
import os

from bus.config import BusSettings
from bus.delivery.idempotency import MemoryIdempotencyStore
from bus.envelope import Envelope
from bus.runtime.worker import ServiceWorker
from bus.security.identity import load_identity
from bus.service import Payload, Service
from bus.transport.kafka import KafkaTransport
from functions.shared.dynamodb_idempotency import DynamoDBIdempotencyStore
from infra.settings import Settings
from proof.procs import stop_event

APPLIED_FILE_ENV = "FAULT_APPLIED_FILE"
TABLE_ENV = "FAULT_IDEMPOTENCY_TABLE"
HANDLER_MS_ENV = "FAULT_HANDLER_MS"
MAX_SECONDS_ENV = "FAULT_MAX_SECONDS"


def operation_of(service: str) -> str:
    return f"{service}.apply"


def fault_service(name: str, applied_fd: int, handler_s: float) -> Service:
    service = Service(name)

    @service.operation(operation_of(name))
    async def apply(payload: Payload, message: Envelope) -> Payload:
        n = int(payload["n"])
        line = f"{message.correlation_id or message.id} {n} {os.getpid()}\n"
        os.write(applied_fd, line.encode())
        await asyncio.sleep(float(payload.get("hold_s", handler_s)))
        return {"n": n, "by": os.getpid()}

    return service


def parse_applied(text: str) -> list[tuple[str, int, int]]:
    """The (correlation id, n, pid) lines a fault worker appended (complete lines only)."""
    entries: list[tuple[str, int, int]] = []
    for line in text.split("\n")[:-1]:
        cid, n, pid = line.split()
        entries.append((cid, int(n), int(pid)))
    return entries


async def serve() -> None:
    settings = BusSettings.resolve()
    identity = load_identity(settings)
    table = os.environ.get(TABLE_ENV)
    store = (DynamoDBIdempotencyStore(table, client_args=Settings.resolve().aws_client_args())
             if table else MemoryIdempotencyStore())
    applied_fd = os.open(os.environ[APPLIED_FILE_ENV],
                         os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    service = fault_service(settings.service_name, applied_fd,
                            int(os.environ.get(HANDLER_MS_ENV, "30")) / 1000)
    stop = stop_event(float(os.environ.get(MAX_SECONDS_ENV, "180")))
    transport = KafkaTransport(settings)
    worker = ServiceWorker(service, transport, settings, identity, store=store)
    try:
        await worker.run(stop)
    finally:
        await transport.close()
        os.close(applied_fd)
        logging.getLogger(__name__).info(
            "stopped: handled=%d duplicates=%d expired=%d abandoned=%d quarantined=%d",
            worker.handled, worker.duplicates, worker.expired, worker.abandoned,
            worker.quarantined)


def main() -> None:
    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s {os.getpid()} %(levelname)s %(name)s %(message)s")
    asyncio.run(serve())


if __name__ == "__main__":
    main()
