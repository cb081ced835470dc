"""The librdkafka transport (``MESH_TRANSPORT=rdkafka``, bus.transport.rdkafka) on the REAL
broker, beyond the contract suite (tests/contract, params rdkafka and rdkafka-sasl):

- under the policy's broker ACLs: a worker and a caller each on its own SCRAM identity over
  SASL_SSL with only the derived ACLs (group join, fetch, commit, reply; the caller's reply
  partition read with a consumer group id it has no rights on, which librdkafka wants);
  a write the ACLs refuse is ``BrokerRefused``, not retriable;
- across client libraries: a worker on librdkafka answers a caller on aiokafka and the
  other way round (same records, same signatures);
- every connection failure gives the same one line as the aiokafka transport
  (tests/integration/test_kafka_security.py), from the producer and the consumer.

Every wait is bounded only so a regression cannot hang the run; no duration is asserted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bus.config import BusSettings
from bus.delivery.idempotency import MemoryIdempotencyStore
from bus.envelope import Envelope
from bus.errors import BrokerRefused, KafkaConnectRefused, is_retriable
from bus.runtime.client import MeshClient
from bus.runtime.worker import ServiceWorker
from bus.security.identity import Identity
from bus.service import Payload, Service
from bus.transport import Transport
from bus.transport.rdkafka import RdKafkaTransport
from bus.transport.select import kafka_transport
from infra.kafka.local_listeners import LocalListeners
from infra.settings import Settings
from proof.attack import broker_acl
from tests.integration.test_kafka_security import (  # the same listeners and failures
    CASES,
    _failures,
    listeners,
    other_ca,
)
from tests.support import identities

pytestmark = pytest.mark.integration
BOUND_S = 60.0  # a bound against hanging, not an expectation
CALLER = "itest-rd-caller"
__all__ = ["listeners", "other_ca"]  # fixtures, used by name


def adder(name: str) -> Service:
    service = Service(name)

    @service.operation(f"{name}.add")
    async def add(payload: Payload, message: Envelope) -> Payload:
        return {"sum": payload["a"] + payload["b"], "from": message.source}

    return service


async def call_through(service: Service, worker_transport: Transport,
                       worker_settings: BusSettings, client: MeshClient,
                       worker_identity: Identity) -> Payload:
    """One ``add`` call answered by a worker running on ``worker_transport``."""
    worker = ServiceWorker(service, worker_transport, worker_settings, worker_identity,
                           store=MemoryIdempotencyStore())
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        async with asyncio.timeout(BOUND_S):
            return await client.request(f"{service.name}.add", {"a": 2, "b": 40}, timeout_s=30)
    finally:
        await client.close()
        stop.set()
        await asyncio.wait_for(task, 15)
        await worker_transport.close()
        assert worker.quarantined == 0


@pytest.fixture
async def scene(infra_settings: Settings, bootstrap: str) -> AsyncIterator[broker_acl.Scene]:
    made = broker_acl.scene_for(infra_settings)
    try:
        yield made
    finally:
        await broker_acl.close_scene(made)


async def test_the_derived_acls_are_enough_for_an_rdkafka_worker_and_caller(
        scene: broker_acl.Scene) -> None:
    await broker_acl.open_scene(scene)

    def settings_of(name: str) -> BusSettings:
        return BusSettings.resolve(bootstrap_servers=scene.secure, service_name=name,
                                   kafka=scene.security(name), transport="rdkafka")

    worker_settings, client_settings = settings_of(scene.server), settings_of(scene.client)
    worker_transport = kafka_transport(worker_settings)
    assert isinstance(worker_transport, RdKafkaTransport)
    client = MeshClient(kafka_transport(client_settings), client_settings,
                        scene.identity(scene.client))
    answer = await call_through(adder(scene.server), worker_transport, worker_settings, client,
                                scene.identity(scene.server))
    assert answer == {"sum": 42, "from": scene.client}


async def test_a_write_the_acls_refuse_is_refused_for_good(scene: broker_acl.Scene) -> None:
    await broker_acl.open_scene(scene)
    rogue = RdKafkaTransport(BusSettings(bootstrap_servers=scene.secure,
                                         service_name=scene.rogue,
                                         kafka=scene.security(scene.rogue)))
    try:
        async with asyncio.timeout(BOUND_S):
            await rogue.send(scene.allowed, b"{}", headers=[])  # the control: it may write
            with pytest.raises(BrokerRefused, match="TOPIC_AUTHORIZATION_FAILED") as refused:
                await rogue.send(scene.requests, b"{}", headers=[])
    finally:
        await rogue.close()
    assert not is_retriable(refused.value)


@pytest.mark.parametrize(("worker_on", "caller_on"), [("rdkafka", "aiokafka"),
                                                      ("aiokafka", "rdkafka")])
async def test_a_worker_and_a_caller_on_different_client_libraries(
        listeners: LocalListeners, service_name: str, worker_on: str, caller_on: str) -> None:
    mesh = identities({CALLER: [f"{service_name}.requests"], service_name: ["mesh.replies"]})

    def settings_of(name: str, transport: str) -> BusSettings:
        return BusSettings.resolve(bootstrap_servers=listeners.secure, service_name=name,
                                   kafka=listeners.scram("admin"), transport=transport)

    worker_settings = settings_of(service_name, worker_on)
    caller_settings = settings_of(CALLER, caller_on)
    client = MeshClient(kafka_transport(caller_settings), caller_settings, mesh[CALLER])
    answer = await call_through(adder(service_name), kafka_transport(worker_settings),
                                worker_settings, client, mesh[service_name])
    assert answer == {"sum": 42, "from": CALLER}


@pytest.mark.parametrize("case", CASES)
async def test_each_failure_is_the_same_one_line(listeners: LocalListeners, other_ca: Path,
                                                 case: str) -> None:
    bootstrap, security, error, line = _failures(listeners, other_ca)[case]
    transport = RdKafkaTransport(BusSettings(bootstrap_servers=bootstrap, service_name="itest",
                                             kafka=security))
    try:
        async with asyncio.timeout(BOUND_S):
            with pytest.raises(error) as producer_failed:
                await transport.send("mesh.replies", b"{}", headers=[])
            reader = transport.assigned_reader("mesh.replies", 0)
            with pytest.raises(error) as consumer_failed:
                await reader.start()
    finally:
        await transport.close()
    for failed in (producer_failed, consumer_failed):
        assert str(failed.value) == line
        assert isinstance(failed.value, KafkaConnectRefused)
        assert not is_retriable(failed.value)
