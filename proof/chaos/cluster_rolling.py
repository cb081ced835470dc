"""Scenario (three-node cluster): a rolling restart of all three nodes under load, as an
operator upgrades a cluster: each node is stopped with the cluster script (SIGTERM: a
controlled shutdown that hands its leaderships over first), started again, and the next one
waits until every replica is back in sync, so at most one node is ever down and
``min.insync.replicas=2`` always holds."""

from __future__ import annotations

import time

from proof.chaos.cluster_run import FaultReport, Sizes, Target, under_fault
from proof.chaos.cluster_stack import NODES, Cluster
from proof.chaos.runner import Context, ScenarioResult

NAME = "cluster-rolling-restart"
FAST = Sizes(chunk=20, spacing_s=0.05, before_s=2.0, tail=10)
FULL = Sizes(chunk=50, spacing_s=0.03, before_s=5.0, tail=50)


async def roll(nodes: Cluster, target: Target) -> FaultReport:
    steps: list[dict[str, object]] = []
    problems: list[str] = []
    for node in NODES:
        old = nodes.pid(node)
        began = time.monotonic()
        stopped = await nodes.stop(node)
        started = await nodes.start(node)
        answering = time.monotonic() - began
        new = nodes.pid(node)
        in_sync_s = await nodes.wait_in_sync(target.topics, 180)
        steps.append({"node": node, "old_pid": old, "new_pid": new,
                      "stop_rc": stopped.returncode, "start_rc": started.returncode,
                      "down_until_answering_s": round(answering, 1),
                      "in_sync_after_s": round(in_sync_s, 1)})
        if stopped.returncode != 0 or started.returncode != 0:
            problems.append(f"node {node}: {stopped.output} | {started.output}")
    injected = all(s["old_pid"] is not None and s["new_pid"] not in (None, s["old_pid"])
                   and s["stop_rc"] == 0 and s["start_rc"] == 0 for s in steps)
    return FaultReport({"restarted": steps}, injected and len(steps) == len(NODES), problems)


async def run(ctx: Context) -> ScenarioResult:
    size = FAST if ctx.fast else FULL
    return await under_fault(ctx, NAME, "roll", size, roll)
