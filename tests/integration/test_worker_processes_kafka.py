"""Two worker processes of one service (``MESH_WORKER_PROCESSES=2``, ``bus.runtime.processes``)
on the real broker, sharing one DynamoDB idempotency table on the real emulator.

Both children join the service's group and answer (the broker spreads the partitions), and a
signed request copied onto every partition of the request topic (so onto partitions of both
processes) is applied once. A request's replay guard is per process (memory, bounded by the
freshness window), so the first copy a child that never saw the request reads passes it; the
shared idempotency store (DynamoDB) then answers it with the stored result instead of running
it, and that child refuses every later copy as a replay. The first child of N warns when the
request topic has fewer than N partitions.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bus.config import BusSettings
from bus.runtime.client import MeshClient
from bus.transport.kafka import KafkaTransport
from functions.shared.worker_main import warn_if_few_partitions
from infra.kafka.connect import door_kwargs
from infra.settings import Settings
from proof.chaos import ledger
from proof.chaos.load import AckRecorder, warm_up
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

pytestmark = pytest.mark.integration
PARTITIONS = 6
WAIT_S = 60.0


class Capture(AckRecorder):
    """Remembers the last record sent to the request topic (value and headers)."""

    last: tuple[bytes, list[tuple[str, bytes]]] | None = None

    async def send(self, topic: str, value: bytes, *, headers: Sequence[tuple[str, bytes]],
                   key: bytes | None = None, partition: int | None = None) -> None:
        await super().send(topic, value, headers=headers, key=key, partition=partition)
        self.last = (value, list(headers))


async def drained(bootstrap: str, group: str, topic: str) -> None:
    """Wait until ``group`` has committed the end of every partition of ``topic``."""
    admin = AIOKafkaAdminClient(**door_kwargs(bootstrap))
    consumer = AIOKafkaConsumer(**door_kwargs(bootstrap))
    await admin.start()
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        async with asyncio.timeout(WAIT_S):
            while True:
                ends = await consumer.end_offsets(parts)
                committed = await admin.list_consumer_group_offsets(group)
                if all(committed.get(tp) is not None and committed[tp].offset >= ends[tp]
                       for tp in parts):
                    return
                await asyncio.sleep(0.2)
    finally:
        await consumer.stop()
        await admin.close()


async def members_with_partitions(bootstrap: str, group: str) -> int:
    admin = AIOKafkaAdminClient(**door_kwargs(bootstrap))
    await admin.start()
    try:
        answer = await admin.describe_consumer_groups([group])
        members = answer[0].to_object()["groups"][0]["members"]
        return sum(1 for m in members if m["member_assignment"])
    finally:
        await admin.close()


async def test_a_request_copied_onto_both_processes_partitions_is_applied_once(
    bootstrap: str, dynamodb: Any, infra_settings: Settings, tmp_path: Path,
) -> None:
    service = f"itprocs{uuid.uuid4().hex[:8]}"
    operation = operation_of(service)
    request_topic = f"{service}.requests"
    mesh = identities(service)
    logs = EffectLogs(tmp_path / "runs.log", tmp_path / "effects.log")
    env = {"MESH_BOOTSTRAP_SERVERS": bootstrap, **identity_env(mesh[service], service)}
    settings = BusSettings(bootstrap_servers=bootstrap, service_name=CALLER)
    async with idempotency_table_on(infra_settings) as table, \
            topics(bootstrap, {request_topic: PARTITIONS}):
        async with spawn_worker(tmp_path, "procs", env, logs, table=table,
                                endpoint=infra_settings.endpoint_url, handler_ms=5,
                                processes=2) as supervisor:
            await group_stable(bootstrap, service, 2, WAIT_S)
            assert await members_with_partitions(bootstrap, service) == 2
            capture = Capture(KafkaTransport(settings), request_topic)
            client = MeshClient(capture, settings, mesh[CALLER])
            try:
                children = await warm_up(client, operation, 20, until=lambda by: len(by) == 2)
                assert supervisor.process.pid not in children  # two children answer
                reply = await client.request(operation, {"n": 7}, timeout_s=20)
                assert reply["n"] == 7
                assert capture.last is not None
                value, headers = capture.last
            finally:
                await asyncio.wait_for(client.close(), 30)
            producer = AIOKafkaProducer(**door_kwargs(bootstrap), acks="all")
            await producer.start()
            try:
                for partition in range(PARTITIONS):  # every partition: both processes get one
                    await producer.send_and_wait(request_topic, value, headers=headers,
                                                 partition=partition)
            finally:
                await producer.stop()
            await drained(bootstrap, service, request_topic)
        claims_left = await asyncio.to_thread(in_progress_claims, infra_settings, table)
    runs = Counter(n for n in ledger.read_numbers(logs.runs) if n >= 0)
    assert runs == {7: 1}  # the original ran once; none of the six copies ran
    assert [n for n in ledger.read_numbers(logs.ledger or logs.runs) if n >= 0] == [7]
    assert claims_left == 0
    # the copies were refused by both children (their log lines carry their pid)
    refused_by = {int(m.group(1)) for m in re.finditer(
        rf"^\S+ \S+ (\d+) \S+ \S+ (?:quarantined|duplicate).*{re.escape(request_topic)}",
        (tmp_path / "procs.log").read_text(), re.MULTILINE)}
    assert refused_by == set(children), (tmp_path / "procs.log").read_text()[-3000:]


async def test_the_first_child_warns_when_the_topic_has_fewer_partitions_than_processes(
    bootstrap: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    topic = f"itprocs{uuid.uuid4().hex[:8]}.requests"
    transport = KafkaTransport(BusSettings(bootstrap_servers=bootstrap))
    try:
        async with topics(bootstrap, {topic: 2}):
            for index, count, warned in ((0, 3, True), (1, 3, False), (0, 2, False)):
                caplog.clear()
                monkeypatch.setenv("MESH_WORKER_INDEX", str(index))
                monkeypatch.setenv("MESH_WORKER_COUNT", str(count))
                monkeypatch.setenv("MESH_WORKER_PARENT_PID", "1")
                with caplog.at_level(logging.WARNING, logger="functions.shared.worker_main"):
                    await warn_if_few_partitions(transport, topic)
                assert (f"{topic} has 2 partition(s) for 3 worker processes" in caplog.text) \
                    is warned, (index, count, caplog.text)
    finally:
        await transport.close()
