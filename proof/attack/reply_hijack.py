"""Reply hijack on the real broker: a real ``MeshClient`` (the cast's caller) waits for a call;
an attacker reading the request topic learns the call's correlation id and reply partition and
answers first: ``atk-other`` (trusted, allowed to write replies) with a signed reply and a
signed error reply, and the owner itself as another operation. Each must be parked on
``mesh.quarantine`` with its reason (read back by position) while the call keeps waiting; then
the owner's genuine reply is written, and the call must return it (the control).

The request and reply topics are private to the run (created, then deleted), so no other
process reads (or parks) these records.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bus.config import BusSettings
from bus.envelope import KIND_REQUEST, Envelope, from_record
from bus.errors import EnvelopeError
from bus.runtime.client import MeshClient
from bus.security.quarantine import QUARANTINE_TOPIC
from bus.transport.kafka import KafkaTransport
from infra.kafka.connect import door_kwargs, door_security
from proof.attack.accounting import CONTROL, Outcome
from proof.attack.bus_probe import end_offsets
from proof.attack.cast import Cast, cast
from proof.attack.mesh_attack import MeshPlan, parked, private_topic
from proof.attack.reply_cases import HIJACK, Reply, answer, mesh_hijacks, taken

CALL_TIMEOUT_S = 30.0
PARK_WAIT_S = 10.0  # how long a hostile reply may take to be parked
Position = tuple[int, int]


async def watch_requests(bootstrap: str, topic: str) -> AIOKafkaConsumer:
    """A foreign consumer on every partition of ``topic``, positioned at its end."""
    ends = await end_offsets(bootstrap, [topic])
    consumer = AIOKafkaConsumer(**door_kwargs(bootstrap), enable_auto_commit=False,
                                fetch_max_wait_ms=20)
    await asyncio.wait_for(consumer.start(), 15)
    consumer.assign(list(ends))
    for tp, offset in ends.items():
        consumer.seek(tp, offset)
    return consumer


async def next_request(consumer: AIOKafkaConsumer, wanted: str, deadline: float
                       ) -> Envelope | None:
    """The first request whose value contains ``wanted``, read until ``deadline``."""
    while time.monotonic() < deadline:
        batches = await asyncio.wait_for(consumer.getmany(timeout_ms=100), 15)
        for records in batches.values():
            for record in records:
                if wanted.encode() not in (record.value or b""):
                    continue
                try:
                    envelope = from_record(list(record.headers or ()), record.value)
                except EnvelopeError:
                    continue
                if envelope.kind == KIND_REQUEST and envelope.reply_to is not None:
                    return envelope
    return None


async def write(producer: AIOKafkaProducer, reply: Reply) -> Position:
    meta = await asyncio.wait_for(producer.send_and_wait(
        reply.topic, reply.value, headers=reply.headers, partition=reply.partition), 15)
    return meta.partition, meta.offset


def answer_text(task: asyncio.Task[dict[str, object]]) -> str:
    """What the caller got: its reply's body, or its error's text."""
    if task.cancelled():
        return "cancelled"
    error = task.exception()
    if error is None:
        return json.dumps(task.result())
    return f"{type(error).__name__}: {error}"


async def one_call(actors: Cast, bootstrap: str, client: MeshClient, consumer: AIOKafkaConsumer,
                   producer: AIOKafkaProducer, replies_topic: str, deadline: float
                   ) -> list[Outcome]:
    token = uuid.uuid4().hex[:12]
    victim = actors.victim.service
    since = await end_offsets(bootstrap, [QUARANTINE_TOPIC])
    call = asyncio.create_task(client.request(f"{victim}.op", {"token": token},
                                              timeout_s=CALL_TIMEOUT_S))
    try:
        request = await next_request(consumer, token, deadline)
        if request is None:
            return [Outcome(CONTROL, "hijacked call: the request", False, 0,
                            "the request never reached its topic")]
        hostile = mesh_hijacks(request, owner=victim, owner_key=actors.key_of(actors.victim),
                               other=actors.other.service,
                               other_key=actors.key_of(actors.other), token=token)
        where = {reply.label: await write(producer, reply) for reply in hostile}
        parking = asyncio.create_task(parked(bootstrap, since, replies_topic,
                                             set(where.values()),
                                             min(deadline, time.monotonic() + PARK_WAIT_S)))
        await asyncio.wait({parking, call}, return_when=asyncio.FIRST_COMPLETED)
        if call.done() and not parking.done():  # a hijack was taken: leave the rest a moment
            await asyncio.wait({parking}, timeout=1.0)
        reasons = parking.result() if parking.done() else {}
        parking.cancel()
        genuine = answer(request, victim, actors.key_of(actors.victim), {"genuine": token},
                         label="the owner's genuine reply", token=f'"genuine": "{token}"')
        await write(producer, genuine)
        await asyncio.wait({call}, timeout=max(0.0, deadline - time.monotonic()))
    finally:
        if not call.done():
            call.cancel()
            await asyncio.wait({call}, timeout=5)
    got = answer_text(call)
    outcomes = [Outcome(HIJACK, reply.label, bool(reasons.get(where[reply.label])),
                        1 if taken(got, reply) else 0,
                        reasons.get(where[reply.label])
                        or ("taken by the caller" if taken(got, reply) else "not parked"))
                for reply in hostile]
    outcomes.append(Outcome(CONTROL, "genuine reply after the hijacks", False,
                            1 if taken(got, genuine) else 0,
                            "answered by the owner" if taken(got, genuine) else got[:80]))
    return outcomes


async def run_reply_hijack(bootstrap: str, plan: MeshPlan) -> tuple[list[Outcome], list[str]]:
    """``plan.rounds`` hijacked calls, one after the other."""
    deadline = time.monotonic() + plan.timeout_s
    victim = f"atk{uuid.uuid4().hex[:10]}"
    replies_topic = f"{victim}.replies"
    actors = cast(victim, replies=replies_topic)
    outcomes: list[Outcome] = []
    async with private_topic(bootstrap, actors.topic), private_topic(bootstrap, replies_topic):
        settings = BusSettings(bootstrap_servers=bootstrap, kafka=door_security(),
                               service_name=actors.caller.service,
                               reply_topic=replies_topic, reply_partition=1,
                               request_timeout_s=CALL_TIMEOUT_S, max_attempts=1)
        client = MeshClient(KafkaTransport(settings), settings, actors.caller)
        consumer = await watch_requests(bootstrap, actors.topic)
        producer = AIOKafkaProducer(**door_kwargs(bootstrap), acks="all", linger_ms=0)
        await asyncio.wait_for(producer.start(), 15)
        try:
            await client.start()
            for _ in range(plan.rounds):
                outcomes += await one_call(actors, bootstrap, client, consumer, producer,
                                           replies_topic, deadline)
        finally:
            await producer.stop()
            await consumer.stop()
            await client.close()
    quarantined = sum(o.refused for o in outcomes)
    notes = [] if client.quarantined >= quarantined else [
        f"mesh: the caller quarantined {client.quarantined}, {quarantined} found parked"]
    return outcomes, notes

