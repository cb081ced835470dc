"""The three-node KRaft cluster of a chaos scenario (``localstack/kafka/cluster.sh``): started
on free ports with its data under the scenario's folder and always stopped afterwards (no
java process of it may be left: checked); its nodes' pids, signals to them, who leads a
partition and whether every replica is back in sync. Every wait is bounded.

The cluster's topics are made here with replication factor 3 and ``min.insync.replicas=2``:
a write the producer (``acks=all``) saw acknowledged is on two nodes at least.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from proof.chaos.stack import ScriptResult, StackError, run_script
from proof.procs import ROOT

CLUSTER_SCRIPT = ROOT / "localstack" / "kafka" / "cluster.sh"
NODES = (1, 2, 3)
REPLICAS = 3
MIN_INSYNC = 2
ADMIN_TIMEOUT_S = 10.0
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 90.0


def free_block(size: int) -> int:
    """The first of ``size`` consecutive loopback ports nothing listens on now."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + size >= 65_535:
            continue
        held: list[socket.socket] = []
        try:
            for port in range(base, base + size):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
        return base
    raise StackError(f"no {size} consecutive free loopback ports")


def process_alive(pid: int) -> bool:
    """Alive and not a zombie (a SIGKILLed node stays one until init reaps it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


@dataclass(frozen=True)
class PartitionState:
    leader: int  # -1: none
    isr: tuple[int, ...]


@dataclass(frozen=True)
class Cluster:
    base_port: int
    state: Path

    @property
    def env(self) -> dict[str, str]:
        return {"KAFKA_CLUSTER_PORT": str(self.base_port), "KAFKA_CLUSTER_DIR": str(self.state)}

    def address(self, node: int) -> str:
        return f"127.0.0.1:{self.base_port + 2 * (node - 1)}"

    @property
    def bootstrap(self) -> str:
        return ",".join(self.address(n) for n in NODES)

    async def start(self, node: int | None = None) -> ScriptResult:
        """``cluster.sh start [NODE]``: every node not running, or only ``node``."""
        return await cluster_script(["start", *_node_arg(node)], self.env, START_TIMEOUT_S)

    async def stop(self, node: int | None = None) -> ScriptResult:
        return await cluster_script(["stop", *_node_arg(node)], self.env, STOP_TIMEOUT_S)

    def pid(self, node: int) -> int | None:
        """Node ``node``'s pid if it is alive (zombies are dead)."""
        try:
            pid = int((self.state / f"node{node}" / "kafka.pid").read_text())
        except (OSError, ValueError):
            return None
        return pid if process_alive(pid) else None

    def signal(self, node: int, signum: signal.Signals) -> int:
        """Send ``signum`` to node ``node``; its pid. StackError if it is not running."""
        pid = self.pid(node)
        if pid is None:
            raise StackError(f"node {node} is not running")
        os.kill(pid, signum)
        return pid

    def leftover(self) -> list[int]:
        """Pids of processes still running from this cluster's folder (must be none)."""
        found = subprocess.run(["pgrep", "-f", str(self.state)], capture_output=True,
                               text=True, timeout=10, check=False)
        return [int(p) for p in found.stdout.split() if process_alive(int(p))]

    async def partitions(self, topics: list[str], via: tuple[int, ...] = NODES
                         ) -> dict[tuple[str, int], PartitionState]:
        """Leader and ISR of every partition of ``topics``, asked of the first of ``via``
        that answers (a frozen node does not: it is skipped after ``ADMIN_TIMEOUT_S``)."""
        failures: list[str] = []
        for node in via:
            try:
                return await _describe(self.address(node), topics)
            except (KafkaError, TimeoutError, OSError) as exc:
                failures.append(f"node {node}: {exc!r}")
        raise StackError(f"no node answered a metadata request: {failures}")

    async def leader(self, topic: str, partition: int, via: tuple[int, ...] = NODES) -> int:
        return (await self.partitions([topic], via))[(topic, partition)].leader

    async def wait_leader(self, topic: str, partition: int, not_on: int, via: tuple[int, ...],
                          timeout_s: float) -> tuple[int, float]:
        """Wait until a node other than ``not_on`` leads the partition; it and the wait."""
        started = time.monotonic()
        async with asyncio.timeout(timeout_s):
            while True:
                with contextlib.suppress(StackError):
                    leader = await self.leader(topic, partition, via)
                    if leader not in (-1, not_on):
                        return leader, time.monotonic() - started
                await asyncio.sleep(0.2)

    async def coordinator(self, group: str) -> int:
        """The node coordinating consumer group ``group`` (its offset commits go there)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap,
                                    request_timeout_ms=int(ADMIN_TIMEOUT_S * 1000))
        try:
            async with asyncio.timeout(ADMIN_TIMEOUT_S):
                await admin.start()
                return int(await admin.find_coordinator(group))
        finally:
            with contextlib.suppress(KafkaError, TimeoutError, OSError):
                await asyncio.wait_for(admin.close(), 5)

    async def wait_fenced(self, node: int, topics: list[str], timeout_s: float) -> float:
        """Wait until ``node`` leads no partition of ``topics`` and is in no ISR (the
        controller fenced it), asking the other nodes; the wait."""
        others = tuple(n for n in NODES if n != node)
        started = time.monotonic()
        async with asyncio.timeout(timeout_s):
            while True:
                with contextlib.suppress(StackError):
                    states = (await self.partitions(topics, others)).values()
                    if states and all(s.leader != node and node not in s.isr for s in states):
                        return time.monotonic() - started
                await asyncio.sleep(0.2)

    async def wait_in_sync(self, topics: list[str], timeout_s: float) -> float:
        """Wait until every partition of ``topics`` has all three replicas in its ISR."""
        started = time.monotonic()
        async with asyncio.timeout(timeout_s):
            while True:
                with contextlib.suppress(StackError):
                    states = await self.partitions(topics)
                    if states and all(len(s.isr) == REPLICAS and s.leader >= 0
                                      for s in states.values()):
                        return time.monotonic() - started
                await asyncio.sleep(0.5)


def _node_arg(node: int | None) -> list[str]:
    return [] if node is None else [str(node)]


async def cluster_script(args: list[str], env: Mapping[str, str],
                         timeout_s: float) -> ScriptResult:
    """``bash cluster.sh ARGS`` with ``env`` over ours; killed after ``timeout_s``."""
    return await run_script(CLUSTER_SCRIPT, args, env, timeout_s)


async def _describe(address: str, topics: list[str]) -> dict[tuple[str, int], PartitionState]:
    admin = AIOKafkaAdminClient(bootstrap_servers=address,
                                request_timeout_ms=int(ADMIN_TIMEOUT_S * 1000))
    try:
        async with asyncio.timeout(ADMIN_TIMEOUT_S):
            await admin.start()
            described: list[dict[str, Any]] = await admin.describe_topics(topics)
    finally:
        with contextlib.suppress(KafkaError, TimeoutError, OSError):
            await asyncio.wait_for(admin.close(), 5)
    return {(t["topic"], int(p["partition"])): PartitionState(int(p["leader"]),
                                                              tuple(p["isr"]))
            for t in described for p in t["partitions"]}


@asynccontextmanager
async def cluster(workdir: Path) -> AsyncIterator[Cluster]:
    """A fresh three-node cluster under ``workdir``; stopped afterwards, with no java
    process of it left (StackError otherwise)."""
    instance = Cluster(free_block(6), workdir / "kafka-cluster")
    try:
        started = await instance.start()
        if started.returncode != 0:
            raise StackError(f"the cluster did not start: {started.output}")
        yield instance
    finally:
        await instance.stop()
        left = instance.leftover()
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if left:  # said only when nothing else went wrong first (that is the story then)
        raise StackError(f"cluster processes left after stop (killed now): {left}")


@asynccontextmanager
async def replicated_topics(bootstrap: str, specs: Mapping[str, int]) -> AsyncIterator[None]:
    """Create ``specs`` (topic -> partitions), replication factor 3 and
    ``min.insync.replicas=2``; the cluster is thrown away afterwards, so nothing is deleted."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await asyncio.wait_for(admin.start(), 30)
    try:
        new = [NewTopic(name, parts, REPLICAS,
                        topic_configs={"min.insync.replicas": str(MIN_INSYNC)})
               for name, parts in specs.items()]
        await asyncio.wait_for(admin.create_topics(new), 30)
    finally:
        await asyncio.wait_for(admin.close(), 10)
    yield
