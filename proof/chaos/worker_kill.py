"""Scenario: a service worker SIGKILLed mid-batch; a second one takes over.

Two ``proof.chaos.worker`` processes in one group on the shared broker share one DynamoDB
idempotency table on the shared emulator. A marker request stalls in its handler after its
effect; the worker running it is SIGKILLed there, with other requests of its batch
answered but not committed, in flight, or not started. The survivor gets the victim's
partitions after the session timeout and its claims after their lease.

The documented guarantee for a kill is at-most-twice *execution* (docs/decisions.md: the
window between an effect and the store's ``complete``), so this service's effect is
idempotent by construction (``ledger.apply_once``): re-runs are counted as ``reran`` and must
stay at two runs at most, the effect must be applied once.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import Counter
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

from proof.chaos import ledger
from proof.chaos.load import Load, caller, settle, warm_up
from proof.chaos.runner import Context, ScenarioResult, result_of
from proof.chaos.service import EffectLogs, operation_of
from proof.chaos.stack import (
    CALLER,
    group_stable,
    idempotency_table_on,
    identities,
    identity_env,
    in_progress_claims,
    topics,
)
from proof.chaos.workers import spawn_worker
from proof.procs import Responder

NAME = "worker-kill"
PARTITIONS = 6


@dataclass(frozen=True)
class Sizes:
    count: int
    spacing_s: float
    hold_s: float = 4.0  # the marker's stall: the kill lands inside it
    handler_ms: int = 20
    timeout_s: float = 30.0  # > session timeout (10 s) + lease + the victim's backlog


FAST = Sizes(count=60, spacing_s=0.03, hold_s=3.0)
FULL = Sizes(count=400, spacing_s=0.02)


async def ran_on(path: Path, n: int, timeout_s: float) -> int:
    """The pid of the worker that ran request ``n``, once its run is logged."""
    async with asyncio.timeout(timeout_s):
        while True:
            for _, number, pid in await asyncio.to_thread(ledger.read_entries, path):
                if number == n:
                    return pid
            await asyncio.sleep(0.02)


async def run(ctx: Context) -> ScenarioResult:
    size = FAST if ctx.fast else FULL
    marker = size.count // 4
    service = f"chaoskill{uuid.uuid4().hex[:8]}"
    operation = operation_of(service)
    request_topic = f"{service}.requests"
    mesh = identities(service)
    logs = EffectLogs(ctx.workdir / "runs.log", ctx.workdir / "effects.log")
    env = {"MESH_BOOTSTRAP_SERVERS": ctx.bootstrap, **identity_env(mesh[service], service)}
    fault: dict[str, object] = {}
    problems: list[str] = []
    async with idempotency_table_on(ctx.aws) as table, \
            topics(ctx.bootstrap, {request_topic: PARTITIONS}), AsyncExitStack() as stack:
        workers: list[Responder] = []
        for i in range(2):  # one after the other, each joining an idle group
            workers.append(await stack.enter_async_context(spawn_worker(
                ctx.workdir, f"worker{i}", env, logs, table=table,
                endpoint=ctx.aws.endpoint_url, handler_ms=size.handler_ms)))
            await group_stable(ctx.bootstrap, service, i + 1, 60)
        pids = {w.process.pid for w in workers}
        async with caller(ctx.bootstrap, mesh[CALLER], request_topic) as (client, acks):
            await warm_up(client, operation, 20, until=lambda by: by == pids)
            load = Load(client, operation, count=size.count, spacing_s=size.spacing_s,
                        timeout_s=size.timeout_s,
                        payload_for=lambda n: {"stall_s": size.hold_s} if n == marker else {})
            loading = asyncio.create_task(load.run())
            try:
                victim_pid = await ran_on(logs.runs, marker, size.timeout_s)
                victim = next(w for w in workers if w.process.pid == victim_pid)
                await asyncio.sleep(size.hold_s / 4)  # more of the batch answered, uncommitted
                marker_answered = load.calls[marker].ended is not None
                victim.process.send_signal(signal.SIGKILL)
                killed_at = time.monotonic()
                victim_exit = await asyncio.wait_for(victim.process.wait(), 10)
                await loading
            finally:
                loading.cancel()
                await asyncio.wait([loading], timeout=5)
            await settle(logs.runs, 1.0, size.timeout_s)
        survivor = next(w for w in workers if w is not victim)
        survivor_alive = survivor.process.returncode is None
        claims_left = await asyncio.to_thread(in_progress_claims, ctx.aws, table)
    # the exit stack stopped the survivor: its counters are in
    runs = Counter(n for n in ledger.read_numbers(logs.runs) if n >= 0)
    answered_after = sum(1 for c in load.calls.values()
                         if c.outcome == "ok" and c.ended is not None and c.ended > killed_at)
    fault = {
        "victim_exit": victim_exit, "marker": marker,
        "marker_answered_before_kill": marker_answered,
        "answered_before_kill": sum(1 for c in load.calls.values()
                                    if c.outcome == "ok" and c.ended is not None
                                    and c.ended <= killed_at),
        "answered_after_kill": answered_after, "survivor": survivor.counters,
        "claims_left_in_progress": claims_left,
        "ran_more_than_twice": sorted(n for n, k in runs.items() if k > 2),
    }
    if not survivor_alive:
        problems.append("the surviving worker stopped")
    if fault["ran_more_than_twice"]:
        problems.append("a request ran more than twice (the guarantee is at most twice)")
    if claims_left:
        problems.append(f"{claims_left} idempotency claims left in progress")
    fault["marker_runs"] = runs[marker]
    injected = victim_exit == -signal.SIGKILL and not marker_answered
    return result_of(NAME, [load], acks.acked, logs, fault=fault, injected=injected,
                     problems=problems)
