"""Scenario: an event subscriber is down for longer than its freshness window while events
keep arriving; when it comes back it must handle its whole backlog, once each.

Kafka buffers through outages: an event is admitted on its signature, its sender's right to
produce and the future side of the clock-skew bound, never on its age, and the durable
idempotency record (a DynamoDB table on the shared emulator, keyed on base topic, sender and
event id) is its replay memory. The subscriber runs in this process on the shared broker; it
is stopped gracefully, events are published for ``down_s`` (at least twice the window, so
the oldest of the backlog is well past it), then a *new* subscriber (new transport, empty
process memory, same consumer group and table) takes over, and a tail is published after
it. Every event's handler run goes to the effect log: ``lost`` is an acknowledged event never
handled, ``duplicated`` one handled twice, and any quarantined event is a problem (all are
genuine). Fast: a 3 s window and 8 s down; full: the default 300 s window and 10 min down.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bus.config import BusSettings
from bus.delivery.idempotency import IdempotencyStore
from bus.delivery.retry_topics import RetryTopicPolicy, RetryTopics
from bus.envelope import Envelope, now_ms
from bus.errors import MeshError
from bus.runtime.client import MeshClient
from bus.runtime.subscriber import EventSubscriber
from bus.security.access import AccessPolicy
from bus.security.identity import Identity
from bus.security.keys import KeyRing, generate_ed25519
from bus.security.quarantine import QUARANTINE_TOPIC
from bus.service import Payload, Service
from bus.transport.kafka import KafkaTransport
from functions.shared.dynamodb_idempotency import DynamoDBIdempotencyStore
from proof.chaos import ledger
from proof.chaos.accounting import CallResult, account
from proof.chaos.load import effect_numbers, settle
from proof.chaos.runner import Context, ScenarioResult
from proof.chaos.stack import CALLER, idempotency_table_on, topics

NAME = "long-outage"
EVENT_TYPE = "chaos.happened"
POLICY = RetryTopicPolicy.of_seconds(1.0)
STOP_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Sizes:
    window_ms: int  # the subscriber's freshness window
    before: int  # events handled before the outage
    during: int  # events published while it is down, spread over ``down_s``
    down_s: float
    after: int  # events published once it is back
    handled_within_s: float


FAST = Sizes(window_ms=3_000, before=10, during=30, down_s=8.0, after=10, handled_within_s=60)
FULL = Sizes(window_ms=300_000, before=50, during=300, down_s=600.0, after=50,
             handled_within_s=180)


def event_service(name: str, topic: str, runs: Path) -> Service:
    """One event handler: each run appends ``<event id> <n> <pid>`` to ``runs``."""
    service = Service(name)

    @service.on_event(topic, EVENT_TYPE)
    async def happened(payload: Payload, event: Envelope) -> None:
        await asyncio.to_thread(ledger.record_run, runs, event.id, int(payload["n"]))

    return service


def event_identities(service: str, topic: str) -> dict[str, Identity]:
    """The publisher (``CALLER``) may produce to ``topic``; the subscriber to the quarantine
    and to its retry and dead-letter topics."""
    produce = {CALLER: [topic],
               service: [QUARANTINE_TOPIC, *RetryTopics(topic, POLICY).all_topics()]}
    keys = {name: generate_ed25519(name) for name in produce}
    keyring = KeyRing(verify for _, verify in keys.values())
    access = AccessPolicy.from_dict(produce)
    return {name: Identity(name, signing, keyring, access)
            for name, (signing, _) in keys.items()}


class Running:
    """One life of the subscriber: its own transport and memory, run as a task."""

    def __init__(self, service: Service, topic: str, settings: BusSettings,
                 identity: Identity, store: IdempotencyStore) -> None:
        self.transport = KafkaTransport(settings)
        self.subscriber = EventSubscriber(service, topic, self.transport, settings, identity,
                                          policy=POLICY, store=store)
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self.subscriber.run(self._stop), name=f"{NAME}-sub")
        self.failure: BaseException | None = None
        self.stopped = False

    async def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self._stop.set()
        try:
            done, _ = await asyncio.wait([self._task], timeout=STOP_TIMEOUT_S)
            if not done:
                self._task.cancel()
                await asyncio.wait([self._task], timeout=5)
            elif not self._task.cancelled():
                self.failure = self._task.exception()
        finally:
            await self.transport.close()

    def counters(self) -> dict[str, int]:
        c = self.subscriber.counts
        return {"handled": c.handled, "duplicates": c.duplicates, "retried": c.retried,
                "dead_lettered": c.dead_lettered, "quarantined": self.subscriber.quarantined}


class Publisher:
    """Publishes numbered events; remembers which ones the broker acknowledged, and when."""

    def __init__(self, client: MeshClient, topic: str) -> None:
        self._client = client
        self._topic = topic
        self.acked: dict[int, int] = {}  # n -> epoch ms of the event
        self.failed: dict[int, str] = {}

    async def publish(self, numbers: range, spacing_s: float = 0.0) -> None:
        for n in numbers:
            at = now_ms()
            for attempt in range(1, 4):  # a retriable refusal (e.g. a topic's metadata not
                try:                     # there yet) is tried again, as a publisher would
                    await asyncio.wait_for(self._client.publish(
                        self._topic, EVENT_TYPE, {"n": n}, key=str(n).encode()), 20)
                except (MeshError, TimeoutError) as exc:
                    if attempt < 3 and isinstance(exc, MeshError) and exc.retriable:
                        await asyncio.sleep(0.5)
                        continue
                    self.failed[n] = type(exc).__name__
                else:
                    self.acked[n] = at
                break
            if spacing_s:
                await asyncio.sleep(spacing_s)

    async def close(self) -> None:
        await asyncio.wait_for(self._client.close(), 30)


async def handled(runs: Path, want: set[int], timeout_s: float) -> bool:
    """Wait until every number of ``want`` is in the effect log (at most ``timeout_s``)."""
    try:
        async with asyncio.timeout(timeout_s):
            while not want <= set(await asyncio.to_thread(effect_numbers, runs)):  # noqa: ASYNC110 - polls a file
                await asyncio.sleep(0.2)
    except TimeoutError:
        return False
    return True


async def run(ctx: Context) -> ScenarioResult:
    size = FAST if ctx.fast else FULL
    name = f"chaosout{uuid.uuid4().hex[:8]}"
    topic = f"{name}.events"
    runs = ctx.workdir / "runs.log"
    mesh = event_identities(name, topic)
    service = event_service(name, topic, runs)
    settings = BusSettings(bootstrap_servers=ctx.bootstrap, service_name=name,
                           freshness_window_ms=size.window_ms)
    pub_settings = BusSettings(bootstrap_servers=ctx.bootstrap, service_name=CALLER)
    specs = {topic: 3, **{t: 3 for t in RetryTopics(topic, POLICY).all_topics()}}
    lives: list[Running] = []
    async with idempotency_table_on(ctx.aws) as table, topics(ctx.bootstrap, specs):
        store = DynamoDBIdempotencyStore(table, client_args=ctx.aws.aws_client_args())
        publisher = Publisher(MeshClient(KafkaTransport(pub_settings), pub_settings,
                                         mesh[CALLER]), topic)
        try:
            lives.append(Running(service, topic, settings, mesh[name], store))
            await publisher.publish(range(0, size.before))
            warm = await handled(runs, set(publisher.acked), size.handled_within_s)
            await lives[0].stop()
            down_at = time.monotonic()
            during = range(size.before, size.before + size.during)
            await publisher.publish(during, spacing_s=size.down_s / max(1, size.during))
            await asyncio.sleep(max(0.0, size.down_s - (time.monotonic() - down_at)))
            backlog = [publisher.acked[n] for n in during if n in publisher.acked]
            oldest_age_ms = now_ms() - min(backlog) if backlog else 0
            down_s = time.monotonic() - down_at
            lives.append(Running(service, topic, settings, mesh[name], store))
            tail = range(size.before + size.during, size.before + size.during + size.after)
            await publisher.publish(tail)
            complete = await handled(runs, set(publisher.acked), size.handled_within_s)
            await settle(runs, 1.0, 10.0)  # a second run of anything would show by now
            await lives[1].stop()
        finally:
            for life in lives:
                await life.stop()  # once each: a stopped one returns at once
            await publisher.close()
    return result(size, publisher, runs, lives, warm=warm, complete=complete,
                  down_s=down_s, oldest_age_ms=oldest_age_ms)


def result(size: Sizes, publisher: Publisher, runs: Path, lives: list[Running], *,
           warm: bool, complete: bool, down_s: float, oldest_age_ms: int) -> ScenarioResult:
    offered = sorted({*publisher.acked, *publisher.failed})
    calls = [CallResult(n, "ok" if n in publisher.acked else "clear", n in publisher.acked,
                        publisher.failed.get(n, "")) for n in offered]
    accounting = account(calls, effect_numbers(runs))
    quarantined = sum(life.subscriber.quarantined for life in lives)
    fault = {
        "window_ms": size.window_ms, "down_s": round(down_s, 1),
        "backlog": size.during, "oldest_backlog_age_ms": oldest_age_ms,
        "quarantined_genuine": quarantined,
        "lives": [life.counters() for life in lives],
    }
    problems: list[str] = []
    if not warm:
        problems.append("the events before the outage were not all handled")
    if not complete:
        problems.append("the backlog and the tail were not all handled")
    if quarantined:
        problems.append(f"{quarantined} genuine events were quarantined")
    if publisher.failed:
        problems.append(f"{len(publisher.failed)} events could not be published: "
                        f"{sorted(set(publisher.failed.values()))}")
    problems += [f"a subscriber stopped: {life.failure!r}" for life in lives if life.failure]
    injected = (len(lives) == 2 and oldest_age_ms >= 2 * size.window_ms
                and size.during > 0)
    return ScenarioResult(NAME, accounting, fault, injected, problems)
