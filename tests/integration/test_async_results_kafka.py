"""Async calls on the real broker and the emulator's DynamoDB: the gateway's mesh client
submits, a real service worker answers on an async replies topic, and the recorder (run in
the test) keeps the result in a real operations table. Forged replies are parked, duplicate
replies change nothing, and a recorder killed mid-stream leaves nothing unrecorded."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bus.config import BusSettings
from bus.delivery.idempotency import MemoryIdempotencyStore
from bus.envelope import KIND_REQUEST, Envelope, ReplyTo, new_id, now_ms, reply_for, to_headers
from bus.errors import HandlerError
from bus.runtime.client import MeshClient
from bus.runtime.worker import ServiceWorker
from bus.security.identity import Identity
from bus.security.keys import generate_ed25519
from bus.security.quarantine import H_REASON
from bus.security.signing import sign
from bus.service import Payload, Service
from bus.transport.kafka import KafkaTransport
from functions.async_results.runner import RecorderRunner
from functions.async_results.worker import build
from functions.shared.dynamodb_operations import DynamoDBOperationsStore
from functions.shared.operations_store import Completion, OperationRecord
from functions.shared.operations_table import operations_table
from infra.settings import Settings
from tests.integration.test_bus_kafka import quarantined
from tests.support import identities, scratch_table

pytestmark = pytest.mark.integration
REPLY_PARTITIONS = 3


@pytest.fixture(scope="module")
def table(dynamodb: Any) -> Iterator[str]:
    with scratch_table(dynamodb, "async", operations_table()) as name:
        yield name


@pytest.fixture
def store(table: str, infra_settings: Settings) -> DynamoDBOperationsStore:
    return DynamoDBOperationsStore(table, client_args=infra_settings.aws_client_args())


@pytest.fixture
async def replies_topic(bootstrap: str, service_name: str) -> AsyncIterator[str]:
    """This test's own async replies topic: the recorder under test reads only its replies."""
    topic = f"{service_name}.async.replies"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, REPLY_PARTITIONS, 1)])
        yield topic
        await admin.delete_topics([topic])
    finally:
        await admin.close()


@pytest.fixture
def mesh(service_name: str, replies_topic: str) -> dict[str, Identity]:
    return identities({
        "gateway": [f"{service_name}.requests"],
        service_name: [replies_topic],
        "itest-other": [replies_topic],  # may answer on the topic, owns no operation here
    })


def reports(name: str) -> Service:
    service = Service(name)

    @service.operation(f"{name}.build")
    async def build_report(payload: Payload, message: Envelope) -> Payload:
        if payload.get("fail"):
            raise HandlerError("no_data", "nothing to report on", retriable=False)
        return {"rows": payload["rows"], "for": message.principal}

    return service


