"""Scenario (three-node cluster): the leader of a request partition is frozen with SIGSTOP
under load, past the broker session timeout (9 s: the controller fences it and moves its
leaderships to in-sync followers), then thawed with SIGCONT: it must find itself fenced,
rejoin as a follower and catch up until every replica is in sync again. A frozen process
holds its sockets open, so clients see a broker that does not answer (the hardest case for
a timeout), not one that refuses."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

from proof.chaos.cluster_run import FaultReport, Sizes, Target, under_fault
from proof.chaos.cluster_stack import NODES, Cluster
from proof.chaos.runner import Context, ScenarioResult
from proof.chaos.stack import StackError

NAME = "cluster-freeze"
FAST = Sizes(chunk=20, spacing_s=0.05, before_s=2.0, tail=10)
FULL = Sizes(chunk=50, spacing_s=0.03, before_s=5.0, tail=50)
SESSION_TIMEOUT_S = 9.0  # broker.session.timeout.ms of cluster.properties.in
FROZEN_S = {True: 12.0, False: 20.0}  # fast, full


async def freeze_leader(nodes: Cluster, target: Target, frozen_s: float) -> FaultReport:
    leader = await nodes.leader(target.request_topic, 0)
    others = tuple(n for n in NODES if n != leader)
    pid = nodes.signal(leader, signal.SIGSTOP)
    frozen_at = time.monotonic()
    try:
        new_leader, failover_s = await nodes.wait_leader(target.request_topic, 0, leader,
                                                         others, frozen_s + 30)
        await asyncio.sleep(max(0.0, frozen_s - (time.monotonic() - frozen_at)))
    finally:
        with contextlib.suppress(StackError, ProcessLookupError):
            nodes.signal(leader, signal.SIGCONT)  # never leave it frozen
    thawed_at = time.monotonic()
    in_sync_s = await nodes.wait_in_sync(target.topics, 180)
    lead_after = await nodes.leader(target.request_topic, 0)
    same_process = nodes.pid(leader) == pid
    evidence = {
        "frozen_node": leader, "frozen_pid": pid, "frozen_s": round(thawed_at - frozen_at, 1),
        "session_timeout_s": SESSION_TIMEOUT_S, "new_leader": new_leader,
        "new_leader_after_s": round(failover_s, 1),
        "all_in_sync_after_thaw_s": round(in_sync_s, 1),
        "thawed_node_alive": same_process, "leader_after": lead_after,
    }
    problems = [] if same_process else ["the thawed node did not survive its freeze"]
    injected = thawed_at - frozen_at > SESSION_TIMEOUT_S and new_leader != leader
    return FaultReport(evidence, injected, problems)


async def run(ctx: Context) -> ScenarioResult:
    size = FAST if ctx.fast else FULL
    frozen_s = FROZEN_S[ctx.fast]

    async def fault(nodes: Cluster, target: Target) -> FaultReport:
        return await freeze_leader(nodes, target, frozen_s)

    return await under_fault(ctx, NAME, "freeze", size, fault)
