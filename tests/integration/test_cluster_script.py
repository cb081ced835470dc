"""The three-node cluster script (``localstack/kafka/cluster.sh``) on free ports with its own
folder, beside the shared broker: three KRaft nodes come up, a topic gets replication factor 3
and ``min.insync.replicas=2``, the partition leader is SIGKILLed and an ``acks=all`` producer
still writes (and the records are read back), the killed node is started again at once (still
a zombie, perhaps: the script must see it as dead), and ``stop`` leaves no process. About a
minute (three JVMs); the chaos scenarios on it run in ``make chaos``."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from proof.chaos.cluster_stack import (
    CLUSTER_SCRIPT,
    MIN_INSYNC,
    NODES,
    REPLICAS,
    Cluster,
    free_block,
    process_alive,
    replicated_topics,
)
from tests.support import port_open, run

pytestmark = pytest.mark.integration
KAFKA_SH = CLUSTER_SCRIPT.parent / "kafka.sh"


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Cluster]:
    instance = Cluster(free_block(6), tmp_path / "kafka-cluster")
    yield instance
    run(["bash", str(CLUSTER_SCRIPT), "stop"], instance.env, timeout_s=120)


def script(nodes: Cluster, *args: str) -> tuple[int, str, str]:
    done = run(["bash", str(CLUSTER_SCRIPT), *args], nodes.env, timeout_s=240)
    return done.returncode, done.stdout, done.stderr


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                enable_idempotence=True, request_timeout_ms=30_000)
    await asyncio.wait_for(producer.start(), 30)
    try:
        for value in values:
            await asyncio.wait_for(producer.send_and_wait(topic, value, partition=0), 60)
    finally:
        await asyncio.wait_for(producer.stop(), 30)


async def read_back(bootstrap: str, topic: str, want: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await asyncio.wait_for(consumer.start(), 30)
    got: list[bytes] = []
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        async with asyncio.timeout(60):
            while len(got) < want:
                batches = await consumer.getmany(tp, timeout_ms=500)
                got += [m.value for m in batches.get(tp, []) if m.value is not None]
    finally:
        await asyncio.wait_for(consumer.stop(), 30)
    return got


async def min_insync(bootstrap: str, topic: str) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await asyncio.wait_for(admin.start(), 30)
    try:
        [answer] = await asyncio.wait_for(admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)]), 30)
        [resource] = answer.to_object()["resources"]
        [entry] = [c for c in resource["config_entries"]
                   if c["config_names"] == "min.insync.replicas"]
        return str(entry["config_value"])
    finally:
        await asyncio.wait_for(admin.close(), 10)


async def test_three_nodes_survive_a_killed_leader_and_stop_clean(nodes: Cluster) -> None:
    rc, out, err = script(nodes, "start")
    assert rc == 0, out + err
    assert all(f"started node {n}" in out for n in NODES), out
    assert f"bootstrap {nodes.bootstrap}" in out
    pids = {n: nodes.pid(n) for n in NODES}
    assert None not in pids.values()
    assert script(nodes, "status")[0] == 0
    again = script(nodes, "start")
    assert again[0] == 0
    assert "already running" in again[1]

    topic = f"itest-cluster-{uuid.uuid4().hex[:8]}"
    async with replicated_topics(nodes.bootstrap, {topic: 1}):
        states = await nodes.partitions([topic])
        assert len(states[(topic, 0)].isr) == REPLICAS
        assert await min_insync(nodes.bootstrap, topic) == str(MIN_INSYNC)
        await produce(nodes.bootstrap, topic, [b"before-0", b"before-1"])

        leader = states[(topic, 0)].leader
        killed = nodes.signal(leader, signal.SIGKILL)
        rc, out, _ = script(nodes, "status")  # at once: it may still be a zombie
        assert rc == 3
        assert f"node {leader} not running" in out
        # acks=all with one of three nodes dead: two in-sync replicas remain, writes go on
        await produce(nodes.bootstrap, topic, [b"after-0", b"after-1", b"after-2"])
        others = tuple(n for n in NODES if n != leader)
        new_leader, _ = await nodes.wait_leader(topic, 0, leader, others, 60)
        assert new_leader != leader
        assert script(nodes, "status")[0] == 3  # one node down

        # started again at once: a killed node is dead even while it is still a zombie
        rc, out, err = script(nodes, "start", str(leader))
        assert rc == 0, out + err
        assert f"started node {leader}" in out
        restarted = nodes.pid(leader)
        assert restarted is not None
        assert restarted != killed
        await nodes.wait_in_sync([topic], 120)
        assert await read_back(nodes.bootstrap, topic, 5) == [
            b"before-0", b"before-1", b"after-0", b"after-1", b"after-2"]

    rc, out, _ = script(nodes, "stop")
    assert rc == 0
    assert all(f"stopped node {n}" in out for n in NODES), out
    alive = [p for p in [*pids.values(), restarted] if p is not None and process_alive(p)]
    assert alive == []
    assert nodes.leftover() == []
    assert not any(port_open(int(nodes.address(n).rpartition(":")[2])) for n in NODES)
    assert script(nodes, "status")[0] == 3


def test_a_port_in_use_is_one_clear_error_and_starts_nothing(nodes: Cluster) -> None:
    port = int(nodes.address(2).rpartition(":")[2])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        rc, _, err = script(nodes, "start")
    assert rc != 0
    assert err.strip() == (f"kafka-cluster: error: port {port} (Kafka cluster node 2 "
                           "listener) is already in use by another process; stop it or "
                           "choose another port")
    assert nodes.leftover() == []


def test_a_killed_node_still_a_zombie_is_seen_as_dead(nodes: Cluster) -> None:
    # A child of this test, killed and not yet reaped: a zombie until we wait for it (init
    # reaps a killed broker as lazily). `kill -0` counts it alive; the script must not.
    corpse = subprocess.Popen(["sleep", "300"])
    try:
        corpse.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{corpse.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
            assert time.monotonic() < deadline, "the killed child never became a zombie"
            time.sleep(0.05)
        pidfile = nodes.state / "node1" / "kafka.pid"
        pidfile.parent.mkdir(parents=True)
        pidfile.write_text(f"{corpse.pid}\n")
        assert nodes.pid(1) is None
        rc, out, _ = script(nodes, "status")
        assert rc == 3
        assert "node 1 not running" in out
        # start goes on to launch it (and stops at the missing JDK), not "already running"
        done = run(["bash", str(CLUSTER_SCRIPT), "start", "1"],
                   {**nodes.env, "JAVA": "/nonexistent/java"})
        assert "already running" not in done.stdout
        assert done.returncode != 0
        assert "error: no Java found" in done.stderr
    finally:
        corpse.wait(timeout=10)


def test_unknown_node_is_refused(nodes: Cluster) -> None:
    rc, _, err = script(nodes, "start", "4")
    assert rc != 0
    assert "kafka-cluster: error: no node '4'" in err


def test_kafka_sh_dispatches_to_the_cluster(nodes: Cluster) -> None:
    done = run(["bash", str(KAFKA_SH), "status"], {**nodes.env, "MESHGATE_KAFKA_NODES": "3"})
    assert done.returncode == 3
    assert done.stdout.splitlines() == [
        f"kafka-cluster: node {n} not running" for n in NODES]
