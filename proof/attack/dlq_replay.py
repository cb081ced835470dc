"""Dead-letter replay attacks on the real broker (issue 11, defect 2).

A victim ``EventSubscriber`` (no retry stages) dead-letters a genuine event whose handler
fails. Then: forged, tampered, untrusted-key and misdirected dead letters are written to the
dead-letter topic and handed to the replay tool (``bus.delivery.dlq.Replayer``, what ``meshgate dlq
replay`` runs): each must be refused with a reason and nothing may reach the event topic
(its end offsets are compared). Raw copies of the genuine dead letter, and replays
countersigned by real service keys or by a key nobody trusts, are written straight to the
event topic: each must be parked on ``mesh.quarantine`` with a reason. The control: the
handler is fixed and the operator replays the genuine dead letter; it must run exactly once
more, and a copy of that replay must be parked too.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import replace

from aiokafka import AIOKafkaProducer

from bus import codec
from bus.config import BusSettings
from bus.delivery.dlq import DeadLetter, NotReplayable, Replayer, list_dead_letters, send_replay
from bus.delivery.idempotency import MemoryIdempotencyStore
from bus.delivery.retry_topics import (
    FAILURE_HEADERS,
    REASON_NOT_RETRIABLE,
    DeadLetterHop,
    Failure,
    RetryTopicPolicy,
    hop_headers,
)
from bus.envelope import KIND_EVENT, Envelope, new_id, now_ms, to_headers
from bus.errors import HandlerError
from bus.runtime.subscriber import EventSubscriber
from bus.security.access import AccessPolicy
from bus.security.identity import Identity
from bus.security.keys import KeyRing, SigningKey, generate_ed25519
from bus.security.quarantine import QUARANTINE_TOPIC
from bus.security.replay_countersign import countersign
from bus.security.signing import sign
from bus.service import Payload, Service
from bus.transport.kafka import KafkaTransport
from infra.kafka.connect import door_kwargs, door_security
from proof.attack.accounting import CONTROL, Outcome
from proof.attack.bus_probe import end_offsets
from proof.attack.mesh_attack import MeshPlan, parked, until
from proof.chaos.stack import topics

CATEGORY = "dlq_replay"
PUBLISHER = "atk-publisher"
OTHER = "atk-other"  # a trusted service: neither the publisher nor an operator
OPERATOR = "atk-operator"
EVENT_TYPE = "thing.happened"
ADMIN = '{"sub":"root","roles":["admin"]}'
NO_RETRIES = RetryTopicPolicy(())
RawHeaders = list[tuple[str, bytes]]


def cast(victim: str, topic: str) -> dict[str, Identity]:
    produce = {PUBLISHER: [topic], OTHER: [], victim: [QUARANTINE_TOPIC, f"{topic}.dlt"]}
    replay = {OPERATOR: [topic]}
    keys = {name: generate_ed25519(name) for name in (*produce, *replay)}
    keyring = KeyRing(verify for _, verify in keys.values())
    access = AccessPolicy.from_dict(produce, None, replay)
    return {name: Identity(name, signing, keyring, access)
            for name, (signing, _) in keys.items()}


def key_of(identity: Identity) -> SigningKey:
    assert identity.signing_key is not None
    return identity.signing_key


def forged_letters(mesh: dict[str, Identity], topic: str, event: Envelope
                   ) -> list[tuple[str, Envelope, str]]:
    """(label, envelope, original-topic header) of each dead letter the tool must refuse."""
    genuine = sign(replace(event, id=new_id(), signature=None), topic, key_of(mesh[PUBLISHER]))
    stranger, _ = generate_ed25519(PUBLISHER)
    return [
        ("forged unsigned letter with an admin principal",
         replace(event, id=new_id(), source=OTHER, signature=None, principal=ADMIN), topic),
        ("tampered letter (admin principal added)", replace(genuine, principal=ADMIN), topic),
        ("tampered letter (value changed)",
         replace(genuine, id=genuine.id, value=codec.encode({"name": "evil"})), topic),
        ("letter signed by an untrusted key",
         sign(replace(event, id=new_id(), signature=None), topic, stranger), topic),
        ("genuine letter whose failure header names another topic",
         sign(replace(event, id=new_id(), signature=None), topic, key_of(mesh[PUBLISHER])),
         "admin.events"),
        ("letter signed for another topic",
         sign(replace(event, id=new_id(), signature=None), "admin.events",
              key_of(mesh[PUBLISHER])), topic),
    ]


def dead_headers(envelope: Envelope, dlt: str, original_topic: str) -> RawHeaders:
    return list(hop_headers(envelope, DeadLetterHop(dlt, 1, REASON_NOT_RETRIABLE),
                            original_topic=original_topic,
                            failure=Failure("boom", "handler failed", False),
                            failed_at_ms=now_ms()))


def raw_replays(mesh: dict[str, Identity], topic: str, dead: DeadLetter
                ) -> list[tuple[str, RawHeaders]]:
    """(label, headers) of each record written straight to ``topic`` that must be parked."""
    assert dead.envelope is not None
    original = dead.envelope
    bare = [(n, v) for n, v in dead.headers if n not in FAILURE_HEADERS]

    def stamped(by: SigningKey) -> RawHeaders:
        return [*to_headers(original), *countersign(original, topic, by, replay_id=new_id(),
                                                    time_ms=now_ms())]

    stranger, _ = generate_ed25519(OPERATOR)
    return [
        ("raw copy of the genuine dead letter", bare),
        ("raw copy of the dead letter, failure headers kept", list(dead.headers)),
        ("replay countersigned by the publisher's own key", stamped(key_of(mesh[PUBLISHER]))),
        ("replay countersigned by another service's key", stamped(key_of(mesh[OTHER]))),
        ("replay countersigned by an untrusted 'operator' key", stamped(stranger)),
    ]


async def run_dlq_replays(bootstrap: str, plan: MeshPlan) -> tuple[list[Outcome], list[str]]:
    deadline = time.monotonic() + plan.timeout_s
    victim = f"atkdlq{uuid.uuid4().hex[:10]}"
    topic, dlt = f"{victim}.events", f"{victim}.events.dlt"
    mesh = cast(victim, topic)
    operator = mesh[OPERATOR]
    assert operator.keyring is not None
    replayer = Replayer(operator.keyring, operator.access, OPERATOR, key_of(operator))
    ran: list[str] = []
    fixed = asyncio.Event()
    service = Service(victim)

    @service.on_event(topic, EVENT_TYPE)
    async def happened(payload: Payload, event: Envelope) -> None:
        ran.append(event.id)
        if not fixed.is_set():
            raise HandlerError("not_yet", "the fix is not deployed", retriable=False)

    genuine = mesh[PUBLISHER].outgoing(Envelope(
        id=new_id(), source=PUBLISHER, type=EVENT_TYPE, kind=KIND_EVENT,
        value=codec.encode({"name": "genuine"}), time_ms=now_ms()), topic)
    bus = BusSettings(bootstrap_servers=bootstrap, kafka=door_security(), service_name=victim)
    outcomes: list[Outcome] = []
    notes: list[str] = []
    producer = AIOKafkaProducer(**door_kwargs(bootstrap), acks="all", linger_ms=0)
    async with topics(bootstrap, {topic: 1, dlt: 1}):
        since = await end_offsets(bootstrap, [QUARANTINE_TOPIC])
        transport = KafkaTransport(bus)
        subscriber = EventSubscriber(service, topic, transport, bus, mesh[victim],
                                     policy=NO_RETRIES, store=MemoryIdempotencyStore())
        stop = asyncio.Event()
        task = asyncio.create_task(subscriber.run(stop))
        await asyncio.wait_for(producer.start(), 15)
        try:
            await producer.send_and_wait(topic, genuine.value, headers=to_headers(genuine))
            await until(lambda: subscriber.counts.dead_lettered >= 1, deadline)
            [dead] = [d for d in await list_dead_letters(transport, dlt, 100)
                      if d.id == genuine.id]

            # The tool: forged dead letters on the DLT; nothing may reach the topic.
            forged = forged_letters(mesh, topic, genuine)
            for _, envelope, original_topic in forged:
                await producer.send_and_wait(dlt, envelope.value,
                                             headers=dead_headers(envelope, dlt, original_topic))
            letters = await list_dead_letters(transport, dlt, 100)
            before = await end_offsets(bootstrap, [topic])
            refusals = [_tool_refusal(replayer, letters, envelope.id) for _, envelope, _ in forged]
            published = await end_offsets(bootstrap, [topic]) != before
            for (label, _, _), reason in zip(forged, refusals, strict=True):
                refused = bool(reason) and not published
                outcomes.append(Outcome(CATEGORY, f"tool: {label}", refused, 0,
                                        reason if refused else "published"))

            # The receiver: raw copies and bad countersignatures written to the topic.
            landed: list[tuple[str, int]] = []
            for label, headers in raw_replays(mesh, topic, dead):
                meta = await producer.send_and_wait(topic, dead.value, headers=headers)
                landed.append((f"receiver: {label}", meta.offset))
            # The control: the fix is deployed, the operator replays the genuine dead letter.
            fixed.set()
            replay = replayer.plan(dead, now_ms=now_ms())
            await send_replay(transport, replay)
            await until(lambda: ran.count(genuine.id) >= 2, deadline)
            meta = await producer.send_and_wait(topic, replay.value, headers=replay.headers)
            landed.append(("receiver: copy of the operator's replay", meta.offset))
            reasons = await parked(bootstrap, since, topic, {(0, o) for _, o in landed},
                                   deadline)
            await asyncio.sleep(0.5)  # anything still in flight would have run by now
        finally:
            stop.set()
            try:
                await asyncio.wait_for(task, 20)
            finally:
                await producer.stop()
                await transport.close()
    runs = Counter(ran)
    extra = max(0, runs[genuine.id] - 2)  # its failed first run, and the operator's replay
    for label, offset in landed:
        took = 1 if extra > 0 else 0
        extra -= took
        reason = reasons.get((0, offset), "")
        outcomes.append(Outcome(CATEGORY, label, bool(reason), took,
                                reason or ("ran in the handler" if took else "not parked")))
    replayed = min(runs[genuine.id] - 1, 1)
    outcomes.append(Outcome(CONTROL, "genuine dead letter replayed by the operator", False,
                            replayed, "handled once more" if replayed else "never replayed"))
    if runs[genuine.id] < 1:
        notes.append("dlq: the genuine event never ran, so it was never dead-lettered")
    return outcomes, notes


def _tool_refusal(replayer: Replayer, letters: list[DeadLetter], message_id: str) -> str:
    """The reason the tool refuses to replay ``message_id``; empty when it would send it."""
    try:
        replayer.plan_first([d for d in letters if d.id == message_id], now_ms=now_ms())
    except NotReplayable as exc:
        return exc.reason
    return ""
