"""Scenario: a slow consumer. Some handlers stall for several claim leases and poll
intervals, filling a worker's few handler slots so that it stops fetching; meanwhile a
second worker joins the group and the stalled records' partitions move to it, so their
records are delivered again while the first worker is still inside them.

Both workers share a DynamoDB idempotency table (shared emulator). What must hold: the
stalled worker keeps its claims alive (the lease heartbeat), so the second delivery waits
for the stored result instead of running the handler again; the effect (each run is one,
no fence here) is applied once for every request.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

from bus.config import BusSettings
from bus.runtime.worker import POLL_S
from functions.shared.dynamodb_idempotency import DynamoDBIdempotencyStore
from proof.chaos.load import Load, caller, settle, warm_up
from proof.chaos.runner import Context, ScenarioResult, result_of
from proof.chaos.service import EffectLogs, operation_of
from proof.chaos.stack import (
    CALLER,
    aws_settings,
    group_stable,
    idempotency_table_on,
    identities,
    topics,
)
from proof.chaos.workers import InProcess, running

NAME = "slow-consumer"
PARTITIONS = 4


@dataclass(frozen=True)
class Sizes:
    count: int
    spacing_s: float
    lease_ms: int
    every: int  # every this many requests, one stalls
    join_after: int  # the second worker joins once this many were offered
    concurrency: int = 4
    handler_s: float = 0.02

    @property
    def stall_s(self) -> float:
        return 3 * self.lease_ms / 1000

    @property
    def timeout_s(self) -> float:
        return self.stall_s + 20.0


FAST = Sizes(count=60, spacing_s=0.05, lease_ms=1000, every=6, join_after=15)
FULL = Sizes(count=300, spacing_s=0.03, lease_ms=2000, every=10, join_after=60)


async def run(ctx: Context) -> ScenarioResult:
    size = FAST if ctx.fast else FULL
    service = f"chaosslow{uuid.uuid4().hex[:8]}"
    operation = operation_of(service)
    request_topic = f"{service}.requests"
    mesh = identities(service)
    logs = EffectLogs(ctx.workdir / "runs.log")
    settings = BusSettings(bootstrap_servers=ctx.bootstrap, service_name=service)
    args = aws_settings(ctx.aws.endpoint_url).aws_client_args()
    stalled = {n for n in range(size.count) if n % size.every == size.every - 1}
    async with idempotency_table_on(ctx.aws) as table, \
            topics(ctx.bootstrap, {request_topic: PARTITIONS}):

        def worker() -> InProcess:
            return InProcess(settings, mesh[service], logs,
                             store=DynamoDBIdempotencyStore(table, client_args=args),
                             handler_s=size.handler_s, lease_ms=size.lease_ms,
                             concurrency=size.concurrency)

        first = worker()
        async with running([first]) as workers, \
                caller(ctx.bootstrap, mesh[CALLER], request_topic) as (client, acks):
            await group_stable(ctx.bootstrap, service, 1, 60)
            await warm_up(client, operation, 20)
            load = Load(client, operation, count=size.count, spacing_s=size.spacing_s,
                        timeout_s=size.timeout_s,
                        payload_for=lambda n: {"stall_s": size.stall_s} if n in stalled else {})
            loading = asyncio.create_task(load.run())
            try:
                await load.offered(size.join_after, 60)
                stalls_in_flight = sum(1 for n, c in load.calls.items()
                                       if n in stalled and c.ended is None)
                second = worker()
                workers.append(second)
                second.start()
                joined_at = time.monotonic()
                await loading
            finally:
                loading.cancel()
                await asyncio.wait([loading], timeout=5)
            await settle(logs.runs, 1.0, size.timeout_s)
            alive = all(w.alive for w in workers)
        counters = [w.counters() for w in workers]
    stall_times = [c.ended - c.started for n, c in load.calls.items()
                   if n in stalled and c.outcome == "ok" and c.ended is not None]
    spanning_join = sum(1 for n, c in load.calls.items() if n in stalled
                        and c.started < joined_at and (c.ended or joined_at) > joined_at)
    fault = {
        "lease_s": size.lease_ms / 1000, "poll_s": POLL_S, "stall_s": size.stall_s,
        "stalled": len(stalled), "stalled_answered": len(stall_times),
        "longest_stalled_call_s": round(max(stall_times, default=0.0), 1),
        "stalls_in_flight_at_join": stalls_in_flight, "stalls_spanning_join": spanning_join,
        "redelivered_and_waited": sum(c["duplicates"] for c in counters),
        "redelivered_refused_as_replays": sum(c["quarantined"] for c in counters),
        "workers": counters,
    }
    problems = [] if alive else ["a worker stopped"]
    injected = (bool(stall_times) and min(stall_times) > max(size.lease_ms / 1000, POLL_S)
                and spanning_join > 0)
    return result_of(NAME, [load], acks.acked, logs, fault=fault, injected=injected,
                     problems=problems)
