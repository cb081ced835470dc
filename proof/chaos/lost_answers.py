"""Scenario: the idempotency store's answers are lost on the way back.

A proxy in front of the shared emulator (``proof.chaos.answer_dropper``) lets every third
distinct ``PutItem`` reach DynamoDB and then drops the connection before its answer (its
retry passes): claims and completions that landed look, to the worker, like failures, about
as many of each. The store's client tries them
again; a retried claim meets its own write, a retried completion finds the record already
complete. Every call must still be answered once, well inside the 5 s claim lease (the
callers give up after 3 s, so a worker that waited out its own lease would fail them), no
request may run twice, and no claim may be left in progress. The other two thirds of the
writes are the genuine control, relayed unchanged.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

from bus.config import BusSettings
from functions.shared.dynamodb_idempotency import DynamoDBIdempotencyStore
from proof.chaos.answer_dropper import dropping_answers
from proof.chaos.load import Load, caller, settle, warm_up
from proof.chaos.runner import Context, ScenarioResult, result_of
from proof.chaos.service import EffectLogs, operation_of
from proof.chaos.stack import CALLER, idempotency_table_on, identities, in_progress_claims, topics
from proof.chaos.workers import InProcess, running

NAME = "lost-answers"
DROP_EVERY = 3
CALLER_TIMEOUT_S = 3.0  # under the worker's 5 s lease


@dataclass(frozen=True)
class Sizes:
    count: int
    spacing_s: float


FAST = Sizes(count=60, spacing_s=0.05)
FULL = Sizes(count=300, spacing_s=0.03)


async def run(ctx: Context) -> ScenarioResult:
    size = FAST if ctx.fast else FULL
    service = f"chaoslost{uuid.uuid4().hex[:8]}"
    operation = operation_of(service)
    request_topic = f"{service}.requests"
    mesh = identities(service)
    logs = EffectLogs(ctx.workdir / "runs.log")
    settings = BusSettings(bootstrap_servers=ctx.bootstrap, service_name=service)
    upstream = ctx.aws.endpoint_url
    if upstream is None:
        raise RuntimeError("lost-answers needs the local emulator (an endpoint URL)")
    async with idempotency_table_on(ctx.aws) as table, \
            topics(ctx.bootstrap, {request_topic: 3}), \
            dropping_answers(upstream, DROP_EVERY) as (dropper, proxy_url):
        store = DynamoDBIdempotencyStore(
            table, client_args={**ctx.aws.aws_client_args(), "endpoint_url": proxy_url})
        worker = InProcess(settings, mesh[service], logs, store=store, handler_s=0.02)
        async with running([worker]), \
                caller(ctx.bootstrap, mesh[CALLER], request_topic) as (client, acks):
            await warm_up(client, operation, 20)
            load = Load(client, operation, count=size.count, spacing_s=size.spacing_s,
                        timeout_s=CALLER_TIMEOUT_S)
            await load.run()
            await settle(logs.runs, 1.0, CALLER_TIMEOUT_S)
            alive = worker.alive
        left_in_progress = await asyncio.to_thread(in_progress_claims, ctx.aws, table)
    calls = list(load.calls.values())
    fault = {"dropped_answers": dropper.dropped, "relayed": dropper.relayed,
             "distinct_puts": dropper.matched, "worker": worker.counters(),
             "claims_left_in_progress": left_in_progress,
             "answered": f"{load.answered()}/{size.count}"}
    problems = []
    if not alive:
        problems.append(f"the worker stopped: {worker.failure!r}")
    if load.answered() != size.count:
        failed = [f"{c.n}: {c.error}" for c in calls if c.outcome != "ok"]
        problems.append(f"a lost answer cost calls (timeout {CALLER_TIMEOUT_S} s, under the "
                        f"lease): {failed[:5]}")
    if left_in_progress:
        problems.append(f"{left_in_progress} claims were left in progress")
    return result_of(NAME, [load], acks.acked, logs, fault=fault,
                     injected=dropper.dropped > 0 and dropper.relayed > 0, problems=problems)
