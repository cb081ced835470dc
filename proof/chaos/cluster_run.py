"""The body every cluster scenario shares: a fresh three-node cluster, RF 3 topics, a service
worker and an event subscriber in this process (memory idempotency stores: nothing here
restarts on the client side), a caller sending signed requests and events steadily while the
scenario's fault runs, then a tail that must all succeed, then the topics read back: every
request and event the cluster acknowledged (acks=all) must still be in its log and applied
exactly once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bus.config import BusSettings
from bus.delivery.idempotency import MemoryIdempotencyStore
from bus.delivery.retry_topics import RetryTopics
from bus.runtime.client import MeshClient
from bus.security.quarantine import QUARANTINE_TOPIC
from bus.transport.kafka import KafkaTransport
from proof.chaos import ledger
from proof.chaos.accounting import account
from proof.chaos.cluster_load import (
    EVENT_BASE,
    POLICY,
    EventLoad,
    Offers,
    cluster_identities,
    error_window,
    event_service,
    steady,
)
from proof.chaos.cluster_stack import Cluster, cluster, replicated_topics
from proof.chaos.load import Load, caller, effect_numbers, logged_numbers, settle, warm_up
from proof.chaos.long_outage import Running, handled
from proof.chaos.runner import Context, ScenarioResult
from proof.chaos.service import EffectLogs, operation_of
from proof.chaos.stack import CALLER, REPLY_TOPIC, StackError
from proof.chaos.workers import InProcess, running

PUBLISH_BOUND_S = 90.0


@dataclass(frozen=True)
class Sizes:
    chunk: int  # requests (and as many events) offered per chunk, back to back
    spacing_s: float
    before_s: float  # load before the fault
    tail: int
    # The mesh's default request deadline (BusSettings.request_timeout_s), not a longer one:
    # what callers see is what a service calling with defaults would see.
    timeout_s: float = 10.0
    handler_s: float = 0.02


@dataclass(frozen=True)
class Target:
    request_topic: str
    topics: list[str]  # every topic of the scenario
    subscriber_group: str  # the event subscriber's consumer group on the main topic


@dataclass
class FaultReport:
    evidence: dict[str, Any]
    injected: bool
    problems: list[str] = field(default_factory=list)


Fault = Callable[[Cluster, Target], Awaitable[FaultReport]]


async def _warm_events(client: MeshClient, topic: str, runs: Path, timeout_s: float) -> None:
    """Publish until the subscriber has handled one (negative numbers, not counted)."""
    async with asyncio.timeout(60):
        for n in range(-1, -1000, -1):
            warm = EventLoad(client, topic, count=1, spacing_s=0, timeout_s=timeout_s, first=n)
            await warm.run()
            await asyncio.sleep(0.5)
            if [k for k in await asyncio.to_thread(ledger.read_numbers, runs) if k < 0]:
                return


async def under_fault(ctx: Context, name: str, tag: str, size: Sizes,
                      fault: Fault) -> ScenarioResult:
    service = f"chaos{tag}{uuid.uuid4().hex[:8]}"
    operation = operation_of(service)
    request_topic, events_topic = f"{service}.requests", f"{service}.events"
    mesh = cluster_identities(service, events_topic)
    logs = EffectLogs(ctx.workdir / "runs.log")
    event_runs = ctx.workdir / "events.log"
    specs = {request_topic: 3, REPLY_TOPIC: 4, QUARANTINE_TOPIC: 1, events_topic: 3,
             **{t: 3 for t in RetryTopics(events_topic, POLICY).all_topics()}}
    async with cluster(ctx.workdir) as nodes, replicated_topics(nodes.bootstrap, specs):
        await nodes.wait_in_sync(list(specs), 60)
        settings = BusSettings(bootstrap_servers=nodes.bootstrap, service_name=service)
        worker = InProcess(settings, mesh[service], logs, store=MemoryIdempotencyStore(),
                           handler_s=size.handler_s)
        async with running([worker]), caller(nodes.bootstrap, mesh[CALLER],
                                             request_topic) as (client, acks):
            subscriber = Running(event_service(service, events_topic, event_runs),
                                 events_topic, settings, mesh[service],
                                 MemoryIdempotencyStore())
            target = Target(request_topic, list(specs),
                            subscriber.subscriber.group_of(events_topic))
            try:
                await warm_up(client, operation, size.timeout_s)
                await _warm_events(client, events_topic, event_runs, size.timeout_s)
                over = asyncio.Event()

                def request_chunk(first: int) -> Offers:
                    return Load(client, operation, count=size.chunk, spacing_s=size.spacing_s,
                                timeout_s=size.timeout_s, first=first)

                def event_chunk(first: int) -> Offers:
                    return EventLoad(client, events_topic, count=size.chunk,
                                     spacing_s=size.spacing_s, timeout_s=size.timeout_s,
                                     first=first, bound_s=PUBLISH_BOUND_S)

                loading = [asyncio.create_task(steady(request_chunk, size.chunk, 0, over)),
                           asyncio.create_task(steady(event_chunk, size.chunk, EVENT_BASE,
                                                      over))]
                try:
                    await asyncio.sleep(size.before_s)
                    report = await fault(nodes, target)
                finally:
                    over.set()
                    _, pending = await asyncio.wait(loading, timeout=PUBLISH_BOUND_S + 60)
                    for task in pending:
                        task.cancel()
                if pending:
                    raise StackError("the load did not end within its bound")
                requests, events = (task.result() for task in loading)
                # once the fault is over, everything must succeed again
                after = size.chunk * len(requests)
                tail = Load(client, operation, count=size.tail, spacing_s=size.spacing_s,
                            timeout_s=size.timeout_s, first=after)
                event_tail = EventLoad(client, events_topic, count=size.tail,
                                       spacing_s=size.spacing_s, timeout_s=size.timeout_s,
                                       first=EVENT_BASE + size.chunk * len(events))
                await asyncio.gather(tail.run(), event_tail.run())
                event_acked = set().union(*(e.acked for e in [*events, event_tail]
                                            if isinstance(e, EventLoad)))
                events_handled = await handled(event_runs, event_acked, 60)
                await settle(logs.runs, 1.0, size.timeout_s)
                await settle(event_runs, 1.0, size.timeout_s)
            finally:
                await subscriber.stop()
            worker_alive = worker.alive
        reader = KafkaTransport(settings)
        try:
            in_log = await logged_numbers(reader, request_topic, acks.acked)
            in_log |= await logged_numbers(reader, events_topic, event_acked)
        finally:
            await reader.close()
    calls = [r for load in [*requests, tail, *events, event_tail]
             for r in load.results(acks.acked)]
    accounting = account(calls, [*effect_numbers(logs.effects), *effect_numbers(event_runs)],
                         None, in_log)
    request_calls = [c for load in [*requests, tail] for c in load.calls.values()]
    event_calls = [c for load in [*events, event_tail] for c in load.calls.values()]
    report.evidence.update({
        "requests_seen": error_window(request_calls).as_dict(),
        "events_seen": error_window(event_calls).as_dict(),
        "tail_succeeded": f"{sum(1 for c in tail.calls.values() if c.outcome == 'ok')}"
                          f"/{size.tail} requests, {len(event_tail.acked)}/{size.tail} events",
        "worker": worker.counters(), "subscriber": subscriber.counters(),
    })
    problems = list(report.problems)
    c = accounting.counts
    if c.failed_unclear:
        problems.append(f"{c.failed_unclear} calls failed without a clear error: "
                        f"{accounting.errors}")
    if c.stray:
        problems.append(f"{c.stray} effects of requests nobody offered")
    if not worker_alive:
        problems.append(f"the worker stopped during the fault: {worker.failure!r}")
    if subscriber.failure is not None:
        problems.append(f"the subscriber stopped during the fault: {subscriber.failure!r}")
    if subscriber.subscriber.quarantined:
        problems.append(f"{subscriber.subscriber.quarantined} genuine events were quarantined")
    if not events_handled:
        problems.append("acknowledged events were not all handled")
    if tail.answered() != size.tail or len(event_tail.acked) != size.tail:
        problems.append("calls made once the fault was over did not all succeed")
    return ScenarioResult(name, accounting, report.evidence, report.injected, problems)
