"""Lambda entry point of the ``orders`` service fed by a Kafka event source mapping:
``functions.orders.lambda_handler.handler``.

The same handlers as the worker (``functions.orders.service.orders``), run by
``bus.runtime.eventsource.runner`` over the MSK or self-managed Kafka event. Per process, created on
the first invocation and kept while the instance is warm: one event loop, the Kafka transport
(replies and quarantine), the identity (signing key from Secrets Manager, read in a thread)
and the DynamoDB idempotency store. Returns the partial batch response.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from bus.config import BusSettings
from bus.delivery.idempotency import IdempotencyStore
from bus.envelope import now_ms
from bus.runtime.client import MeshClient
from bus.runtime.eventsource.records import MalformedKafkaEvent, parse_event
from bus.runtime.eventsource.runner import KafkaEventRunner
from bus.runtime.worker import ServiceWorker
from bus.security.identity import Identity
from bus.telemetry.mesh_telemetry import MeshTelemetry
from bus.transport.kafka import KafkaTransport
from functions.orders.service import orders
from functions.shared.durable_store import durable_store
from functions.shared.key_reload import load_live_identity, refresh_before_invocation
from functions.shared.otel_setup import flush_budget_s, setup_telemetry

log = logging.getLogger(__name__)
# Stop starting records this long before Lambda's own timeout, so the response gets out.
SAFETY_MARGIN_MS = 2_000
NO_CONTEXT_BUDGET_MS = 30_000
START_TIMEOUT_S = 20.0


class _Instance:
    """What one Lambda instance keeps between invocations (created lazily, once)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._runner: KafkaEventRunner | None = None
        # OTEL_* variables: the handlers' spans continue the callers' traces; none without.
        self.telemetry = setup_telemetry(orders.name)

    async def runner(self) -> KafkaEventRunner:
        if self._runner is None:
            settings = BusSettings.resolve(service_name=orders.name)
            # Durable replay memory, or one line naming MESH_IDEMPOTENCY_TABLE (StoreRequired
            # fails the invocation: the mapping retries, nothing is handled unprotected).
            store = durable_store(settings, f"{orders.name} Kafka-event function")
            async with asyncio.timeout(START_TIMEOUT_S):  # a blocking AWS call, in a thread
                identity = await asyncio.to_thread(load_live_identity, settings)
            transport = KafkaTransport(settings)
            telemetry = MeshTelemetry(orders.name)
            # Handlers call other services (orders.quote asks inventory): the instance reads
            # its replies on one mesh.replies partition, started on the first nested call.
            client = MeshClient(transport, settings, identity, telemetry=telemetry)
            self._runner = KafkaEventRunner(
                _worker_factory(transport, settings, identity, store, telemetry, client),
                transport, settings)
        return self._runner


def _worker_factory(transport: KafkaTransport, settings: BusSettings, identity: Identity,
                    store: IdempotencyStore, telemetry: MeshTelemetry,
                    client: MeshClient | None = None) -> Callable[[], ServiceWorker]:
    def new_worker() -> ServiceWorker:
        return ServiceWorker(orders, transport, settings, identity, store=store,
                             telemetry=telemetry, client=client)

    identity.access.check_consume(orders.name, orders.request_topic)
    return new_worker


# The per-process holder: its clients are created on the first invocation.
INSTANCE = _Instance()


def handler(event: object, context: Any) -> dict[str, Any]:
    try:
        batch = parse_event(event)
    except MalformedKafkaEvent as exc:
        # Never raised: an uncaught exception restarts the process (the next batch pays a
        # cold start). An event source mapping only sends well-formed events; anything else
        # is a direct invocation, answered with a 400-shaped refusal (no batchItemFailures,
        # so a mapping would treat it as failed and keep the batch: nothing is dropped).
        log.warning("unreadable Kafka event refused: %s", exc)
        return {"statusCode": 400, "error": exc.code, "message": str(exc)}
    remaining = (context.get_remaining_time_in_millis() if context is not None
                 else NO_CONTEXT_BUDGET_MS)
    instance = INSTANCE
    refresh_before_invocation()  # mesh keys, when due (a rotation may have moved on)

    async def run() -> dict[str, Any]:
        runner = await instance.runner()
        deadline_ms = now_ms() + max(remaining - SAFETY_MARGIN_MS, 0)
        result = await runner.run(batch, deadline_ms=deadline_ms)
        log.info("batch of %d from %s: %s", len(batch.records), batch.source,
                 dict(result.dispositions))
        return result.response

    try:
        return instance.loop.run_until_complete(run())
    finally:
        if instance.telemetry is not None:  # a frozen instance exports nothing
            instance.telemetry.force_flush(flush_budget_s(context))

