"""Reply hijack on the real broker: while a real worker holds a call, validly signed replies
from a service that does not own the operation (and from the owner, as another operation) are
written to the caller's reply partition first. The caller parks each on ``mesh.quarantine``
with its reason, keeps waiting, and returns the worker's genuine answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bus.config import BusSettings
from bus.delivery.idempotency import MemoryIdempotencyStore
from bus.envelope import Envelope, reply_for, to_headers
from bus.runtime.client import MeshClient
from bus.runtime.worker import ServiceWorker
from bus.security.identity import Identity
from bus.security.quarantine import H_ORIGINAL_OFFSET, H_ORIGINAL_TOPIC, H_REASON, QUARANTINE_TOPIC
from bus.security.signing import sign
from bus.service import Payload, Service
from bus.transport import Reader
from bus.transport.kafka import KafkaTransport
from tests.integration.test_bus_kafka import wait_until
from tests.support import identities

pytestmark = pytest.mark.integration
OTHER = "itest-other"


@pytest.fixture
async def replies_topic(bootstrap: str, service_name: str) -> AsyncIterator[str]:
    """A reply topic of the test's own, so no other process reads (or parks) its records."""
    topic = f"{service_name}.replies"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 2, 1)])
        yield topic
        await admin.delete_topics([topic])
    finally:
        await admin.close()


@asynccontextmanager
async def quarantine_readers(transport: KafkaTransport) -> AsyncIterator[list[Reader]]:
    """One reader per quarantine partition, from its end as of now."""
    partitions = await transport.partition_count(QUARANTINE_TOPIC)
    readers: list[Reader] = [transport.assigned_reader(QUARANTINE_TOPIC, p)
                             for p in range(partitions)]
    for reader in readers:
        await reader.start()
    try:
        yield readers
    finally:
        for reader in readers:
            await reader.stop()


async def parked_from(readers: list[Reader], topic: str, count: int) -> dict[int, str]:
    """Reason by original offset of the records parked from ``topic`` (``count`` of them)."""
    found: dict[int, str] = {}
    async with asyncio.timeout(30):
        while len(found) < count:
            for reader in readers:
                for record in await reader.read(0.2):
                    headers = dict(record.headers)
                    if headers.get(H_ORIGINAL_TOPIC) == topic.encode():
                        found[int(headers[H_ORIGINAL_OFFSET])] = headers[H_REASON].decode()
    return found


async def test_hijacked_replies_are_quarantined_and_the_genuine_one_is_delivered(
    bus_settings: BusSettings, service_name: str, replies_topic: str,
) -> None:
    mesh = identities({"itest-caller": [f"{service_name}.requests"],
                       service_name: [replies_topic], OTHER: [replies_topic]})
    held: list[Envelope] = []
    release = asyncio.Event()
    service = Service(service_name)

    @service.operation(f"{service_name}.slow")
    async def slow(payload: Payload, message: Envelope) -> Payload:
        held.append(message)
        await asyncio.wait_for(release.wait(), 30)
        return {"genuine": True}

    worker_settings = bus_settings.model_copy(update={"service_name": service_name})
    worker_transport = KafkaTransport(worker_settings)
    worker = ServiceWorker(service, worker_transport, worker_settings, mesh[service_name],
                           store=MemoryIdempotencyStore())
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    settings = bus_settings.model_copy(update={"reply_topic": replies_topic,
                                               "reply_partition": 1, "max_attempts": 1})
    client = MeshClient(KafkaTransport(settings), settings, mesh["itest-caller"])
    attacker = KafkaTransport(bus_settings)
    try:
        await client.start()
        async with quarantine_readers(attacker) as readers:
            call = asyncio.create_task(client.request(f"{service_name}.slow", {}, timeout_s=40))
            await wait_until(lambda: held, 30)
            request = held[0]

            async def write(identity: Identity, envelope: Envelope) -> None:
                assert identity.signing_key is not None
                signed = sign(envelope, replies_topic, identity.signing_key)
                await attacker.send(replies_topic, signed.value, headers=to_headers(signed),
                                    partition=1)

            await write(mesh[OTHER], reply_for(request, source=OTHER, value=b'{"hijacked":1}'))
            await write(mesh[OTHER], reply_for(
                request, source=OTHER, error=True,
                value=b'{"code":"not_found","message":"hijacked"}'))
            await write(mesh[service_name], replace(
                reply_for(request, source=service_name, value=b'{"hijacked":2}'),
                type=f"{service_name}.other"))
            await wait_until(lambda: client.quarantined >= 3, 30)
            assert not call.done()  # the hijacks resolved nothing: the call still waits
            release.set()
            answer = await asyncio.wait_for(call, 30)
            reasons = await parked_from(readers, replies_topic, 3)
    finally:
        release.set()
        await client.close()
        stop.set()
        await asyncio.wait_for(running, 20)
        await worker_transport.close()
        await attacker.close()
    assert answer == {"genuine": True}
    assert [reasons[offset] for offset in sorted(reasons)] == [
        "unexpected_replier", "unexpected_replier", "unexpected_reply_type"]
    assert client.quarantined == 3

