"""Nested calls: a handler reaches its worker's mesh client through bus.context.mesh_client(),
and the calls it makes inherit the handled message's deadline, trace and principal."""

from __future__ import annotations

import json

import pytest

from bus.config import BusSettings
from bus.context import current_client, mesh_client
from bus.delivery.idempotency import MemoryIdempotencyStore
from bus.envelope import Envelope, ReplyTo, new_request, now_ms
from bus.errors import NoMeshClient
from bus.runtime.client import MeshClient
from bus.runtime.worker import ServiceWorker
from bus.service import Payload, Service
from bus.telemetry.tracing import new_traceparent
from bus.testing import MeshTestKit
from bus.transport.memory import MemoryBroker, MemoryTransport

ALICE = '{"method":"jwt","sub":"alice"}'


def front_and_back() -> tuple[Service, Service]:
    front, back = Service("front"), Service("back")

    @front.operation("front.ask")
    async def ask(payload: Payload, message: Envelope) -> Payload:
        answer = await mesh_client().request("back.echo", payload, timeout_s=30)
        return {"back_said": answer}

    @back.operation("back.echo")
    async def echo(payload: Payload, message: Envelope) -> Payload:
        return {**payload, "from": message.source}

    return front, back


def test_outside_a_worker_there_is_no_client() -> None:
    with pytest.raises(NoMeshClient) as raised:
        mesh_client()
    assert raised.value.code == "no_mesh_client"
    assert raised.value.retriable is False


async def test_a_handler_calls_another_service_through_its_workers_client() -> None:
    front, back = front_and_back()
    async with MeshTestKit([front, back]) as kit:
        trace = new_traceparent()
        answer = await kit.client("gateway").request("front.ask", {"n": 1}, timeout_s=5,
                                                     traceparent=trace, principal=ALICE)
        assert answer == {"back_said": {"n": 1, "from": "front"}}
        [outer] = kit.envelopes("front.requests")
        [nested] = kit.envelopes("back.requests")
    assert nested.source == "front"
    assert nested.signature is not None
    assert outer.traceparent is not None
    assert nested.traceparent is not None
    assert nested.traceparent.split("-")[1] == outer.traceparent.split("-")[1] == \
        trace.split("-")[1]
    assert nested.principal == ALICE
    assert outer.deadline_ms is not None
    assert nested.deadline_ms is not None
    assert nested.deadline_ms <= outer.deadline_ms  # 30 s asked, 5 s left: capped


async def test_the_client_is_set_only_while_a_record_is_handled() -> None:
    front, back = front_and_back()
    async with MeshTestKit([front, back]) as kit:
        await kit.client().request("front.ask", {})
        assert current_client.get() is None
        assert kit.worker("front").client is not None


async def test_a_worker_without_a_client_answers_no_mesh_client() -> None:
    front, _ = front_and_back()
    request = new_request(source="gateway", operation="front.ask", value=json.dumps({}).encode(),
                          reply_to=ReplyTo("mesh.replies", 0), deadline_ms=now_ms() + 5000)
    outcome = await front.handle(request)
    assert outcome.error_code == "no_mesh_client"
    assert outcome.retriable is False


def test_a_worker_refuses_another_services_client() -> None:
    front, _ = front_and_back()
    kit = MeshTestKit([front])
    broker = MemoryBroker()
    settings = BusSettings(service_name="front")
    other = MeshClient(MemoryTransport(broker), BusSettings(service_name="back"),
                       kit.identity("back"))
    with pytest.raises(ValueError, match="cannot make 'front'"):
        ServiceWorker(front, MemoryTransport(broker), settings, kit.identity("front"),
                      client=other, store=MemoryIdempotencyStore())
