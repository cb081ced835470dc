"""Request/reply through MeshClient + ServiceWorker, on the in-memory broker and on real Kafka.

Messages are signed (fresh Ed25519 keys, one shared key ring) and the access map allows
exactly what the calls need, as in production.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from bus.delivery.idempotency import MemoryIdempotencyStore
from bus.envelope import Envelope
from bus.errors import DeadlineExceeded, HandlerError, RemoteError, is_retriable
from bus.runtime.client import MeshClient
from bus.runtime.worker import ServiceWorker
from bus.security.access import AccessPolicy
from bus.security.identity import Identity
from bus.security.keys import KeyRing, generate_ed25519
from bus.service import Payload, Service
from tests.contract.conftest import CLOSE_TIMEOUT_S, Topics, TransportFactory, unique

CALLER = "contract-caller"
TIMEOUT_S = 30.0  # covers a Kafka group join on the first request


class Mesh:
    """One service (with a fresh name and request topic) and its callers on one backend."""

    def __init__(self, factory: TransportFactory, service: str, reply_topic: str) -> None:
        self.factory = factory
        self.service = service
        self.reply_topic = reply_topic
        keys = {name: generate_ed25519(name) for name in (CALLER, service)}
        keyring = KeyRing(verify for _, verify in keys.values())
        access = AccessPolicy.from_dict({CALLER: [f"{service}.requests"], service: [reply_topic]})
        self.identities = {name: Identity(name, signing, keyring, access)
                           for name, (signing, _) in keys.items()}
        self.clients: list[MeshClient] = []

    def client(self) -> MeshClient:
        settings = self.factory.settings(CALLER, reply_topic=self.reply_topic)
        client = MeshClient(self.factory(CALLER), settings, self.identities[CALLER])
        self.clients.append(client)
        return client

    @asynccontextmanager
    async def running(self, service: Service) -> AsyncIterator[ServiceWorker]:
        settings = self.factory.settings(service.name)
        worker = ServiceWorker(service, self.factory(service.name), settings,
                               self.identities[service.name], store=MemoryIdempotencyStore())
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop), name=f"worker:{service.name}")
        try:
            yield worker
        finally:
            stop.set()
            done, _ = await asyncio.wait([task], timeout=CLOSE_TIMEOUT_S)
            if not done:
                task.cancel()
                await asyncio.wait([task], timeout=CLOSE_TIMEOUT_S)
                pytest.fail(f"the {service.name} worker did not stop in {CLOSE_TIMEOUT_S:g}s")
            task.result()  # a crashed worker fails the test

    async def close(self) -> None:
        for client in self.clients:
            await asyncio.wait_for(client.close(), CLOSE_TIMEOUT_S)


@pytest.fixture
async def mesh(transport_factory: TransportFactory, topics: Topics) -> AsyncIterator[Mesh]:
    service = unique("contract")
    await topics.create(partitions=2, name=f"{service}.requests")
    made = Mesh(transport_factory, service, await topics.create(partitions=2))
    try:
        yield made
    finally:
        await made.close()


def calculator(name: str, handled: list[str]) -> Service:
    service = Service(name)

    @service.operation(f"{name}.add")
    async def add(payload: Payload, message: Envelope) -> Payload:
        handled.append(message.id)
        return {"sum": payload["a"] + payload["b"], "from": message.source}

    @service.operation(f"{name}.echo")
    async def echo(payload: Payload, message: Envelope) -> Payload:
        handled.append(message.id)
        return {"n": payload["n"], "correlation": message.correlation_id}

    @service.operation(f"{name}.out_of_stock")
    async def out_of_stock(payload: Payload, message: Envelope) -> Payload:
        raise HandlerError("out_of_stock", "nothing left", retriable=True)

    @service.operation(f"{name}.invalid")
    async def invalid(payload: Payload, message: Envelope) -> Payload:
        raise HandlerError("invalid_order", "no lines", retriable=False)

    return service


async def test_round_trip(mesh: Mesh) -> None:
    handled: list[str] = []
    async with mesh.running(calculator(mesh.service, handled)):
        reply = await mesh.client().request(f"{mesh.service}.add", {"a": 2, "b": 3},
                                            timeout_s=TIMEOUT_S)
    assert reply == {"sum": 5, "from": CALLER}
    assert len(handled) == 1


async def test_remote_errors_keep_type_code_and_retriable(mesh: Mesh) -> None:
    client = mesh.client()
    async with mesh.running(calculator(mesh.service, [])):
        with pytest.raises(RemoteError) as retriable:
            await client.request(f"{mesh.service}.out_of_stock", {}, timeout_s=TIMEOUT_S)
        with pytest.raises(RemoteError) as final:
            await client.request(f"{mesh.service}.invalid", {}, timeout_s=TIMEOUT_S)
        with pytest.raises(RemoteError) as unknown:
            await client.request(f"{mesh.service}.nope", {}, timeout_s=TIMEOUT_S)

    assert (retriable.value.remote_code, retriable.value.message) == ("out_of_stock",
                                                                      "nothing left")
    assert retriable.value.remote_retriable is True
    assert is_retriable(retriable.value) is True  # what retry loops look at
    assert (final.value.remote_code, final.value.message) == ("invalid_order", "no lines")
    assert final.value.remote_retriable is False
    assert is_retriable(final.value) is False
    assert unknown.value.remote_code == "unknown_operation"
    assert unknown.value.remote_retriable is False


async def test_no_worker_gives_deadline_exceeded(mesh: Mesh) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        with pytest.raises(DeadlineExceeded):
            await mesh.client().request(f"{mesh.service}.add", {"a": 1, "b": 1}, timeout_s=1.0)


async def test_concurrent_requests_each_get_their_own_reply(mesh: Mesh) -> None:
    handled: list[str] = []
    client = mesh.client()
    async with mesh.running(calculator(mesh.service, handled)):
        replies = await asyncio.gather(*(
            client.request(f"{mesh.service}.echo", {"n": n}, timeout_s=TIMEOUT_S)
            for n in range(50)
        ))
    assert [reply["n"] for reply in replies] == list(range(50))
    assert len({reply["correlation"] for reply in replies}) == 50
    assert len(handled) == 50
