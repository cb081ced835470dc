"""Who may speak for an end user, on the real broker: the edge's principal reaches a nested
call's handler with the edge's assertion forwarded unchanged; a trusted, allowed service that
is not an edge and names a principal itself is quarantined as ``principal_not_allowed`` and
never reaches the handler."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bus.config import BusSettings
from bus.context import caller_principal, current_message, mesh_client
from bus.delivery.idempotency import MemoryIdempotencyStore
from bus.envelope import Envelope, ReplyTo, new_request, now_ms, to_headers
from bus.runtime.client import MeshClient
from bus.runtime.worker import ServiceWorker
from bus.security.identity import Identity
from bus.security.principals import PrincipalNotAllowed
from bus.security.quarantine import H_ORIGINAL_TOPIC, H_REASON, QUARANTINE_TOPIC
from bus.security.signing import sign
from bus.service import Payload, Service
from bus.transport.kafka import KafkaTransport
from proof.attack.bus_probe import end_offsets
from tests.support import identities

pytestmark = pytest.mark.integration
CALL_TIMEOUT_S = 20.0
ALICE = '{"method":"jwt","sub":"alice"}'
ADMIN = '{"method":"jwt","sub":"admin"}'


@pytest.fixture
async def names(bootstrap: str) -> AsyncIterator[tuple[str, str]]:
    """Two fresh service names (front calls back), their request topics deleted after."""
    suffix = uuid.uuid4().hex[:10]
    front, back = f"itestf{suffix}", f"itestb{suffix}"
    topics = [f"{front}.requests", f"{back}.requests"]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 2, 1) for topic in topics])
        yield front, back
        await admin.delete_topics(topics)
    finally:
        await admin.close()


def services(front_name: str, back_name: str, seen: list[tuple[str, object, str | None]]
             ) -> tuple[Service, Service]:
    front, back = Service(front_name), Service(back_name)

    @front.operation(f"{front_name}.ask")
    async def ask(payload: Payload, message: Envelope) -> Payload:
        return await mesh_client().request(f"{back_name}.who", {}, timeout_s=CALL_TIMEOUT_S)

    @back.operation(f"{back_name}.who")
    async def who(payload: Payload, message: Envelope) -> Payload:
        handled = current_message.get()
        assert handled is not None
        seen.append((message.id, caller_principal(), handled.principal_assertion))
        return {"principal": caller_principal(), "from": message.source}

    return front, back


async def serve(stack: AsyncExitStack, service: Service, settings: BusSettings,
                identity: Identity, client: MeshClient | None = None) -> ServiceWorker:
    transport = KafkaTransport(settings)
    worker = ServiceWorker(service, transport, settings, identity, client=client,
                           store=MemoryIdempotencyStore())
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))

    async def halt() -> None:
        stop.set()
        await asyncio.wait_for(task, 15)
        await transport.close()

    stack.push_async_callback(halt)
    return worker


async def reasons_for(bootstrap: str, since: dict[TopicPartition, int], topic: str,
                      count: int) -> list[str]:
    """The quarantine reasons of ``count`` records parked from ``topic`` after ``since``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    found: list[str] = []
    try:
        consumer.assign(list(since))
        for partition, offset in since.items():
            consumer.seek(partition, offset)
        give_up = time.monotonic() + CALL_TIMEOUT_S
        while len(found) < count and time.monotonic() < give_up:
            batches = await consumer.getmany(timeout_ms=300)
            for records in batches.values():
                for record in records:
                    headers = dict(record.headers or ())
                    if headers.get(H_ORIGINAL_TOPIC) == topic.encode():
                        found.append(headers[H_REASON].decode())
    finally:
        await consumer.stop()
    return found


async def test_a_principal_travels_from_the_edge_and_a_spoof_is_quarantined(
        names: tuple[str, str], bus_settings: BusSettings, bootstrap: str) -> None:
    front_name, back_name = names
    back_topic = f"{back_name}.requests"
    mesh = identities({
        "gateway": [f"{front_name}.requests"],  # the edge (tests.support marks it)
        front_name: ["mesh.replies", back_topic],
        back_name: ["mesh.replies"],
        "itest-rogue": [back_topic],  # trusted and allowed to call back, not an edge
    })
    settings = {name: bus_settings.model_copy(update={"service_name": name}) for name in mesh}
    seen: list[tuple[str, object, str | None]] = []
    front, back = services(front_name, back_name, seen)
    since = await end_offsets(bootstrap, [QUARANTINE_TOPIC])
    async with AsyncExitStack() as stack:
        nested = MeshClient(KafkaTransport(settings[front_name]), settings[front_name],
                            mesh[front_name])
        stack.push_async_callback(nested.close)
        back_worker = await serve(stack, back, settings[back_name], mesh[back_name])
        await serve(stack, front, settings[front_name], mesh[front_name], client=nested)
        edge = MeshClient(KafkaTransport(settings["gateway"]), settings["gateway"],
                          mesh["gateway"])
        stack.push_async_callback(edge.close)

        answer = await edge.request(f"{front_name}.ask", {}, timeout_s=CALL_TIMEOUT_S,
                                    principal=ALICE)
        assert answer == {"principal": {"method": "jwt", "sub": "alice"}, "from": front_name}
        [(_, principal, assertion)] = seen
        assert principal == {"method": "jwt", "sub": "alice"}
        assert assertion is not None  # the edge's, forwarded by front unchanged

        rogue = MeshClient(KafkaTransport(settings["itest-rogue"]), settings["itest-rogue"],
                           mesh["itest-rogue"])
        stack.push_async_callback(rogue.close)
        with pytest.raises(PrincipalNotAllowed):  # its own client refuses first
            await rogue.request(f"{back_name}.who", {}, principal=ADMIN)

        # A rogue producer skips that client: the receiver refuses on its own.
        key = mesh["itest-rogue"].signing_key
        assert key is not None
        spoofs = [
            new_request(source="itest-rogue", operation=f"{back_name}.who", value=b"{}",
                        reply_to=ReplyTo("mesh.replies", 0), deadline_ms=now_ms() + 30_000,
                        principal=ADMIN, principal_assertion=assertion if forward else None)
            for forward in (False, True)
        ]
        transport = KafkaTransport(settings["itest-rogue"])
        stack.push_async_callback(transport.close)
        for spoof in spoofs:
            sealed = sign(spoof, back_topic, key)
            await transport.send(back_topic, sealed.value, headers=to_headers(sealed))
        reasons = await reasons_for(bootstrap, since, back_topic, len(spoofs))
        assert sorted(reasons) == ["bad_principal_assertion", "principal_not_allowed"]
        assert back_worker.quarantined == 2
        assert back_worker.handled == 1  # the genuine nested call only
