"""mesh.consumer.lag on the real broker: it rises while the worker's handlers are held back
and falls to 0 once the worker has answered everything."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bus.config import BusSettings
from bus.delivery.idempotency import MemoryIdempotencyStore
from bus.envelope import Envelope
from bus.runtime.client import MeshClient
from bus.runtime.worker import ServiceWorker
from bus.security.identity import Identity
from bus.service import Payload, Service
from bus.transport.kafka import KafkaTransport
from tests.support import Telemetry, identities

pytestmark = pytest.mark.integration
CALLER = "itest-caller"
REQUESTS = 12


def lag_points(telemetry: Telemetry) -> list[Any]:
    """The gauge's points now ([] when nothing at all was observed)."""
    if telemetry.metrics.get_metrics_data() is None:
        return []
    return telemetry.points("mesh.consumer.lag")


def lag_by_partition(telemetry: Telemetry) -> dict[str, int]:
    return {str(p.attributes["messaging.destination.partition.id"]): int(p.value)
            for p in lag_points(telemetry)}


async def test_lag_rises_while_the_worker_is_held_and_falls_to_zero(
    service_name: str, bus_settings: BusSettings
) -> None:
    mesh: dict[str, Identity] = identities({
        CALLER: [f"{service_name}.requests"], service_name: ["mesh.replies"],
    })
    gate = asyncio.Event()
    service = Service(service_name)

    @service.operation(f"{service_name}.slow")
    async def slow(payload: Payload, message: Envelope) -> Payload:
        await asyncio.wait_for(gate.wait(), 30)
        return {"n": payload["n"]}

    telemetry = Telemetry()
    settings = bus_settings.model_copy(update={"service_name": service_name})
    transport = KafkaTransport(settings)
    worker = ServiceWorker(service, transport, settings, mesh[service_name], concurrency=2,
                           telemetry=telemetry.for_service(service_name),
                           store=MemoryIdempotencyStore())
    client = MeshClient(KafkaTransport(bus_settings), bus_settings, mesh[CALLER])
    stop = asyncio.Event()
    calls = [asyncio.create_task(client.request(f"{service_name}.slow", {"n": n},
                                                timeout_s=40)) for n in range(REQUESTS)]
    run = asyncio.create_task(worker.run(stop))
    try:
        async with asyncio.timeout(30):
            while sum(lag_by_partition(telemetry).values()) == 0:  # noqa: ASYNC110 - polls the gauge
                await asyncio.sleep(0.1)
        held = lag_by_partition(telemetry)
        assert 0 < sum(held.values()) <= REQUESTS
        [point] = lag_points(telemetry)[:1]
        assert point.attributes["messaging.consumer.group.name"] == service_name
        assert point.attributes["messaging.destination.name"] == f"{service_name}.requests"

        gate.set()
        replies = await asyncio.wait_for(asyncio.gather(*calls), 30)
        assert sorted(r["n"] for r in replies) == list(range(REQUESTS))
        async with asyncio.timeout(10):
            while not (lags := lag_by_partition(telemetry)) or any(lags.values()):  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        assert set(lags) <= {"0", "1", "2"}
    finally:
        gate.set()
        stop.set()
        await asyncio.wait_for(run, 15)
        for call in calls:
            call.cancel()
        await asyncio.wait(calls, timeout=5)
        await client.close()
        await transport.close()
    assert lag_points(telemetry) == []  # a stopped worker reports nothing
