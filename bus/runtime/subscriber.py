"""Event consumption with non-blocking retries: one loop per stage of a topic.

The main loop reads ``<topic>``; a failing event is republished to ``<topic>.retry.1`` (then
``.retry.2`` ...) with a not-before time, and after the last stage, or at once when the
failure is not retriable, to ``<topic>.dlt``. Each retry stage has its own loop that waits for
its records to be due, so a poison message never stalls the main partition. Offsets are
committed after each record's outcome (handled, republished, parked).

Replays: events are admitted at any age (a backlog is genuine), so the durable idempotency
record is their replay memory (``bus.delivery.replay_memory``; required outside insecure mode). Each
event runs under its claim (key: base topic, sender, event id); once handled or dead-lettered
the record says where, and any later delivery is never run: a redelivery of that record (or
of an earlier stage forwarded from) is counted as a duplicate, a copy elsewhere is
quarantined as ``replayed_message``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from bus.config import BusSettings
from bus.delivery.idempotency import Claim, IdempotencyError, IdempotencyStore
from bus.delivery.intake import Intake
from bus.delivery.replay_memory import (
    Settled,
    event_idempotency_key,
    event_keep_ms,
    is_redelivery,
    require_store,
)
from bus.delivery.retry_topics import (
    DeadLetterHop,
    Failure,
    RetryTopicPolicy,
    RetryTopics,
    hop_headers,
    wait_ms,
)
from bus.envelope import KIND_EVENT, Envelope, now_ms
from bus.errors import HandlerError, MeshError
from bus.security.identity import Identity
from bus.security.inbound import guard_for
from bus.security.replay import ReplayedMessage
from bus.service import Service
from bus.telemetry.mesh_telemetry import MeshTelemetry, error_type_of
from bus.transport import Record, Transport

log = logging.getLogger(__name__)
POLL_S = 0.5
LEASE_MS = 60_000
STEP_WITHIN_MS = 60_000


class EventInProgress(IdempotencyError):
    """Another consumer has held the event's claim for longer than its lease allows."""

    code = "event_in_progress"


@dataclass
class SubscriberCounts:
    handled: int = 0
    ignored: int = 0
    duplicates: int = 0
    retried: int = 0
    dead_lettered: int = 0
    abandoned: int = 0


