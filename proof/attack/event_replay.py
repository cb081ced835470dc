"""Event replays on the real broker, against a subscriber whose replay memory is durable.

A victim ``EventSubscriber`` (its idempotency table on the emulator's DynamoDB) handles a
genuine event, then is restarted: the new one has an empty process memory, as after a crash
or an outage. An attacker's raw producer then writes copies of the handled event (exact, with
a new attempt and trace, and onto its retry topic); each is refused when it is parked on
``mesh.quarantine`` with a reason and never reaches the handler. The control is a new
genuine event, published after the copies: it must reach the handler once.

Events have no age limit, so nothing but the durable record stands between a copy and a
second run (before it, copies after a restart were admitted, and a copy on a retry topic
was checked against another in-memory key).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter

from aiokafka import AIOKafkaProducer

from bus import codec
from bus.config import BusSettings
from bus.delivery.retry_topics import RetryTopicPolicy, RetryTopics
from bus.envelope import H_ATTEMPT, H_TRACEPARENT, KIND_EVENT, Envelope, new_id, now_ms, to_headers
from bus.runtime.subscriber import EventSubscriber
from bus.security.access import AccessPolicy
from bus.security.identity import Identity
from bus.security.keys import KeyRing, generate_ed25519
from bus.security.quarantine import QUARANTINE_TOPIC
from bus.service import Payload, Service
from bus.transport.kafka import KafkaTransport
from functions.shared.dynamodb_idempotency import DynamoDBIdempotencyStore
from infra.kafka.connect import door_kwargs, door_security
from infra.settings import Settings
from proof.attack.accounting import CONTROL, Outcome
from proof.attack.bus_probe import end_offsets
from proof.attack.mesh_attack import MeshPlan, parked, until
from proof.chaos.stack import idempotency_table_on, topics

CATEGORY = "event_replayed"
PUBLISHER = "atk-publisher"
EVENT_TYPE = "thing.happened"
POLICY = RetryTopicPolicy.of_seconds(1.0)
RawHeaders = list[tuple[str, bytes]]


def cast(victim: str, topic: str) -> dict[str, Identity]:
    produce = {PUBLISHER: [topic],
               victim: [QUARANTINE_TOPIC, *RetryTopics(topic, POLICY).all_topics()]}
    keys = {name: generate_ed25519(name) for name in produce}
    keyring = KeyRing(verify for _, verify in keys.values())
    access = AccessPolicy.from_dict(produce)
    return {name: Identity(name, signing, keyring, access)
            for name, (signing, _) in keys.items()}


def copies(original: Envelope, topic: str, retry_topic: str
           ) -> list[tuple[str, str, RawHeaders]]:
    """(label, topic, headers) of each copy an attacker writes of the handled ``original``."""
    exact: RawHeaders = [(n, v) for n, v in to_headers(original)]
    traced: RawHeaders = [*(h for h in exact if h[0] not in (H_ATTEMPT, H_TRACEPARENT)),
                          (H_ATTEMPT, b"2"),
                          (H_TRACEPARENT, b"00-" + b"3" * 32 + b"-" + b"4" * 16 + b"-01")]
    return [("exact copy at another offset", topic, exact),
            ("copy with a new attempt and trace", topic, traced),
            ("copy onto its retry topic", retry_topic, exact),
            ("copy onto its retry topic, attempt 2", retry_topic, traced)]


class Victim:
    """One life of the subscriber (its own transport and process memory)."""

    def __init__(self, topic: str, identity: Identity, settings: BusSettings,
                 store: DynamoDBIdempotencyStore, ran: list[str]) -> None:
        service = Service(identity.service)

        @service.on_event(topic, EVENT_TYPE)
        async def happened(payload: Payload, event: Envelope) -> None:
            ran.append(event.id)

        self.transport = KafkaTransport(settings)
        self.subscriber = EventSubscriber(service, topic, self.transport, settings, identity,
                                          policy=POLICY, store=store)
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self.subscriber.run(self._stop))

    async def stop(self) -> None:
        self._stop.set()
        try:
            await asyncio.wait_for(self._task, 20)
        finally:
            await self.transport.close()


async def run_event_replays(settings: Settings, plan: MeshPlan
                            ) -> tuple[list[Outcome], list[str]]:
    deadline = time.monotonic() + plan.timeout_s
    bootstrap = settings.kafka_bootstrap
    victim = f"atkev{uuid.uuid4().hex[:10]}"
    topic = f"{victim}.events"
    retry_topic = RetryTopics(topic, POLICY).retry_topics[0]
    mesh = cast(victim, topic)
    bus = BusSettings(bootstrap_servers=bootstrap, kafka=door_security(), service_name=victim)
    ran: list[str] = []

    def event(name: str) -> Envelope:
        return mesh[PUBLISHER].outgoing(Envelope(
            id=new_id(), source=PUBLISHER, type=EVENT_TYPE, kind=KIND_EVENT,
            value=codec.encode({"name": name}), time_ms=now_ms()), topic)

    producer = AIOKafkaProducer(**door_kwargs(bootstrap), acks="all", linger_ms=0)
    specs = {t: 1 for t in (topic, *RetryTopics(topic, POLICY).all_topics())}
    original, control = event("original"), event("control")
    landed: list[tuple[str, str, int]] = []  # label, topic, offset
    async with idempotency_table_on(settings) as table, topics(bootstrap, specs):
        store = DynamoDBIdempotencyStore(table, client_args=settings.aws_client_args())
        since = await end_offsets(bootstrap, [QUARANTINE_TOPIC])
        await asyncio.wait_for(producer.start(), 15)
        try:
            first = Victim(topic, mesh[victim], bus, store, ran)
            try:
                await producer.send_and_wait(topic, original.value,
                                             headers=list(to_headers(original)))
                await until(lambda: original.id in ran, deadline)
            finally:
                await first.stop()
            second = Victim(topic, mesh[victim], bus, store, ran)  # restarted, memory empty
            try:
                for label, to, headers in copies(original, topic, retry_topic):
                    meta = await producer.send_and_wait(to, original.value, headers=headers)
                    landed.append((label, to, meta.offset))
                await producer.send_and_wait(topic, control.value,
                                             headers=list(to_headers(control)))
                await until(lambda: control.id in ran, deadline)
                reasons = {
                    **{(topic, o): r for (_, o), r in (await parked(
                        bootstrap, since, topic, {(0, o) for _, t, o in landed if t == topic},
                        deadline)).items()},
                    **{(retry_topic, o): r for (_, o), r in (await parked(
                        bootstrap, since, retry_topic,
                        {(0, o) for _, t, o in landed if t == retry_topic}, deadline)).items()},
                }
                await asyncio.sleep(0.5)  # anything still in flight would have run by now
            finally:
                await second.stop()
        finally:
            await producer.stop()
    return judge(original.id, control.id, landed, reasons, ran)


def judge(original: str, control: str, landed: list[tuple[str, str, int]],
          reasons: dict[tuple[str, int], str], ran: list[str]
          ) -> tuple[list[Outcome], list[str]]:
    """The outcome of each copy and of the control (pure)."""
    runs = Counter(ran)
    notes = [] if runs[original] else ["events: the genuine original never ran"]
    extra = max(0, runs[original] - 1)  # runs beyond the genuine one go to the copies
    outcomes: list[Outcome] = []
    for label, topic, offset in landed:
        took = 1 if extra > 0 else 0
        extra -= took
        reason = reasons.get((topic, offset), "")
        outcomes.append(Outcome(CATEGORY, f"event {label}", bool(reason), took,
                                reason or ("ran in the handler" if took else "not parked")))
    outcomes.append(Outcome(CONTROL, "genuine event after the copies", False,
                            min(runs[control], 1), "handled" if runs[control] else "never"))
    return outcomes, notes

