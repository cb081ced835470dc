"""``meshgate dlq`` against the running stack: a dead letter of ``orders.events`` is listed,
shown and replayed as the original record countersigned by ``meshgate-operator`` (its key
created by deploy, published in the stack's keyring); a subscriber built from the stack's
published keyring and access map runs it once. Forged, tampered, wrong-topic and request
dead letters are refused with one line and nothing reaches the topic."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from bus.config import BusSettings
from bus.delivery.idempotency import MemoryIdempotencyStore
from bus.delivery.retry_topics import DeadLetterHop, Failure, RetryTopicPolicy, hop_headers
from bus.envelope import KIND_EVENT, Envelope, ReplyTo, new_id, new_request, now_ms
from bus.runtime.subscriber import EventSubscriber
from bus.security.access import AccessPolicy
from bus.security.identity import Identity
from bus.security.keys import KeyRing
from bus.security.signing import sign
from bus.service import Payload, Service
from bus.transport.kafka import KafkaTransport
from infra.settings import Settings
from proof.attack.bus_probe import end_offsets
from tests.support import MESHGATE, run, sender_identity

pytestmark = pytest.mark.e2e
TOPIC = "orders.events"
DLT = f"{TOPIC}.dlt"


@pytest.fixture
async def dlt(settings: Settings, endpoint: str) -> AsyncIterator[KafkaTransport]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    transport = KafkaTransport(BusSettings.resolve(
        bootstrap_servers=settings.kafka_bootstrap, service_name="e2e", insecure=True))
    try:
        # orders.events is declared (meshgate up provisions it); the DLT is this test's.
        for name, partitions in ((TOPIC, 3), (DLT, 1)):
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(name, partitions, 1)])
        yield transport
    finally:
        await transport.close()
        await admin.delete_topics([DLT])
        await admin.close()


def published(settings: Settings, service: str) -> Identity:
    """A receiver's identity from the stack's published keyring and access map (no key)."""
    folder = Path(settings.local_dir) / "identity"
    keyring = KeyRing.from_dict(json.loads((folder / "keyring.json").read_text()))
    access = json.loads((folder / "access.json").read_text())
    return Identity(service, None, keyring,
                    AccessPolicy.from_dict(access["produce"], None, access.get("replay")))


async def kill(transport: KafkaTransport, envelope: Envelope, original_topic: str = TOPIC
               ) -> None:
    headers = hop_headers(envelope, DeadLetterHop(DLT, 1, "not_retriable"),
                          original_topic=original_topic,
                          failure=Failure("boom", "the handler blew up", False),
                          failed_at_ms=now_ms())
    await transport.send(DLT, envelope.value, headers=headers)


def cli(*args: str) -> tuple[int, str, str]:
    result = run([str(MESHGATE), "dlq", *args])
    return result.returncode, result.stdout, result.stderr


async def records_since(bootstrap: str, since: dict[TopicPartition, int]
                        ) -> list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]:
    """Every record (key, value, headers) written to ``since``'s partitions after it."""
    until = await end_offsets(bootstrap, sorted({tp.topic for tp in since}))
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await asyncio.wait_for(consumer.start(), 10)
    found: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]] = []
    try:
        wanted = {tp: until[tp] for tp in since if until[tp] > since[tp]}
        consumer.assign(list(wanted))
        for tp in wanted:
            consumer.seek(tp, since[tp])
        async with asyncio.timeout(20):
            while wanted:
                for tp, records in (await consumer.getmany(timeout_ms=300)).items():
                    found += [(r.key, r.value or b"", list(r.headers or ())) for r in records
                              if r.offset < wanted.get(tp, 0)]
                    if records and records[-1].offset + 1 >= wanted.get(tp, 0):
                        wanted.pop(tp, None)
    finally:
        await consumer.stop()
    return found


async def wait_until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - polls what the subscriber recorded
            await asyncio.sleep(0.1)


