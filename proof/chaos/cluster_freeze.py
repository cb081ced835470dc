"""Scenario (three-node cluster): a node is frozen with SIGSTOP under load, past the broker
session timeout (9 s: the controller fences it and moves its leaderships to in-sync
followers), then thawed with SIGCONT: it must find itself fenced, rejoin as a follower and
catch up until every replica is in sync again. The node frozen is the coordinator of the
event subscriber's consumer group, so offset commits hang on it too (a frozen process keeps
its sockets open: clients see a broker that does not answer, not one that refuses); it also
leads partitions of the scenario's topics, whose writers must wait for a new leader."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

from proof.chaos.cluster_run import FaultReport, Sizes, Target, under_fault
from proof.chaos.cluster_stack import Cluster
from proof.chaos.runner import Context, ScenarioResult
from proof.chaos.stack import StackError

NAME = "cluster-freeze"
FAST = Sizes(chunk=20, spacing_s=0.05, before_s=2.0, tail=10)
FULL = Sizes(chunk=50, spacing_s=0.03, before_s=5.0, tail=50)
SESSION_TIMEOUT_S = 9.0  # broker.session.timeout.ms of cluster.properties.in
FROZEN_S = {True: 20.0, False: 25.0}  # fast, full: past the session and commit timeouts


async def freeze_coordinator(nodes: Cluster, target: Target, frozen_s: float) -> FaultReport:
    victim = await nodes.coordinator(target.subscriber_group)
    led = sorted(tp for tp, s in (await nodes.partitions(target.topics)).items()
                 if s.leader == victim)
    pid = nodes.signal(victim, signal.SIGSTOP)
    frozen_at = time.monotonic()
    try:
        fenced_after_s = await nodes.wait_fenced(victim, target.topics, frozen_s + 30)
        await asyncio.sleep(max(0.0, frozen_s - (time.monotonic() - frozen_at)))
    finally:
        with contextlib.suppress(StackError, ProcessLookupError):
            nodes.signal(victim, signal.SIGCONT)  # never leave it frozen
    thawed_at = time.monotonic()
    in_sync_s = await nodes.wait_in_sync(target.topics, 180)
    same_process = nodes.pid(victim) == pid
    evidence = {
        "frozen_node": victim, "frozen_pid": pid, "frozen_s": round(thawed_at - frozen_at, 1),
        "session_timeout_s": SESSION_TIMEOUT_S, "coordinator_of": target.subscriber_group,
        "partitions_it_led": len(led), "fenced_after_s": round(fenced_after_s, 1),
        "all_in_sync_after_thaw_s": round(in_sync_s, 1), "thawed_node_alive": same_process,
    }
    problems = [] if same_process else ["the thawed node did not survive its freeze"]
    injected = thawed_at - frozen_at > SESSION_TIMEOUT_S and bool(led)
    return FaultReport(evidence, injected, problems)


async def run(ctx: Context) -> ScenarioResult:
    size = FAST if ctx.fast else FULL
    frozen_s = FROZEN_S[ctx.fast]

    async def fault(nodes: Cluster, target: Target) -> FaultReport:
        return await freeze_coordinator(nodes, target, frozen_s)

    return await under_fault(ctx, NAME, "freeze", size, fault)
