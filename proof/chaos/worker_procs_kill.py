"""Scenario: one child of a multi-process worker SIGKILLed mid-batch (issue 15).

One ``proof.chaos.worker`` run with two processes (``bus.runtime.processes``: a supervisor
and two children in one group) on the shared broker, one DynamoDB idempotency table on the
shared emulator. As in ``worker-kill``, a marker request stalls in its handler after its
effect and the child running it is SIGKILLed there. The other child must get its partitions
(and its claims after their lease), the supervisor must restart the dead one (the group is
back to two members), and nothing may be lost or applied twice; a request may run at most
twice (the documented guarantee for a kill).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections import Counter
from contextlib import AsyncExitStack

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
from proof.chaos.worker_kill import FAST, FULL, PARTITIONS, ran_on
from proof.chaos.workers import spawn_worker
from proof.procs import alive

NAME = "worker-procs-kill"
PROCESSES = 2
REJOIN_TIMEOUT_S = 60.0


async def gone(pid: int, timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while alive(pid):  # noqa: ASYNC110 (not our child: nothing to wait on)
            await asyncio.sleep(0.02)


async def run(ctx: Context) -> ScenarioResult:
    size = FAST if ctx.fast else FULL
    marker = size.count // 4
    service = f"chaosprocs{uuid.uuid4().hex[:8]}"
    operation = operation_of(service)
    request_topic = f"{service}.requests"
    mesh = identities(service)
    logs = EffectLogs(ctx.workdir / "runs.log", ctx.workdir / "effects.log")
    env = {"MESH_BOOTSTRAP_SERVERS": ctx.bootstrap, **identity_env(mesh[service], service)}
    problems: list[str] = []
    async with idempotency_table_on(ctx.aws) as table, \
            topics(ctx.bootstrap, {request_topic: PARTITIONS}), AsyncExitStack() as stack:
        supervisor = await stack.enter_async_context(spawn_worker(
            ctx.workdir, "procs", env, logs, table=table, endpoint=ctx.aws.endpoint_url,
            handler_ms=size.handler_ms, processes=PROCESSES))
        await group_stable(ctx.bootstrap, service, PROCESSES, REJOIN_TIMEOUT_S)
        async with caller(ctx.bootstrap, mesh[CALLER], request_topic) as (client, acks):
            children = await warm_up(client, operation, 20,
                                     until=lambda by: len(by) == PROCESSES)
            load = Load(client, operation, count=size.count, spacing_s=size.spacing_s,
                        timeout_s=size.timeout_s,
                        payload_for=lambda n: {"stall_s": size.hold_s} if n == marker else {})
            loading = asyncio.create_task(load.run())
            try:
                victim = await ran_on(logs.runs, marker, size.timeout_s)
                await asyncio.sleep(size.hold_s / 4)  # more of the batch answered, uncommitted
                marker_answered = load.calls[marker].ended is not None
                os.kill(victim, signal.SIGKILL)
                killed_at = time.monotonic()
                await gone(victim, 10)
                await loading
            finally:
                loading.cancel()
                await asyncio.wait([loading], timeout=5)
            await settle(logs.runs, 1.0, size.timeout_s)
        survivors = [pid for pid in children if pid != victim and alive(pid)]
        try:
            await group_stable(ctx.bootstrap, service, PROCESSES, REJOIN_TIMEOUT_S)
            rejoined = True
        except TimeoutError:
            rejoined = False
        supervisor_alive = supervisor.process.returncode is None
        restart_logged = f"(pid {victim}) exited with -9; restarting" in \
            (ctx.workdir / "procs.log").read_text()
        claims_left = await asyncio.to_thread(in_progress_claims, ctx.aws, table)
    runs = Counter(n for n in ledger.read_numbers(logs.runs) if n >= 0)
    by_pid = Counter(pid for _, n, pid in ledger.read_entries(logs.runs) if n >= 0)
    fault = {
        "victim": victim, "children": sorted(children), "marker": marker,
        "marker_answered_before_kill": marker_answered,
        "answered_after_kill": sum(1 for c in load.calls.values() if c.outcome == "ok"
                                   and c.ended is not None and c.ended > killed_at),
        "runs_by_pid": dict(by_pid), "restart_logged": restart_logged,
        "restarted_and_rejoined": rejoined,
        "supervisor_exit": supervisor.process.returncode,
        "claims_left_in_progress": claims_left,
        "ran_more_than_twice": sorted(n for n, k in runs.items() if k > 2),
        "marker_runs": runs[marker],
    }
    if not supervisor_alive:
        problems.append("the supervisor stopped when one of its children was killed")
    if len(survivors) != PROCESSES - 1:
        problems.append(f"the other child did not survive (alive: {survivors})")
    if not restart_logged:
        problems.append(f"the supervisor did not log the restart of pid {victim}")
    if not rejoined:
        problems.append(f"the group did not get back to {PROCESSES} members: "
                        "the dead child was not restarted")
    if fault["ran_more_than_twice"]:
        problems.append("a request ran more than twice (the guarantee is at most twice)")
    if claims_left:
        problems.append(f"{claims_left} idempotency claims left in progress")
    injected = victim in children and not marker_answered and not alive(victim)
    return result_of(NAME, [load], acks.acked, logs, fault=fault, injected=injected,
                     problems=problems)
