"""Lambda entry point of every service fed by a Kafka event source mapping:
``functions.kafka_service.handler.handler``.

The function is told its service by ``MESH_SERVICE_NAME`` (and a subset by
``MESH_SERVICE_SUBSET``); its handlers are found as the local workers find them
(``functions/<name>/service.py``, ``functions.kafka_service.discovery``) and run by
``bus.runtime.eventsource.runner`` over the MSK or self-managed Kafka event, exactly as its
worker runs them. Per process, created on the first invocation and kept while the instance is
warm: one event loop, the Kafka transport (replies, quarantine, nested calls), the identity
(signing key from Secrets Manager, read in a thread) and the DynamoDB idempotency store.
Returns the partial batch response.
"""

# ruff: noqa: E402  (the collector is paused before the imports it would slow down)
from __future__ import annotations

from functions.shared import init_gc

init_gc.pause_collection()

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

from bus.config import BusSettings
from bus.delivery.idempotency import IdempotencyStore
from bus.envelope import now_ms
from bus.runtime.client import MeshClient
from bus.runtime.eventsource.records import KafkaEvent, MalformedKafkaEvent, parse_event
from bus.runtime.eventsource.runner import KafkaEventRunner
from bus.runtime.worker import ServiceWorker
from bus.security.identity import Identity
from bus.service import Service
from bus.telemetry.mesh_telemetry import MeshTelemetry
from bus.transport import Transport
from functions.errors import ConfigError
from functions.kafka_service.discovery import find_service
from functions.shared.durable_store import durable_store
from functions.shared.kafka_connect import kafka_transport
from functions.shared.key_reload import load_live_identity, refresh_before_invocation
from functions.shared.otel_setup import flush_budget_s, setup_telemetry

log = logging.getLogger(__name__)
SERVICE_ENV = "MESH_SERVICE_NAME"
SUBSET_ENV = "MESH_SERVICE_SUBSET"
# Stop starting records this long before Lambda's own timeout, so the response gets out.
SAFETY_MARGIN_MS = 2_000
NO_CONTEXT_BUDGET_MS = 30_000
START_TIMEOUT_S = 20.0


class ServiceInstance:
    """What one Lambda instance of ``service`` keeps between invocations (created lazily)."""

    def __init__(self, service: Service, subset: str = "") -> None:
        self.service = service
        self.subset = subset
        self.loop = asyncio.new_event_loop()
        self._runner: KafkaEventRunner | None = None
        # OTEL_* variables: the handlers' spans continue the callers' traces; none without.
        self.telemetry = setup_telemetry(service.name)

    async def runner(self) -> KafkaEventRunner:
        if self._runner is None:
            settings = BusSettings.resolve(service_name=self.service.name)
            # Durable replay memory, or one line naming MESH_IDEMPOTENCY_TABLE (StoreRequired
            # fails the invocation: the mapping retries, nothing is handled unprotected).
            store = durable_store(settings, f"{self.service.name} Kafka-event function")
            async with asyncio.timeout(START_TIMEOUT_S):  # a blocking AWS call, in a thread
                identity = await asyncio.to_thread(load_live_identity, settings)
            transport = kafka_transport(settings)  # its SCRAM secret from Secrets Manager
            telemetry = MeshTelemetry(self.service.name)
            # Handlers may call other services (orders.quote asks inventory): the instance
            # reads its replies on one mesh.replies partition, started on the first call.
            client = MeshClient(transport, settings, identity, telemetry=telemetry)
            self._runner = KafkaEventRunner(
                worker_factory(self.service, transport, settings, identity, store, telemetry,
                               client, subset=self.subset),
                transport, settings)
        return self._runner

    def handle(self, event: object, context: Any) -> dict[str, Any]:
        try:
            batch = parse_event(event)
        except MalformedKafkaEvent as exc:
            return refused(exc)
        return self.handle_batch(batch, context)

    def handle_batch(self, batch: KafkaEvent, context: Any) -> dict[str, Any]:
        remaining = (context.get_remaining_time_in_millis() if context is not None
                     else NO_CONTEXT_BUDGET_MS)
        refresh_before_invocation()  # mesh keys, when due (a rotation may have moved on)

        async def run() -> dict[str, Any]:
            runner = await self.runner()
            deadline_ms = now_ms() + max(remaining - SAFETY_MARGIN_MS, 0)
            result = await runner.run(batch, deadline_ms=deadline_ms)
            log.info("batch of %d from %s: %s", len(batch.records), batch.source,
                     dict(result.dispositions))
            return result.response

        try:
            return self.loop.run_until_complete(run())
        finally:
            if self.telemetry is not None:  # a frozen instance exports nothing
                self.telemetry.force_flush(flush_budget_s(context))


def worker_factory(service: Service, transport: Transport, settings: BusSettings,
                   identity: Identity, store: IdempotencyStore, telemetry: MeshTelemetry,
                   client: MeshClient | None = None, *,
                   subset: str = "") -> Callable[[], ServiceWorker]:
    def new_worker() -> ServiceWorker:
        return ServiceWorker(service, transport, settings, identity, store=store,
                             telemetry=telemetry, client=client, subset=subset)

    identity.access.check_consume(service.name, service.request_topic_of(subset))
    return new_worker


_INSTANCE: ServiceInstance | None = None


def instance() -> ServiceInstance:
    """This process's instance, for the service its environment names (found once)."""
    global _INSTANCE
    if _INSTANCE is None:
        name = os.environ.get(SERVICE_ENV, "")
        if not name:
            raise ConfigError(f"{SERVICE_ENV} is not set: which service is this function?")
        _INSTANCE = ServiceInstance(find_service(name), os.environ.get(SUBSET_ENV, ""))
    return _INSTANCE


def refused(exc: MalformedKafkaEvent) -> dict[str, Any]:
    """Never raised: an uncaught exception restarts the process (the next batch pays a cold
    start). An event source mapping only sends well-formed events; anything else is a direct
    invocation, answered with a 400-shaped refusal (no batchItemFailures, so a mapping would
    treat it as failed and keep the batch: nothing is dropped)."""
    log.warning("unreadable Kafka event refused: %s", exc)
    return {"statusCode": 400, "error": exc.code, "message": str(exc)}


def handler(event: object, context: Any) -> dict[str, Any]:
    try:
        batch = parse_event(event)  # refused before the service is even looked up
    except MalformedKafkaEvent as exc:
        return refused(exc)
    return instance().handle_batch(batch, context)


init_gc.settle_for_serving()  # last: the imports frozen, the serving threshold
