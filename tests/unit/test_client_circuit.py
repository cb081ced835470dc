"""An open circuit fails a call at once: no attempt, no backoff sleep, no retry budget.

Over the memory transport; counted, not timed: every retry spends one unit from the budget
(``try_spend``) before it sleeps, so the budget's counters are the sleeps and retries made.
The same on the real broker: tests/integration/test_traffic_kafka.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bus.config import BusSettings
from bus.envelope import Envelope
from bus.errors import HandlerError, RemoteError
from bus.runtime.client import MeshClient
from bus.runtime.worker import ServiceWorker
from bus.security.identity import Identity
from bus.security.quarantine import QUARANTINE_TOPIC
from bus.service import Payload, Service
from bus.traffic.breaker import CircuitOpen
from bus.traffic.model import TrafficRules
from bus.traffic.table import TrafficTable
from bus.transport.memory import MemoryBroker, MemoryTransport
from tests.support import CountingBudget

OPERATION = "flaky.get"
OPEN_MS = 60_000
RULES = TrafficRules.model_validate({
    "circuit_breaker": {"consecutive_failures": 2, "open_ms": OPEN_MS, "min_calls": 100,
                        "window": 100},
    "retry": {"max_attempts": 4, "base_ms": 1, "cap_ms": 1},
})


@pytest.fixture
def broker() -> MemoryBroker:
    broker = MemoryBroker()
    broker.create_topic("flaky.requests", partitions=1)
    broker.create_topic("mesh.replies", partitions=1)
    broker.create_topic(QUARANTINE_TOPIC, partitions=1)
    return broker


@pytest.fixture
async def worker(broker: MemoryBroker) -> AsyncIterator[list[Payload]]:
    handled: list[Payload] = []
    service = Service("flaky")

    @service.operation(OPERATION)
    async def get(payload: Payload, message: Envelope) -> Payload:
        handled.append(payload)
        raise HandlerError("unavailable", "backend down", retriable=True)

    worker = ServiceWorker(service, MemoryTransport(broker), BusSettings(service_name="flaky"),
                           Identity.insecure("flaky"))
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    yield handled
    stop.set()
    await asyncio.wait([task], timeout=5)
    assert task.done()


def sent(broker: MemoryBroker) -> int:
    return len(broker.log("flaky.requests")[0])


async def test_open_circuit_fails_at_once_without_retries_or_budget(
    broker: MemoryBroker, worker: list[Payload]
) -> None:
    budget = CountingBudget()
    settings = BusSettings(service_name="caller", reply_partition=0)
    client = MeshClient(MemoryTransport(broker), settings, Identity.insecure("caller"),
                        traffic=TrafficTable({OPERATION: RULES}), retry_budget=budget)
    try:
        # The call that opens the circuit: attempt 1 fails, one retry, attempt 2 fails and
        # opens it; a third attempt would be refused for 60 s, so none is made and the
        # service's own error is what the caller sees.
        with pytest.raises(RemoteError):
            await client.request(OPERATION, {"i": 0}, timeout_s=10)
        assert (sent(broker), len(worker), budget.requests, budget.spent) == (2, 2, 1, 1)

        for i in range(1, 6):  # five calls on the open circuit
            with pytest.raises(CircuitOpen) as refused:
                await client.request(OPERATION, {"i": i}, timeout_s=10)
            assert 0 < refused.value.retry_after_ms <= OPEN_MS
        # Nothing sent, nothing handled, no request counted, no retry spent (so no sleep).
        assert (sent(broker), len(worker), budget.requests, budget.spent) == (2, 2, 1, 1)
    finally:
        await client.close()
