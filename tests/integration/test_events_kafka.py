"""Events on the real broker: handled once, retried through retry topics without stalling the
partition, dead-lettered, listed and replayed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bus.config import BusSettings
from bus.delivery.dlq import Replayer, list_dead_letters, send_replay
from bus.delivery.idempotency import MemoryIdempotencyStore
from bus.delivery.retry_topics import RetryTopicPolicy, RetryTopics
from bus.envelope import Envelope, now_ms
from bus.errors import HandlerError
from bus.runtime.client import MeshClient
from bus.runtime.subscriber import EventSubscriber
from bus.security.identity import Identity
from bus.service import Payload, Service
from bus.transport.kafka import KafkaTransport
from tests.support import identities

pytestmark = pytest.mark.integration
POLICY = RetryTopicPolicy.of_seconds(0.5, 1.0)


@pytest.fixture
async def topic(bootstrap: str) -> AsyncIterator[str]:
    """A fresh event topic (one partition, so order is observable) with its retry and DLT."""
    name = f"itest{uuid.uuid4().hex[:10]}.events"
    names = [name, *RetryTopics(name, POLICY).all_topics()]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, 1, 1) for n in names])
        yield name
        await admin.delete_topics(names)
    finally:
        await admin.close()


@pytest.fixture
def mesh(topic: str) -> dict[str, Identity]:
    return identities({"publisher": [topic], "consumer": ["mesh.replies"]},
                      replay={"operator": [topic]})


class Ledger:
    """What the handler saw, and which events it should refuse."""

    def __init__(self) -> None:
        self.applied: list[str] = []
        self.attempts: dict[str, int] = {}
        self.poison: set[str] = set()
        self.fatal: set[str] = set()


def consumer_service(topic: str, ledger: Ledger) -> Service:
    service = Service("consumer")

    @service.on_event(topic, "thing.happened")
    async def on_thing(payload: Payload, event: Envelope) -> None:
        name = str(payload["name"])
        ledger.attempts[name] = ledger.attempts.get(name, 0) + 1
        if name in ledger.fatal:
            raise HandlerError("invalid_thing", f"{name} can never be handled")
        if name in ledger.poison:
            raise HandlerError("busy", f"{name} is not ready", retriable=True)
        ledger.applied.append(name)

    return service


async def wait_until(condition: Callable[[], Any], timeout_s: float = 20.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - polls counters the subscriber owns
            await asyncio.sleep(0.05)


async def test_poison_event_is_retried_then_dead_lettered_without_stalling_others(
    topic: str, bus_settings: BusSettings, mesh: dict[str, Identity]
) -> None:
    ledger = Ledger()
    ledger.poison.add("poison")
    ledger.fatal.add("fatal")
    settings = bus_settings.model_copy(update={"service_name": "consumer"})
    transport = KafkaTransport(settings)
    subscriber = EventSubscriber(consumer_service(topic, ledger), topic, transport, settings,
                                 mesh["consumer"], policy=POLICY,
                                 store=MemoryIdempotencyStore())
    pub_settings = bus_settings.model_copy(update={"service_name": "publisher"})
    publisher = MeshClient(KafkaTransport(pub_settings), pub_settings, mesh["publisher"])
    stop = asyncio.Event()
    task = asyncio.create_task(subscriber.run(stop))
    try:
        names = ["poison", "fatal", *(f"good{i}" for i in range(10))]
        for name in names:
            await publisher.publish(topic, "thing.happened", {"name": name})
        await publisher.publish(topic, "other.kind", {"name": "ignored"})
        await wait_until(lambda: len(ledger.applied) == 10)
        # The good events behind the poison were handled before it ran out of retries.
        assert subscriber.counts.dead_lettered <= 1
        await wait_until(lambda: subscriber.counts.dead_lettered == 2)
        dead = await list_dead_letters(transport, RetryTopics(topic, POLICY).dlt_topic, 10)

        # The fix is deployed: replay the poison from the dead-letter topic.
        ledger.poison.clear()
        [poison] = [d for d in dead if d.error_code == "busy"]
        operator = mesh["operator"]
        assert operator.keyring is not None
        assert operator.signing_key is not None
        replayer = Replayer(operator.keyring, operator.access, "operator", operator.signing_key)
        await send_replay(transport, replayer.plan(poison, now_ms=now_ms()))
        await wait_until(lambda: "poison" in ledger.applied)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        await publisher.close()
        await transport.close()
    assert sorted(ledger.applied) == sorted(["poison", *(f"good{i}" for i in range(10))])
    assert ledger.attempts["poison"] == 4  # main, retry.1, retry.2, then the replay
    assert ledger.attempts["fatal"] == 1  # not retriable: straight to the DLT
    assert subscriber.counts.ignored == 1
    assert {(d.error_code, d.reason) for d in dead} == {
        ("busy", "retries_exhausted"), ("invalid_thing", "not_retriable")}
    assert subscriber.quarantined == 0


async def test_forged_event_is_quarantined_not_handled(
    topic: str, bus_settings: BusSettings, mesh: dict[str, Identity]
) -> None:
    ledger = Ledger()
    intruder = identities({"publisher": [topic]})["publisher"]  # same name, untrusted key
    settings = bus_settings.model_copy(update={"service_name": "consumer"})
    transport = KafkaTransport(settings)
    subscriber = EventSubscriber(consumer_service(topic, ledger), topic, transport, settings,
                                 mesh["consumer"], policy=POLICY,
                                 store=MemoryIdempotencyStore())
    forger = MeshClient(KafkaTransport(bus_settings.model_copy(
        update={"service_name": "publisher"})), bus_settings.model_copy(
        update={"service_name": "publisher"}), intruder)
    stop = asyncio.Event()
    task = asyncio.create_task(subscriber.run(stop))
    try:
        await forger.publish(topic, "thing.happened", {"name": "forged"})
        await wait_until(lambda: subscriber.quarantined == 1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        await forger.close()
        await transport.close()
    assert ledger.attempts == {}
