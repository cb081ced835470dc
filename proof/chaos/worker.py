"""A chaos service worker as its own process, so a scenario can SIGKILL it:
``python -m proof.chaos.worker --config FILE`` (spawned with ``proof.procs.spawn``).

The config (JSON) holds ``env`` (the ``MESH_*`` variables of its bus settings and identity),
``runs`` and ``ledger`` (the effect logs, ``proof.chaos.service``), ``table`` and
``endpoint`` (a DynamoDB idempotency table on that emulator; none: no store), ``handler_ms``,
``lease_ms``, ``max_seconds``, ``log`` (where its log lines go) and ``processes`` (more
than 1: the process supervises that many copies of itself in one group,
``bus.runtime.processes``, as a service's worker with ``MESH_WORKER_PROCESSES``). It (each
copy) prints ``ready``, runs until SIGTERM/SIGINT, EOF on stdin or ``max_seconds``
(``proof.procs.stop_event``), then prints its counters as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any

from bus.config import BusSettings
from bus.delivery.idempotency import IdempotencyStore
from bus.runtime import processes
from bus.runtime.worker import DEFAULT_LEASE_MS, ServiceWorker
from bus.security.identity import load_identity
from bus.transport.kafka import KafkaTransport
from functions.shared.dynamodb_idempotency import DynamoDBIdempotencyStore
from proof.chaos.service import EffectLogs, chaos_service
from proof.chaos.stack import aws_settings
from proof.procs import announce_ready, report, stop_event


def worker_config(env: dict[str, str], logs: EffectLogs, *, table: str | None,
                  endpoint: str | None, handler_ms: int, lease_ms: int = DEFAULT_LEASE_MS,
                  log: Path, max_seconds: float = 600, processes: int = 1) -> dict[str, Any]:
    return {"env": env, "log": str(log), "runs": str(logs.runs), "processes": processes,
            "ledger": str(logs.ledger) if logs.ledger else None, "table": table,
            "endpoint": endpoint, "handler_ms": handler_ms, "lease_ms": lease_ms,
            "max_seconds": max_seconds}


async def serve(config: dict[str, Any]) -> None:
    env = {**os.environ, **config["env"]}
    settings = BusSettings.resolve(env=env)
    identity = load_identity(settings, env=env)
    store: IdempotencyStore | None = None
    if config["table"]:
        store = DynamoDBIdempotencyStore(
            config["table"], client_args=aws_settings(config["endpoint"]).aws_client_args())
    logs = EffectLogs(Path(config["runs"]),
                      Path(config["ledger"]) if config["ledger"] else None)
    service = chaos_service(settings.service_name, logs, config["handler_ms"] / 1000)
    stop = stop_event(float(config["max_seconds"]))
    transport = KafkaTransport(settings)
    worker = ServiceWorker(service, transport, settings, identity, store=store,
                           lease_ms=int(config["lease_ms"]))
    announce_ready()
    try:
        await worker.run(stop)
    finally:
        await transport.close()
        report({"pid": os.getpid(), "handled": worker.handled,
                "duplicates": worker.duplicates, "expired": worker.expired,
                "abandoned": worker.abandoned, "quarantined": worker.quarantined})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    args = parser.parse_args()
    config = json.loads(Path(args.config).read_text())
    logging.basicConfig(level=logging.INFO, filename=config["log"],
                        format=f"%(asctime)s {os.getpid()} %(levelname)s %(name)s %(message)s")
    processes.enter(int(config.get("processes", 1)))  # > 1: supervises, exits here
    asyncio.run(serve(config))


if __name__ == "__main__":
    main()
