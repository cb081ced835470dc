"""The idempotency store of a worker or function process: durable, or a one-line refusal.

A process entry point (``worker_main``, the Kafka-event Lambda) takes its store from
``MESH_IDEMPOTENCY_TABLE`` (``BusSettings.idempotency_table``): the DynamoDB table that is
the service's replay memory across restarts, instances and outages. Without one it refuses
to start, unless the process runs insecure (``MESH_INSECURE=1``: no signatures, so nothing
to protect; it then gets an in-memory store, which forgets on restart). The in-memory store
stays what it is for: tests and the test kit, passed explicitly to the library.
"""

from __future__ import annotations

from bus.config import BusSettings
from bus.delivery.idempotency import IdempotencyStore, MemoryIdempotencyStore
from bus.delivery.replay_memory import IDEMPOTENCY_TABLE_ENV, StoreRequired
from functions.shared.dynamodb_idempotency import DynamoDBIdempotencyStore


def durable_store(settings: BusSettings, who: str) -> IdempotencyStore:
    """The process's store; raises ``StoreRequired`` (one line) when none is configured."""
    if settings.idempotency_table:
        return DynamoDBIdempotencyStore(settings.idempotency_table)
    if settings.insecure:
        return MemoryIdempotencyStore()
    raise StoreRequired(
        f"{who}: error: {IDEMPOTENCY_TABLE_ENV} is not set; name the DynamoDB idempotency "
        "table (the durable replay memory that stops a replay or redelivery from running "
        "twice), or set MESH_INSECURE=1 for tests (no signatures, no replay protection)")