@asynccontextmanager
async def task_of(run: Callable[[asyncio.Event], Any]) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(run(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


@asynccontextmanager
async def recorder(store: DynamoDBOperationsStore, settings: BusSettings, identity: Identity,
                   topic: str, group: str, **args: Any) -> AsyncIterator[RecorderRunner]:
    transport = KafkaTransport(settings.model_copy(update={"service_name": "gateway"}))
    runner = build(store, transport, settings, identity, topic=topic, group_id=group, **args)
    try:
        async with task_of(runner.run):
            yield runner
    finally:
        await transport.close()


@asynccontextmanager
async def served(service_name: str, settings: BusSettings, identity: Identity
                 ) -> AsyncIterator[ServiceWorker]:
    worker_settings = settings.model_copy(update={"service_name": service_name})
    transport = KafkaTransport(worker_settings)
    worker = ServiceWorker(reports(service_name), transport, worker_settings, identity,
                           store=MemoryIdempotencyStore())
    try:
        async with task_of(worker.run):
            yield worker
    finally:
        await transport.close()


async def records(store: DynamoDBOperationsStore, ids: list[str]) -> list[OperationRecord]:
    found = await asyncio.gather(*(store.get(op) for op in ids))
    assert all(record is not None for record in found)
    return [record for record in found if record is not None]


async def all_done(store: DynamoDBOperationsStore, ids: list[str], timeout_s: float = 60.0
                   ) -> list[OperationRecord]:
    async with asyncio.timeout(timeout_s):
        while True:
            found = await records(store, ids)
            if all(record.done for record in found):
                return found
            await asyncio.sleep(0.2)


async def until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - polls counters the runner owns
            await asyncio.sleep(0.05)


async def created(store: DynamoDBOperationsStore, operation: str, count: int = 1) -> list[str]:
    ids = [uuid.uuid4().hex for _ in range(count)]
    await asyncio.gather(*(store.create(op, owner="alice", route="POST /v1/reports",
                                        operation=operation) for op in ids))
    return ids


def signed_reply(sender: Identity, topic: str, operation: str, operation_id: str,
                 value: bytes) -> Envelope:
    request = Envelope(id=operation_id, source="gateway", type=operation, kind=KIND_REQUEST,
                       value=b"{}", time_ms=now_ms(), correlation_id=operation_id,
                       reply_to=ReplyTo(topic, 0), deadline_ms=now_ms() + 60_000)
    assert sender.signing_key is not None
    return sign(reply_for(request, source=sender.service, value=value), topic,
                sender.signing_key)


async def send_all(settings: BusSettings, topic: str, envelopes: list[Envelope]) -> None:
    transport = KafkaTransport(settings)
    try:
        for envelope in envelopes:
            await transport.send(topic, envelope.value, headers=to_headers(envelope), partition=0)
    finally:
        await transport.close()


async def test_submitted_calls_are_recorded_with_results_and_errors(
    service_name: str, replies_topic: str, bus_settings: BusSettings,
    mesh: dict[str, Identity], store: DynamoDBOperationsStore,
) -> None:
    operation = f"{service_name}.build"
    ok_ids = await created(store, operation, 10)
    [failing] = await created(store, operation)
    gateway_settings = bus_settings.model_copy(update={"service_name": "gateway"})
    client = MeshClient(KafkaTransport(gateway_settings), gateway_settings, mesh["gateway"])
    group = f"itest-recorder-{uuid.uuid4().hex[:8]}"
    try:
        async with served(service_name, bus_settings, mesh[service_name]), \
                recorder(store, bus_settings, mesh["gateway"], replies_topic, group) as runner:
            for number, op in enumerate(ok_ids):
                await client.submit(operation, {"rows": number}, operation_id=op, timeout_s=60,
                                    principal='{"sub":"alice"}',
                                    reply_to=ReplyTo(replies_topic, number % REPLY_PARTITIONS))
            await client.submit(operation, {"fail": True}, operation_id=failing, timeout_s=60,
                                reply_to=ReplyTo(replies_topic, 1))
            done = await all_done(store, [*ok_ids, failing])
    finally:
        await client.close()
    assert [record.status for record in done[:-1]] == ["succeeded"] * 10
    assert [record.result for record in done[:-1]] == [
        {"rows": n, "for": '{"sub":"alice"}'} for n in range(10)]
    assert done[-1].status == "failed"
    assert done[-1].error == {"code": "no_data", "message": "nothing to report on",
                              "retriable": False}
    assert runner.recorder.counts["completed"] == 11
    assert runner.recorder.counts["quarantined"] == 0


async def test_duplicates_change_nothing_and_forgeries_are_parked(
    service_name: str, replies_topic: str, bus_settings: BusSettings,
    mesh: dict[str, Identity], store: DynamoDBOperationsStore,
) -> None:
    operation = f"{service_name}.build"
    done_id, pending_id = await created(store, operation, 2)
    service = mesh[service_name]
    first = signed_reply(service, replies_topic, operation, done_id, b'{"n":1}')
    duplicate = signed_reply(service, replies_topic, operation, done_id, b'{"n":2}')
    mallory, _ = generate_ed25519(service_name)  # claims the service's name; untrusted key
    genuine = signed_reply(service, replies_topic, operation, pending_id, b'{"n":3}')
    forged = sign(replace(genuine, id=new_id(), signature=None, value=b'{"n":666}'),
                  replies_topic, mallory)
    unsigned = replace(genuine, id=new_id(), signature=None)
    wrong_replier = signed_reply(mesh["itest-other"], replies_topic, operation, pending_id,
                                 b'{"n":4}')
    await send_all(bus_settings, replies_topic, [first, forged, unsigned, wrong_replier])
    group = f"itest-recorder-{uuid.uuid4().hex[:8]}"
    async with recorder(store, bus_settings, mesh["gateway"], replies_topic, group) as runner:
        await until(lambda: sum(runner.recorder.counts.values()) == 4)
        # records are handled concurrently: the duplicate comes once the first is recorded
        await send_all(bus_settings, replies_topic, [duplicate])
        await until(lambda: runner.recorder.counts["duplicate"] == 1)
    assert runner.recorder.counts == {"completed": 1, "duplicate": 1, "quarantined": 3}
    [done, pending] = await records(store, [done_id, pending_id])
    assert done.status == "succeeded"
    assert done.result == {"n": 1}
    assert pending.status == "pending"
    reader = KafkaTransport(bus_settings)
    try:
        parked = await quarantined(reader, replies_topic, 3)
    finally:
        await reader.close()
    assert sorted(dict(r.headers)[H_REASON].decode() for r in parked) == [
        "missing_signature", "unexpected_replier", "unknown_key_id"]


class SlowStore(DynamoDBOperationsStore):
    """Each completion takes a while, so a recorder can be killed between records."""

    async def complete(self, operation_id: str, **kwargs: Any) -> Completion:
        await asyncio.sleep(0.05)
        return await super().complete(operation_id, **kwargs)


async def test_a_recorder_killed_mid_stream_loses_nothing(
    service_name: str, replies_topic: str, bus_settings: BusSettings,
    mesh: dict[str, Identity], table: str, infra_settings: Settings,
) -> None:
    store = SlowStore(table, client_args=infra_settings.aws_client_args())
    operation = f"{service_name}.build"
    ids = await created(store, operation, 40)
    service = mesh[service_name]
    await send_all(bus_settings, replies_topic, [
        signed_reply(service, replies_topic, operation, op, json.dumps({"n": n}).encode())
        for n, op in enumerate(ids)])
    group = f"itest-recorder-{uuid.uuid4().hex[:8]}"
    async with recorder(store, bus_settings, mesh["gateway"], replies_topic, group,
                        concurrency=2) as first:
        await until(lambda: first.recorder.counts["completed"] >= 8)
    # The first one was stopped gracefully; the second one is killed mid-record.
    killed_at = first.recorder.counts["completed"]
    assert killed_at < len(ids)
    transport = KafkaTransport(bus_settings.model_copy(update={"service_name": "gateway"}))
    second = build(store, transport, bus_settings, mesh["gateway"], topic=replies_topic,
                   group_id=group, concurrency=2)
    run = asyncio.create_task(second.run(asyncio.Event()))
    try:
        await until(lambda: second.recorder.counts["completed"] >= 5)
        run.cancel()  # a kill: in-flight records are cancelled, never committed
        await asyncio.wait([run], timeout=20)
    finally:
        await transport.close()
    assert run.cancelled()
    recorded = killed_at + second.recorder.counts["completed"]
    assert recorded < len(ids)
    async with recorder(store, bus_settings, mesh["gateway"], replies_topic, group) as third:
        found = await all_done(store, ids)
    assert [record.result for record in found] == [{"n": n} for n in range(len(ids))]
    # A store write in flight when the second one was killed may have landed uncounted
    # (a thread is not cancelled with its task): at most ``concurrency`` of them.
    assert len(ids) - recorded - 2 <= third.recorder.counts["completed"] <= len(ids) - recorded
    assert third.recorder.counts["quarantined"] == 0
