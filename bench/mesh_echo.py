"""The mesh side of the mesh-vs-raw bench: how the mesh caller and responder are built, and
the responder process (``python -m bench.mesh_echo --service NAME --group G ...``).

``mesh_client`` and ``mesh_service`` are the ONLY places where mesh objects are constructed
for the bench, each as a production service would build them (identity loaded from
settings by ``bus.security.identity.load_identity``: Ed25519 key, key ring, access map). Wiring
tracing (``bus.telemetry.mesh_telemetry.MeshTelemetry``) or anything else later touches only these
two functions. ``provision_identities`` writes this run's keys, key ring and access map.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bus.config import BusSettings
from bus.delivery.idempotency import MemoryIdempotencyStore
from bus.envelope import Envelope
from bus.runtime import processes
from bus.runtime.client import MeshClient
from bus.runtime.worker import ServiceWorker
from bus.security.identity import load_identity
from bus.security.keys import KeyRing, encode_b64url, generate_ed25519
from bus.service import Payload, Service
from bus.transport import Transport
from bus.transport.select import kafka_transport
from functions.shared import init_gc
from proof.procs import announce_ready, report, stop_event

ECHO = "echo"
BATCH_MAX_ENV = "MESH_SIGNATURE_BATCH_MAX"
KEYRING_FILE = "keyring.json"
HMAC_FILE = "hmac.json"
ALGORITHM_FILE = "algorithm"
ACCESS_FILE = "access.json"


def echo_operation(service_name: str) -> str:
    return f"{service_name}.{ECHO}"


def provision_identities(
    directory: Path, produce: Mapping[str, Sequence[str]], algorithm: str = "ed25519"
) -> None:
    """One fresh key per service of ``produce`` (``<service>.key``, raw bytes, 0600): Ed25519
    with a key ring trusting all of them, or HMAC-SHA256 secrets with a shared-secret key file;
    and the access map ``produce`` (service -> topics). ``pair-mac``: Ed25519 keys, and every
    service accepts per-pair MACs (``bus.security.pair_mac``) on messages addressed to it."""
    ring = KeyRing()
    shared: list[dict[str, str]] = []
    for service in produce:
        if algorithm == "hmac-sha256":
            secret = os.urandom(32)
            shared.append({"key_id": f"{service}-hmac", "service": service,
                           "secret": encode_b64url(secret)})
        else:
            signing, verify = generate_ed25519(service)
            secret = signing.secret
            ring.add(verify)
        key_file = directory / f"{service}.key"
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(secret)
    (directory / ALGORITHM_FILE).write_text(algorithm)
    (directory / HMAC_FILE).write_text(json.dumps({"keys": shared}))
    (directory / KEYRING_FILE).write_text(json.dumps(ring.to_dict()))
    pair_mac = list(produce) if algorithm == "pair-mac" else []
    (directory / ACCESS_FILE).write_text(
        json.dumps({"produce": {s: list(t) for s, t in produce.items()}, "pair_mac": pair_mac}))


def identity_settings(directory: Path | None, service: str) -> dict[str, Any]:
    """The ``BusSettings`` fields that point ``service`` at its identity files; with no
    directory, an explicitly insecure identity (no signatures, open access)."""
    if directory is None:
        return {"insecure": True}
    fields: dict[str, Any] = {
        "signing_key_file": str(directory / f"{service}.key"),
        "keyring_file": str(directory / KEYRING_FILE),
        "access_file": str(directory / ACCESS_FILE),
    }
    # The benches build their settings explicitly; this one follows the environment as
    # BusSettings.resolve would, so one run can compare signing in batches with signing alone
    # (MESH_SIGNATURE_BATCH_MAX=1) on the same code, callers and responders alike.
    batch_max = os.environ.get(BATCH_MAX_ENV)
    if batch_max is not None:
        fields["signature_batch_max"] = int(batch_max)
    if (directory / ALGORITHM_FILE).read_text() == "hmac-sha256":
        fields.update(signing_algorithm="hmac-sha256", signing_key_id=f"{service}-hmac",
                      hmac_keys_file=str(directory / HMAC_FILE))
    return fields


def mesh_client(settings: BusSettings) -> MeshClient:
    """The bench's mesh caller, sending as ``settings.service_name``.

    WIRING POINT: everything the production caller gets (identity and signing today;
    tracing/telemetry, retries, routing rules when they land) is added here.
    """
    return MeshClient(kafka_transport(settings), settings, load_identity(settings))


@dataclass
class MeshResponder:
    worker: ServiceWorker
    transport: Transport

    async def close(self) -> None:
        await self.transport.close()


def busy(cpu_ms: float) -> None:
    """Spin on this core for ``cpu_ms`` (a handler that computes, for the process sweep)."""
    end = time.thread_time() + cpu_ms / 1000
    while time.thread_time() < end:
        pass


def mesh_service(settings: BusSettings, group_id: str, handler_cpu_ms: float = 0.0
                 ) -> MeshResponder:
    """The bench's echo service ``settings.service_name`` on a ``ServiceWorker``.

    WIRING POINT: everything a production service gets (identity, verification and reply
    signing today; tracing/telemetry, an idempotency store when they land) is added here.
    """
    service = Service(settings.service_name)

    @service.operation(echo_operation(service.name))
    async def echo(payload: Payload, message: Envelope) -> Payload:
        if handler_cpu_ms:
            busy(handler_cpu_ms)
        return payload

    transport = kafka_transport(settings)  # settings.transport: aiokafka or rdkafka
    worker = ServiceWorker(service, transport, settings, load_identity(settings),
                           group_id=group_id, store=MemoryIdempotencyStore())
    return MeshResponder(worker, transport)


async def serve(args: argparse.Namespace) -> dict[str, int]:
    keys = None if args.keys_dir is None else Path(args.keys_dir)
    settings = BusSettings(bootstrap_servers=args.bootstrap, service_name=args.service,
                           linger_ms=args.linger_ms, fetch_max_wait_ms=args.fetch_max_wait_ms,
                           max_message_bytes=args.max_message_bytes,
                           transport=args.transport, **identity_settings(keys, args.service))
    stop = stop_event(args.max_seconds)
    responder = mesh_service(settings, args.group, args.handler_cpu_ms)
    init_gc.settle_for_serving()  # as functions.shared.worker_main does before it serves
    announce_ready()  # the worker joins its group in run(); the caller probes until it answers
    try:
        await responder.worker.run(stop)
    finally:
        await responder.close()
    return {"handled": responder.worker.handled, "rejected": responder.worker.rejected}


def main() -> None:
    parser = argparse.ArgumentParser(description="Mesh echo responder (ServiceWorker).")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--service", required=True, help="service name (no dots)")
    parser.add_argument("--group", required=True)
    parser.add_argument("--linger-ms", type=int, default=0)
    parser.add_argument("--fetch-max-wait-ms", type=int, default=10)
    parser.add_argument("--keys-dir", help="from provision_identities; omitted: insecure")
    parser.add_argument("--max-message-bytes", type=int,
                        default=BusSettings.model_fields["max_message_bytes"].default)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--transport", choices=("aiokafka", "rdkafka"), default="aiokafka",
                        help="the worker's Kafka client library (bus.transport.select)")
    parser.add_argument("--handler-cpu-ms", type=float, default=0.0,
                        help="CPU the echo handler spends per request (default none)")
    parser.add_argument("--processes", default="1",
                        help="worker processes in the group (bus.runtime.processes; auto: "
                             "one per core); each prints ready and its counters")
    args = parser.parse_args()
    processes.enter(args.processes)  # > 1: this process supervises them and exits here
    report(asyncio.run(serve(args)))


if __name__ == "__main__":
    main()