class EventSubscriber:
    def __init__(
        self,
        service: Service,
        topic: str,
        transport: Transport,
        settings: BusSettings,
        identity: Identity,
        *,
        policy: RetryTopicPolicy,
        store: IdempotencyStore | None = None,
        telemetry: MeshTelemetry | None = None,
    ) -> None:
        if topic not in service.event_handlers:
            raise ValueError(f"{service.name} has no event handlers for {topic}")
        self.service = service
        self.topics = RetryTopics(topic, policy)
        self._access = identity.access
        self._transport = transport
        require_store(store, identity, f"{service.name} subscriber of {topic}")
        self._store = store
        self._keep_ms = event_keep_ms(settings)
        self._telemetry = telemetry or MeshTelemetry(service.name)
        # Events are admitted at any age (bus.security.inbound.check_event_time): retried ones too.
        self._intake = Intake(service.name, transport, settings, guard_for(identity, settings),
                              self._telemetry)
        self.counts = SubscriberCounts()

    @property
    def quarantined(self) -> int:
        return self._intake.quarantined

    def group_of(self, topic: str) -> str:
        return f"{self.service.name}:{topic}"

    async def run(self, stop: asyncio.Event) -> None:
        """Consume the main topic and every retry stage until ``stop`` is set."""
        stages = (self.topics.main_topic, *self.topics.retry_topics)
        for topic in stages:
            self._access.check_consume(self.service.name, topic)
        async with asyncio.TaskGroup() as group:
            for topic in stages:
                group.create_task(self._stage(topic, stop), name=self.group_of(topic))

    async def _stage(self, topic: str, stop: asyncio.Event) -> None:
        reader = self._transport.group_reader([topic], self.group_of(topic))
        delay_ms = self.topics.delay_ms_of(topic)
        await reader.start()
        try:
            while not stop.is_set():
                try:
                    records = await reader.read(POLL_S)
                except MeshError as exc:
                    log.warning("fetch from %s failed, retrying: %s", topic, exc)
                    await asyncio.sleep(POLL_S)
                    continue
                done: list[Record] = []
                for record in records:
                    wait = wait_ms(record.headers, now_ms(), max_wait_ms=delay_ms)
                    if wait and await _stopped_within(stop, wait / 1000):
                        break  # not due yet and stopping: leave it uncommitted
                    await self._process(record)
                    done.append(record)
                try:
                    await reader.commit(done)
                except MeshError as exc:
                    # The group coordinator is away (a broker frozen or failing over) or a
                    # rebalance took the partition: as the worker's pipeline does, go on. The
                    # events are settled in the idempotency store; the next commit covers them,
                    # or they are redelivered and counted as duplicates, not run again.
                    log.warning("commit on %s failed, the next one covers it: %s", topic, exc)
        finally:
            await reader.stop()

    async def _process(self, record: Record) -> None:
        event = await self._intake.admit(record, KIND_EVENT)
        if event is None:
            return
        store = self._store
        if store is None:  # insecure mode only (see __init__): no replay memory at all
            failure = await self._run_handler(record, event)
            if failure is not None:
                await self._forward(record, event, failure)
            return
        key = event_idempotency_key(self.topics.main_topic, event)
        try:
            claim = await self._claim(store, key)
            if claim.status == "completed":
                await self._settled_already(record, event, claim.result)
                return
            assert claim.token is not None
            failure = await self._run_handler(record, event)
            if failure is None:
                await self._settle(store, key, claim.token, Settled.at("handled", record))
                return
            if await self._forward(record, event, failure, release=(store, key, claim.token)):
                # Dead-lettered: terminal, so a raw copy written back is not run again.
                await self._settle(store, key, claim.token, Settled.at("dead_lettered", record))
        except MeshError as exc:
            self.counts.abandoned += 1
            log.error("abandoned event %s on %s: %s: %s", event.id, record.topic, exc.code, exc)
            raise

    async def _claim(self, store: IdempotencyStore, key: str) -> Claim:
        """Claim ``key``; while another delivery of the event holds it, wait for its outcome
        (or for its lease to run out and take over): skipping it would commit past an event
        whose holder may yet die."""
        deadline = now_ms() + LEASE_MS + STEP_WITHIN_MS
        pause_s = 0.05
        while True:
            claim = await self._intake.retrying(
                lambda: store.begin(key, now_ms=now_ms(), lease_ms=LEASE_MS), deadline)
            if claim.status != "in_progress":
                return claim
            if now_ms() >= deadline:
                raise EventInProgress(f"{key} is still held by another consumer")
            await asyncio.sleep(pause_s)
            pause_s = min(pause_s * 2, 1.0)

    async def _settled_already(self, record: Record, event: Envelope,
                               result: bytes | None) -> None:
        """A delivery of an event that was handled or dead-lettered: a redelivery is counted,
        a copy written again elsewhere is quarantined; neither runs."""
        if is_redelivery(result, record):
            self.counts.duplicates += 1
            return
        await self._intake.refuse(record, ReplayedMessage(
            f"event {event.id} was settled at another position; this is a copy"))

    async def _settle(self, store: IdempotencyStore, key: str, token: str,
                      settled: Settled) -> None:
        result = settled.encode()
        done = await self._intake.retrying(lambda: store.complete(
            key, result, token=token, now_ms=now_ms(), keep_ms=self._keep_ms),
            now_ms() + STEP_WITHIN_MS)
        if not done:
            log.warning("the claim on %s was taken over before it was settled", key)

    async def _run_handler(self, record: Record, event: Envelope) -> Failure | None:
        """None when the event was handled (or ignored); the failure otherwise."""
        with self._telemetry.process_span(event, record.topic, record.partition,
                                          self.group_of(record.topic), offset=record.offset,
                                          key=record.key) as scope:
            try:
                handled = await self.service.handle_event(self.topics.main_topic, event)
            except MeshError as exc:
                scope.fail(error_type_of(exc))
                return Failure.of(exc)
            except Exception as exc:  # catch-all on purpose: a handler's bug is a failure
                # (logged, counted as "internal", retried then dead-lettered), not a lost event
                log.exception("event handler failed on %s", event.id)
                scope.fail("internal")
                # An unexpected exception may be transient (a dependency): retry it.
                return Failure.of(HandlerError("internal", f"{type(exc).__name__}: {exc}",
                                               retriable=True))
        if handled:
            self.counts.handled += 1
        else:
            self.counts.ignored += 1
        return None

    async def _forward(self, record: Record, event: Envelope, failure: Failure, *,
                       release: tuple[IdempotencyStore, str, str] | None = None) -> bool:
        """Republish a failed event to its next retry stage or to the dead-letter topic; True
        when it was dead-lettered. ``release``: the claim to drop before a retry hop (so the
        retry stage can claim it; a crash before the send leaves this record uncommitted)."""
        now = now_ms()
        hop = self.topics.next_hop(record.topic, event.attempt, failure.retriable, now_ms=now,
                                   deadline_ms=event.deadline_ms)
        if release is not None and not isinstance(hop, DeadLetterHop):
            store, key, token = release
            await self._intake.retrying(lambda: store.release(key, token=token),
                                        now + STEP_WITHIN_MS)
        headers = hop_headers(event, hop, original_topic=self.topics.main_topic,
                              failure=failure, failed_at_ms=now)
        value = record.value or b""
        await self._intake.retrying(
            lambda: self._transport.send(hop.topic, value, headers=headers, key=record.key),
            now + STEP_WITHIN_MS)
        if isinstance(hop, DeadLetterHop):
            self.counts.dead_lettered += 1
            self._telemetry.count_dead_letter(event.type, hop.reason)
            log.warning("dead-lettered %s (%s) after %d attempts: %s", event.id, hop.reason,
                        hop.attempt, failure.code)
            return True
        self.counts.retried += 1
        self._telemetry.count_retry(event.type, failure.code)
        return False


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds``; True if ``stop`` was set meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True
