"""Scenario: full rebalances under load. Workers join and leave the group over and over
while requests flow: every membership change revokes and reassigns every partition (the
classic, eager protocol aiokafka speaks), and after a few changes none of the first members
is left. Leaving workers stop gracefully (in-flight handlers drain); records answered but not
committed are delivered again to the new owner.

The workers share a DynamoDB idempotency table (shared emulator). The effect is the handler
run itself (no fence), so ``duplicated`` counts any request the mesh ran twice.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

from bus.config import BusSettings
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

NAME = "rebalance"
PARTITIONS = 6


@dataclass(frozen=True)
class Sizes:
    count: int
    spacing_s: float
    changes: int  # membership changes during the load (alternately join and leave)
    period_s: float
    timeout_s: float = 30.0
    handler_s: float = 0.03


FAST = Sizes(count=120, spacing_s=0.05, changes=4, period_s=1.2)
FULL = Sizes(count=800, spacing_s=0.025, changes=12, period_s=1.5)


async def run(ctx: Context) -> ScenarioResult:
    size = FAST if ctx.fast else FULL
    service = f"chaosrebal{uuid.uuid4().hex[:8]}"
    operation = operation_of(service)
    request_topic = f"{service}.requests"
    mesh = identities(service)
    logs = EffectLogs(ctx.workdir / "runs.log")
    settings = BusSettings(bootstrap_servers=ctx.bootstrap, service_name=service)
    args = aws_settings(ctx.aws.endpoint_url).aws_client_args()
    changes: list[str] = []
    async with idempotency_table_on(ctx.aws) as table, \
            topics(ctx.bootstrap, {request_topic: PARTITIONS}):

        def worker() -> InProcess:
            return InProcess(settings, mesh[service], logs,
                             store=DynamoDBIdempotencyStore(table, client_args=args),
                             handler_s=size.handler_s)

        members = [worker(), worker()]
        async with running(list(members)) as everyone, \
                caller(ctx.bootstrap, mesh[CALLER], request_topic) as (client, acks):
            await group_stable(ctx.bootstrap, service, 2, 60)
            await warm_up(client, operation, 20)
            load = Load(client, operation, count=size.count, spacing_s=size.spacing_s,
                        timeout_s=size.timeout_s)
            loading = asyncio.create_task(load.run())
            try:
                for change in range(size.changes):
                    await asyncio.sleep(size.period_s)
                    if change % 2 == 0:  # join
                        joining = worker()
                        everyone.append(joining)
                        members.append(joining)
                        joining.start()
                        changes.append("join")
                    else:  # the oldest member leaves
                        await members.pop(0).stop()
                        changes.append("leave")
                await loading
            finally:
                loading.cancel()
                await asyncio.wait([loading], timeout=5)
            await settle(logs.runs, 1.0, size.timeout_s)
            alive = all(w.alive for w in members)
            counters = [w.counters() for w in everyone]
    fault = {
        "changes": changes, "members_at_end": len(members), "workers_in_all": len(everyone),
        "first_members_left": sum(1 for w in everyone[:2] if w not in members),
        "redelivered_answered_from_store": sum(c["duplicates"] for c in counters),
        "handled": [c["handled"] for c in counters],
        "redelivered_refused_as_replays": sum(c["quarantined"] for c in counters),
    }
    problems = [] if alive else ["a worker that was still a member stopped"]
    used = sum(1 for c in counters if c["handled"] > 0)
    injected = len(changes) == size.changes and used >= 3
    return result_of(NAME, [load], acks.acked, logs, fault=fault, injected=injected,
                     problems=problems)
