"""Scenario: the broker is stopped and started again while requests are in flight.

A private broker (own ports and data folder: the shared one is never touched); a worker in
this process (memory idempotency store) and a caller on it. Mid-load the broker is stopped
with its script, left down for a moment and started again (its data folder, so topics and
committed offsets, survive); then a tail of requests must all succeed. Afterwards the
request topic is read back: every request the broker acknowledged must still be there.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from bus.config import BusSettings
from bus.delivery.idempotency import MemoryIdempotencyStore
from bus.transport.connection import KafkaSecurity
from bus.transport.kafka import KafkaTransport
from proof.chaos.load import Load, caller, logged_numbers, settle, warm_up
from proof.chaos.runner import Context, ScenarioResult, result_of
from proof.chaos.service import EffectLogs, operation_of
from proof.chaos.stack import CALLER, Private, identities, mesh_topics, private, topics
from proof.chaos.workers import InProcess, running

NAME = "broker-restart"


@dataclass(frozen=True)
class Sizes:
    count: int
    spacing_s: float
    stop_after: int
    down_s: float
    tail: int
    timeout_s: float = 20.0
    handler_s: float = 0.1


FAST = Sizes(count=60, spacing_s=0.05, stop_after=20, down_s=0.5, tail=10)
FULL = Sizes(count=400, spacing_s=0.02, stop_after=150, down_s=3.0, tail=50)


@dataclass
class Outage:
    started: float = 0.0
    ended: float = 0.0
    stop_rc: int | None = None
    start_rc: int | None = None
    output: str = ""
    problems: list[str] = field(default_factory=list)  # what else the fault left wrong


# How the broker is taken down and brought back (broker_kill: SIGKILL, then start at once).
Inject = Callable[[Private, Sizes, Outage, Path], Awaitable[None]]


async def restart(broker: Private, down_s: float, outage: Outage) -> None:
    outage.started = time.monotonic()
    stopped = await broker.stop()
    outage.stop_rc = stopped.returncode
    await asyncio.sleep(down_s)
    started = await broker.start()
    outage.start_rc = started.returncode
    outage.ended = time.monotonic()
    outage.output = f"{stopped.output} | {started.output}"


async def stop_and_start(broker: Private, size: Sizes, outage: Outage, _workdir: Path) -> None:
    await restart(broker, size.down_s, outage)


async def run(ctx: Context) -> ScenarioResult:
    return await run_with(ctx, NAME, stop_and_start)


class SecureUsers(Protocol):
    """The worker's and the caller's own broker users (``broker_scram``)."""

    @property
    def address(self) -> str: ...  # the listener they connect to

    @property
    def security(self) -> dict[str, KafkaSecurity]: ...  # by user (service or caller)

    async def problems(self) -> list[str]: ...  # what is wrong with them after the run


MakeUsers = Callable[[Private, list[str]], Awaitable[SecureUsers]]


async def run_with(ctx: Context, name: str, inject: Inject, *, scram: MakeUsers | None = None,
                   broker_env: Mapping[str, str] | None = None) -> ScenarioResult:
    """The scenario with ``inject`` as its fault; with ``scram``, the worker and the caller
    log in as users it makes (plaintext and unauthenticated otherwise)."""
    size = FAST if ctx.fast else FULL
    service = f"chaosbroker{uuid.uuid4().hex[:8]}"
    operation = operation_of(service)
    request_topic = f"{service}.requests"
    mesh = identities(service)
    logs = EffectLogs(ctx.workdir / "runs.log")
    outage = Outage()
    async with private("kafka", ctx.workdir, broker_env) as broker, \
            topics(broker.address, mesh_topics(service, 3)):
        users = None if scram is None else await scram(broker, [service, CALLER])
        address = broker.address if users is None else users.address
        security = {} if users is None else users.security
        settings = BusSettings(bootstrap_servers=address, service_name=service,
                               kafka=security.get(service, KafkaSecurity()))
        worker = InProcess(settings, mesh[service], logs, store=MemoryIdempotencyStore(),
                           handler_s=size.handler_s)
        async with running([worker]), caller(address, mesh[CALLER], request_topic,
                                             security.get(CALLER)) as (client, acks):
            await warm_up(client, operation, size.timeout_s)
            load = Load(client, operation, count=size.count, spacing_s=size.spacing_s,
                        timeout_s=size.timeout_s)
            loading = asyncio.create_task(load.run())
            try:
                await load.offered(size.stop_after, 60)
                unanswered = sum(1 for c in load.calls.values() if c.ended is None)
                await inject(broker, size, outage, ctx.workdir)
                await loading
            finally:
                loading.cancel()
                await asyncio.wait([loading], timeout=5)
            tail = Load(client, operation, count=size.tail, spacing_s=size.spacing_s,
                        timeout_s=size.timeout_s, first=size.count)
            await tail.run()
            await settle(logs.runs, 1.0, size.timeout_s)
            worker_alive = worker.alive
        if users is not None:
            outage.problems += await users.problems()
        reader = KafkaTransport(BusSettings(bootstrap_servers=broker.address,
                                            service_name=service))
        try:
            in_log = await logged_numbers(reader, request_topic, acks.acked)
        finally:
            await reader.close()
    during = [c for c in load.calls.values() if outage.started <= c.started <= outage.ended]
    hit = [c for c in load.calls.values() if c.ended is None or c.outcome != "ok"
           or (c.ended - c.started) > 1.0]
    fault = {
        "broker": broker.address, "outage_s": round(outage.ended - outage.started, 1),
        "stop_rc": outage.stop_rc, "start_rc": outage.start_rc,
        "unanswered_at_stop": unanswered, "offered_during_outage": len(during),
        "calls_failed_or_waited_over_1s": len(hit),
        "tail_succeeded": f"{tail.answered()}/{size.tail}", "worker": worker.counters(),
    }
    problems = []
    if not worker_alive:
        problems.append(f"the worker stopped during the outage: {worker.failure!r}")
    if tail.answered() != size.tail:
        problems.append("requests sent once the broker was back did not all succeed")
    if outage.stop_rc != 0 or outage.start_rc != 0:
        problems.append(f"the broker script failed: {outage.output}")
    problems += outage.problems
    injected = outage.stop_rc == 0 and outage.start_rc == 0 and bool(during) and bool(hit)
    return result_of(name, [load, tail], acks.acked, logs, fault=fault, injected=injected,
                     problems=problems, in_log=in_log)