async def test_list_show_and_replay_a_dead_letter_as_the_operator(
    dlt: KafkaTransport, settings: Settings
) -> None:
    orders = await asyncio.to_thread(sender_identity, settings, "orders")
    genuine = orders.outgoing(Envelope(
        id=new_id(), source="orders", type="order.created", kind=KIND_EVENT,
        value=b'{"order":"o-dlq"}', time_ms=now_ms()), TOPIC)
    await kill(dlt, genuine)

    code, out, err = await asyncio.to_thread(cli, "list", DLT)
    assert code == 0, err
    [row] = [line for line in out.splitlines() if genuine.id in line]
    assert "order.created" in row
    assert "orders" in row
    assert "boom" in row
    code, out, err = await asyncio.to_thread(cli, "show", DLT, genuine.id)
    assert code == 0, err
    assert json.loads(out)["error"]["message"] == "the handler blew up"

    ran: list[str] = []
    service = Service(f"e2e-dlq-{uuid.uuid4().hex[:8]}")  # its own group

    @service.on_event(TOPIC, "order.created")
    async def created(payload: Payload, event: Envelope) -> None:
        ran.append(event.id)

    receiver = published(settings, service.name)
    bus = BusSettings.resolve(bootstrap_servers=settings.kafka_bootstrap,
                              service_name=service.name)
    transport = KafkaTransport(bus)
    subscriber = EventSubscriber(service, TOPIC, transport, bus, receiver,
                                 policy=RetryTopicPolicy(()), store=MemoryIdempotencyStore())
    stop = asyncio.Event()
    task = asyncio.create_task(subscriber.run(stop))
    try:
        before = await end_offsets(settings.kafka_bootstrap, [TOPIC])
        code, out, err = await asyncio.to_thread(cli, "replay", DLT, genuine.id)
        assert code == 0, err
        assert f"replayed {genuine.id} from {DLT} as replay " in out
        assert "countersigned by meshgate-operator" in out
        after = await end_offsets(settings.kafka_bootstrap, [TOPIC])
        assert sum(after.values()) - sum(before.values()) == 1
        await wait_until(lambda: genuine.id in ran)
        # The replay's record written again by anyone is never run again.
        [(key, value, headers)] = await records_since(settings.kafka_bootstrap, before)
        quarantined = subscriber.quarantined
        await dlt.send(TOPIC, value, headers=headers, key=key)
        await wait_until(lambda: subscriber.quarantined > quarantined)
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await transport.close()
    assert ran.count(genuine.id) == 1


async def test_forged_tampered_and_misdirected_dead_letters_are_refused_and_nothing_sent(
    dlt: KafkaTransport, settings: Settings
) -> None:
    orders = await asyncio.to_thread(sender_identity, settings, "orders")
    gateway = await asyncio.to_thread(sender_identity, settings, "gateway")
    assert gateway.signing_key is not None
    genuine = orders.outgoing(Envelope(
        id=new_id(), source="orders", type="order.created", kind=KIND_EVENT,
        value=b'{"order":"o-1"}', time_ms=now_ms()), TOPIC)
    admin = '{"sub":"root","roles":["admin"]}'
    cases = {
        # The reproduction: unsigned, claims the gateway, carries an admin principal.
        "missing_signature": Envelope(
            id=new_id(), source="gateway", type="order.created", kind=KIND_EVENT,
            value=b'{"order":"o-2"}', time_ms=now_ms(), principal=admin),
        "bad_signature": replace(genuine, id=new_id(), principal=admin),
        # Genuinely signed by the gateway, which may not produce to orders.events.
        "not_allowed": sign(replace(genuine, id=new_id(), source="gateway", signature=None),
                            TOPIC, gateway.signing_key),
        "not_an_event": orders.outgoing(new_request(
            source="orders", operation="inventory.reserve", value=b"{}",
            reply_to=ReplyTo("mesh.replies", 0), deadline_ms=now_ms() + 60_000),
            "inventory.requests"),
    }
    for envelope in cases.values():
        await kill(dlt, envelope)
    wrong = replace(genuine)  # a genuine event whose failure header names another topic
    await kill(dlt, wrong, original_topic="inventory.requests")

    before = await end_offsets(settings.kafka_bootstrap, [TOPIC])
    expected = {**{envelope.id: reason for reason, envelope in cases.items()},
                wrong.id: "wrong_topic"}
    for message_id, reason in expected.items():
        code, out, err = await asyncio.to_thread(cli, "replay", DLT, message_id)
        assert code == 1, out
        assert err.strip().startswith(
            f"meshgate: error: refused to replay {message_id} from {DLT}: {reason}: "), err
        assert err.strip().endswith("; nothing was published"), err
        assert len(err.strip().splitlines()) == 1
    assert await end_offsets(settings.kafka_bootstrap, [TOPIC]) == before


def test_unknown_id_is_one_clear_error(dlt: KafkaTransport) -> None:
    result = run([str(MESHGATE), "dlq", "replay", DLT, "no-such-id"])
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"meshgate: error: no dead letter with id no-such-id on {DLT}; "
        f"list them with 'meshgate dlq list {DLT}'")
