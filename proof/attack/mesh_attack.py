"""Mesh attacks on the real broker: a victim ``ServiceWorker`` runs in this process on its own
request topic (created for the run, deleted after), with a handler that records every message
it runs. An attacker's raw aiokafka producer writes each hostile record; a record is refused
when it is parked on ``mesh.quarantine`` with a reason (read back, matched by its original
topic, partition and offset) or when the broker refuses it. ``reached_handler`` counts the
handler's runs, attributed by message id; genuine records (the control and the originals that
replays copy) must run exactly once each.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from bus.config import BusSettings
from bus.delivery.idempotency import MemoryIdempotencyStore
from bus.envelope import Envelope, now_ms
from bus.runtime.worker import ServiceWorker
from bus.security.quarantine import (
    H_ORIGINAL_OFFSET,
    H_ORIGINAL_PARTITION,
    H_ORIGINAL_TOPIC,
    H_REASON,
)
from bus.security.quarantine import QUARANTINE_TOPIC as QUARANTINE
from bus.service import Payload, Service
from bus.transport.kafka import KafkaTransport
from infra.kafka.connect import door_kwargs, door_security
from proof.attack.accounting import CONTROL, Outcome
from proof.attack.bus_probe import end_offsets
from proof.attack.cast import Cast, cast
from proof.attack.fuzz import collect, random_record
from proof.attack.mesh_cases import (
    Builder,
    MeshCase,
    handcrafted,
    oversized,
    random_records,
)

VALUE_LIMIT = 64 * 1024  # the victim's max_message_bytes: oversized values stay cheap
BROKER_LIMIT = 1_048_588  # Kafka's default message.max.bytes
PARTITIONS = 3
Position = tuple[int, int]


@dataclass(frozen=True)
class MeshPlan:
    rounds: int  # of every hand-written attack
    random_records: int
    oversized: int
    seed: int
    timeout_s: float


@asynccontextmanager
async def private_topic(bootstrap: str, topic: str) -> AsyncIterator[None]:
    admin = AIOKafkaAdminClient(**door_kwargs(bootstrap))
    await asyncio.wait_for(admin.start(), 15)
    try:
        await asyncio.wait_for(admin.create_topics([NewTopic(topic, PARTITIONS, 1)]), 15)
        try:
            yield
        finally:
            await asyncio.wait_for(admin.delete_topics([topic]), 15)
    finally:
        await admin.close()


@asynccontextmanager
async def victim(actors: Cast, bootstrap: str, ran: list[str]) -> AsyncIterator[ServiceWorker]:
    """The victim worker; ``ran`` receives the id of every message its handler runs."""
    name = actors.victim.service
    service = Service(name)

    @service.operation(f"{name}.op")
    async def op(payload: Payload, message: Envelope) -> Payload:
        ran.append(message.id)
        return {"ok": True}

    settings = BusSettings.resolve(bootstrap_servers=bootstrap, kafka=door_security(),
                                   service_name=name, max_message_bytes=VALUE_LIMIT)
    transport = KafkaTransport(settings)
    # Its operation is declared free of side effects (a policy's side_effect_free), so the
    # worker never consults its idempotency store for it: admission alone must refuse every
    # case, replays included, and the genuine records still run exactly once.
    identity = replace(actors.victim, access=replace(
        actors.victim.access, side_effect_free=frozenset({f"{name}.op"})))
    worker = ServiceWorker(service, transport, settings, identity,
                           store=MemoryIdempotencyStore())
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, 20)
        finally:
            await transport.close()


async def send_all(bootstrap: str, topic: str, cases: list[MeshCase]
                   ) -> tuple[dict[Position, int], dict[int, str]]:
    """Write every case in order; where each landed, and the broker's refusals by index."""
    producer = AIOKafkaProducer(**door_kwargs(bootstrap), acks="all", linger_ms=0,
                                request_timeout_ms=15_000, max_request_size=4 * BROKER_LIMIT)
    await asyncio.wait_for(producer.start(), 15)
    landed: dict[Position, int] = {}
    refused: dict[int, str] = {}
    try:
        for index, case in enumerate(cases):
            try:
                # Keyed by message id: a replay lands on its original's partition.
                key = (case.message_id or "atk").encode("utf-8", "replace")
                meta = await asyncio.wait_for(producer.send_and_wait(
                    topic, case.value, key=key, headers=case.headers), 20)
            except KafkaError as exc:
                refused[index] = f"broker: {type(exc).__name__}"
            else:
                landed[(meta.partition, meta.offset)] = index
    finally:
        await producer.stop()
    return landed, refused


