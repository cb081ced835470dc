"""Scenario (three-node cluster): the leader of a request partition is SIGKILLed under load,
left dead a while, then started again with the cluster script (which must see the killed
node as dead even while it is a zombie). A follower in the ISR takes over (no unclean
election); the restarted node catches up until every replica is in sync again."""

from __future__ import annotations

import asyncio
import signal
import time

from proof.chaos.cluster_run import FaultReport, Sizes, Target, under_fault
from proof.chaos.cluster_stack import NODES, Cluster
from proof.chaos.runner import Context, ScenarioResult

NAME = "cluster-leader-kill"
FAST = Sizes(chunk=20, spacing_s=0.05, before_s=2.0, tail=10)
FULL = Sizes(chunk=50, spacing_s=0.03, before_s=5.0, tail=50)
DOWN_S = {True: 2.0, False: 10.0}  # fast, full


async def kill_leader(nodes: Cluster, target: Target, down_s: float) -> FaultReport:
    leader = await nodes.leader(target.request_topic, 0)
    others = tuple(n for n in NODES if n != leader)
    pid = nodes.signal(leader, signal.SIGKILL)
    killed_at = time.monotonic()
    new_leader, failover_s = await nodes.wait_leader(target.request_topic, 0, leader,
                                                     others, 60)
    await asyncio.sleep(max(0.0, down_s - (time.monotonic() - killed_at)))
    dead = nodes.pid(leader) is None
    started = await nodes.start(leader)
    restarted_at = time.monotonic()
    restarted_pid = nodes.pid(leader)
    in_sync_s = await nodes.wait_in_sync(target.topics, 180)
    evidence = {
        "killed_node": leader, "killed_pid": pid, "new_leader": new_leader,
        "new_leader_after_s": round(failover_s, 1),
        "down_until_answering_s": round(restarted_at - killed_at, 1),
        "restart_rc": started.returncode, "restarted_pid": restarted_pid,
        "all_in_sync_after_restart_s": round(in_sync_s, 1),
    }
    problems = [] if started.returncode == 0 else [f"restart failed: {started.output}"]
    injected = (dead and started.returncode == 0 and new_leader != leader
                and restarted_pid not in (None, pid))
    return FaultReport(evidence, injected, problems)


async def run(ctx: Context) -> ScenarioResult:
    size = FAST if ctx.fast else FULL
    down_s = DOWN_S[ctx.fast]

    async def fault(nodes: Cluster, target: Target) -> FaultReport:
        return await kill_leader(nodes, target, down_s)

    return await under_fault(ctx, NAME, "lkill", size, fault)
