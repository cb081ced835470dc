"""One trace from caller to service and back, carried in real Kafka record headers."""

from __future__ import annotations

import asyncio

import pytest

from bus.config import BusSettings
from bus.delivery.idempotency import MemoryIdempotencyStore
from bus.envelope import Envelope
from bus.runtime.client import MeshClient
from bus.runtime.worker import ServiceWorker
from bus.service import Payload, Service
from bus.transport.kafka import KafkaTransport
from tests.support import Telemetry, identities

pytestmark = pytest.mark.integration
INCOMING = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_trace_is_unbroken_across_kafka(service_name: str, bus_settings: BusSettings
                                              ) -> None:
    mesh = identities({"caller": [f"{service_name}.requests"], service_name: ["mesh.replies"]})
    telemetry = Telemetry()
    service = Service(service_name)

    @service.operation(f"{service_name}.echo")
    async def echo(payload: Payload, message: Envelope) -> Payload:
        return payload

    worker_settings = bus_settings.model_copy(update={"service_name": service_name})
    worker_transport = KafkaTransport(worker_settings)
    worker = ServiceWorker(service, worker_transport, worker_settings, mesh[service_name],
                           telemetry=telemetry.for_service(service_name),
                           store=MemoryIdempotencyStore())
    caller_settings = bus_settings.model_copy(update={"service_name": "caller"})
    client = MeshClient(KafkaTransport(caller_settings), caller_settings, mesh["caller"],
                        telemetry=telemetry.for_service("caller"))
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        assert await client.request(f"{service_name}.echo", {"x": 1}, timeout_s=20,
                                    traceparent=INCOMING) == {"x": 1}
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        await client.close()
        await worker_transport.close()
    spans = {s.name: s for s in telemetry.spans.get_finished_spans()}
    request = spans[f"{service_name}.echo"]
    send = spans[f"send {service_name}.requests"]
    process = spans[f"process {service_name}.requests"]
    reply = spans["send mesh.replies"]
    assert {format(s.context.trace_id, "032x") for s in spans.values()} == {
        "4bf92f3577b34da6a3ce929d0e0e4736"}
    assert request.parent is not None
    assert request.parent.span_id == int("00f067aa0ba902b7", 16)
    assert send.parent is not None
    assert send.parent.span_id == request.context.span_id
    assert process.parent is not None
    assert process.parent.span_id == send.context.span_id
    assert reply.parent is not None
    assert reply.parent.span_id == process.context.span_id
    assert process.attributes is not None
    assert process.attributes["messaging.system"] == "kafka"
    assert process.attributes["messaging.destination.name"] == f"{service_name}.requests"