async def parked(bootstrap: str, since: dict[TopicPartition, int], topic: str,
                 wanted: set[Position], deadline: float) -> dict[Position, str]:
    """Quarantine reasons of ``topic``'s records at ``wanted`` positions, read from ``since``
    until all were found or ``deadline`` (monotonic) passed."""
    consumer = AIOKafkaConsumer(**door_kwargs(bootstrap), enable_auto_commit=False)
    await asyncio.wait_for(consumer.start(), 15)
    found: dict[Position, str] = {}
    try:
        consumer.assign(list(since))
        for tp, offset in since.items():
            consumer.seek(tp, offset)
        while len(found) < len(wanted) and time.monotonic() < deadline:
            batches = await asyncio.wait_for(consumer.getmany(timeout_ms=300), 15)
            for records in batches.values():
                for record in records:
                    headers = dict(record.headers or ())
                    if headers.get(H_ORIGINAL_TOPIC) != topic.encode():
                        continue
                    position = (int(headers.get(H_ORIGINAL_PARTITION, b"-1")),
                                int(headers.get(H_ORIGINAL_OFFSET, b"-1")))
                    found[position] = headers.get(H_REASON, b"").decode("utf-8", "replace")
    finally:
        await consumer.stop()
    return found


async def until(condition: Callable[[], bool], deadline: float) -> None:
    while not condition() and time.monotonic() < deadline:  # noqa: ASYNC110 - polls a list
        await asyncio.sleep(0.05)


def build_cases(actors: Cast, plan: MeshPlan, now: int) -> list[MeshCase]:
    builder = Builder(actors, now)
    noise = collect(random_record, plan.random_records, plan.seed)
    return [builder.control(), *handcrafted(builder, plan.rounds), *random_records(noise),
            *oversized(builder, VALUE_LIMIT, plan.oversized, BROKER_LIMIT)]


def judge(cases: list[MeshCase], landed: dict[Position, int], refused: dict[int, str],
          reasons: dict[Position, str], ran: list[str]) -> tuple[list[Outcome], list[str]]:
    """Outcomes of every attack and the control (pure), and notes on anything unexplained.

    Handler runs are attributed by message id, in sending order: a genuine record takes one
    run of its id, and any further run of that id counts against the attack that reused it.
    """
    where = {index: position for position, index in landed.items()}
    reason_of = {index: refused.get(index) or reasons.get(where.get(index, (-1, -1)), "")
                 for index in range(len(cases))}
    _interchange(cases, reason_of)
    runs = Counter(ran)
    outcomes: list[Outcome] = []
    notes: list[str] = []
    for index, case in enumerate(cases):
        reason = reason_of[index]
        message_id = case.message_id or ""
        took = 1 if runs[message_id] > 0 else 0
        runs[message_id] -= took
        if case.category == CONTROL:
            outcomes.append(Outcome(CONTROL, case.label, False, took,
                                    reason or ("handled" if took else "never handled")))
        elif case.genuine:
            if not took:
                notes.append(f"mesh: genuine {case.label!r} never ran ({reason or 'lost'})")
        else:
            outcomes.append(Outcome(case.category, case.label, bool(reason), took,
                                    reason or ("ran in the handler" if took else "not parked")))
    notes += [f"mesh: the handler ran message {message_id!r} {count} more time(s) than any "
              "case explains" for message_id, count in runs.items() if count > 0]
    return outcomes, notes


def _interchange(cases: list[MeshCase], reason_of: dict[int, str]) -> None:
    """Records sharing a message id are interchangeable to the receiver (an exact copy is
    the same bytes): whichever was admitted first is the delivery, every other one must be
    refused. So a parked genuine original trades places with an unparked copy of it."""
    for index, case in enumerate(cases):
        if not (case.genuine and reason_of[index]):
            continue
        for other, copy in enumerate(cases):
            if (not copy.genuine and copy.message_id == case.message_id
                    and not reason_of[other]):
                reason_of[index], reason_of[other] = "", reason_of[index]
                break


async def run_mesh(bootstrap: str, plan: MeshPlan) -> tuple[list[Outcome], list[str]]:
    deadline = time.monotonic() + plan.timeout_s
    actors = cast(f"atk{uuid.uuid4().hex[:10]}")
    topic = actors.topic
    ran: list[str] = []
    cases = build_cases(actors, plan, now_ms())
    genuine = sum(case.genuine for case in cases)
    async with private_topic(bootstrap, topic):
        since = await end_offsets(bootstrap, [QUARANTINE])
        async with victim(actors, bootstrap, ran) as worker:
            landed, refused = await send_all(bootstrap, topic, cases)
            wanted = {p for p, i in landed.items() if not cases[i].genuine}
            reasons = await parked(bootstrap, since, topic, wanted, deadline)
            await until(lambda: len(ran) >= genuine, deadline)
            await asyncio.sleep(0.5)  # anything still in flight would have run by now
            notes = [] if worker.quarantined >= len(wanted) else [
                f"mesh: the worker quarantined {worker.quarantined} of {len(wanted)}"]
    outcomes, more = judge(cases, landed, refused, reasons, ran)
    return outcomes, notes + more
