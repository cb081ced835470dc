"""Async calls over the in-memory transport: ``MeshClient.submit``, a service worker replying to
``mesh.async.replies``, and the recorder completing operations in the in-memory store, with
real Ed25519 signatures (forged and misdirected replies are parked, never recorded)."""

from __future__ import annotations

import asyncio
import json
import uuid
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import pytest

from bus.config import BusSettings
from bus.delivery.idempotency import MemoryIdempotencyStore
from bus.envelope import (
    KIND_REQUEST,
    Envelope,
    ReplyTo,
    from_record,
    new_id,
    now_ms,
    reply_for,
    to_headers,
)
from bus.errors import DeadlineExceeded, HandlerError, TransportError
from bus.runtime.client import ASYNC_REPLY_TOPIC, MeshClient, reply_partition_for
from bus.runtime.worker import ServiceWorker
from bus.security.identity import Identity
from bus.security.keys import generate_ed25519
from bus.security.quarantine import H_REASON, QUARANTINE_TOPIC
from bus.security.signing import sign
from bus.service import Payload, Service
from bus.telemetry.tracing import trace_id
from bus.transport.memory import MemoryBroker, MemoryTransport
from functions.async_results.recorder import MAX_RESULT_BYTES, completion_of
from functions.async_results.runner import RecorderRunner
from functions.async_results.worker import build
from functions.shared.operations_store import InMemoryOperationsStore, OperationsError
from tests.support import identities

SERVICE = "reports"
OPERATION = "reports.build"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
PRINCIPAL = '{"sub":"alice"}'


@pytest.fixture
def broker() -> MemoryBroker:
    broker = MemoryBroker()
    broker.create_topic(f"{SERVICE}.requests", partitions=2)
    broker.create_topic("inventory.requests", partitions=1)
    broker.create_topic(ASYNC_REPLY_TOPIC, partitions=3)
    broker.create_topic(QUARANTINE_TOPIC, partitions=1)
    return broker


@pytest.fixture
def mesh() -> dict[str, Identity]:
    return identities({
        "gateway": [f"{SERVICE}.requests", "inventory.requests", QUARANTINE_TOPIC],
        SERVICE: [ASYNC_REPLY_TOPIC],
        "inventory": [ASYNC_REPLY_TOPIC],
    })


@pytest.fixture
async def client(broker: MemoryBroker, mesh: dict[str, Identity]) -> AsyncIterator[MeshClient]:
    client = MeshClient(MemoryTransport(broker), BusSettings(service_name="gateway"),
                        mesh["gateway"])
    yield client
    await client.close()


def reports() -> Service:
    service = Service(SERVICE)

    @service.operation(OPERATION)
    async def build_report(payload: Payload, message: Envelope) -> Payload:
        if payload.get("fail"):
            raise HandlerError("no_data", "nothing to report on", retriable=False)
        return {"rows": payload["rows"], "for": message.principal}

    return service


@asynccontextmanager
async def running(*runs: Callable[[asyncio.Event], Any]) -> AsyncIterator[None]:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(run(stop)) for run in runs]
    try:
        yield
    finally:
        stop.set()
        done, pending = await asyncio.wait(tasks, timeout=15)
        for task in pending:
            task.cancel()
        assert not pending
        for task in done:
            task.result()


def service_worker(broker: MemoryBroker, mesh: dict[str, Identity]) -> ServiceWorker:
    return ServiceWorker(reports(), MemoryTransport(broker), BusSettings(service_name=SERVICE),
                         mesh[SERVICE], store=MemoryIdempotencyStore())


def recorder(broker: MemoryBroker, mesh: dict[str, Identity],
             store: InMemoryOperationsStore) -> RecorderRunner:
    return build(store, MemoryTransport(broker), BusSettings(service_name="gateway"),
                 mesh["gateway"])


async def eventually(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - polls state the tasks under test own
            await asyncio.sleep(0.01)


def parked(broker: MemoryBroker) -> list[str]:
    return [dict(r.headers)[H_REASON].decode() for r in broker.log(QUARANTINE_TOPIC)[0]]


async def created(store: InMemoryOperationsStore, operation: str = OPERATION) -> str:
    operation_id = uuid.uuid4().hex
    await store.create(operation_id, owner="alice", route="POST /v1/reports",
                       operation=operation)
    return operation_id


# --- submit --------------------------------------------------------------------------------


def test_reply_partition_is_a_stable_hash() -> None:
    assert reply_partition_for("abc", 3) == zlib.crc32(b"abc") % 3
    assert {reply_partition_for(uuid.uuid4().hex, 3) for _ in range(200)} == {0, 1, 2}
    with pytest.raises(ValueError, match="partitions"):
        reply_partition_for("abc", 0)


async def test_submit_sends_one_signed_request_and_waits_for_no_reply(
    broker: MemoryBroker, client: MeshClient
) -> None:
    operation_id = uuid.uuid4().hex
    before = now_ms()
    answer = await client.submit(OPERATION, {"rows": 3}, operation_id=operation_id,
                                 timeout_s=600, traceparent=TRACEPARENT, principal=PRINCIPAL)
    assert answer == operation_id
    records = [r for p in broker.log(f"{SERVICE}.requests") for r in p]
    assert len(records) == 1
    assert records[0].key == operation_id.encode()
    request = from_record(records[0].headers, records[0].value)
    assert request.kind == KIND_REQUEST
    assert request.id == operation_id
    assert request.correlation_id == operation_id
    assert request.source == "gateway"
    assert request.principal == PRINCIPAL
    assert request.signature is not None
    assert request.reply_to == ReplyTo(ASYNC_REPLY_TOPIC, reply_partition_for(operation_id, 3))
    assert request.deadline_ms is not None
    assert before + 600_000 <= request.deadline_ms <= now_ms() + 600_000
    assert trace_id(request.traceparent) == trace_id(TRACEPARENT)
    assert json.loads(request.value) == {"rows": 3}
    assert client._listener is None  # no reply listener was started for it


async def test_a_retried_submit_goes_to_the_same_places(
    broker: MemoryBroker, client: MeshClient
) -> None:
    operation_id = uuid.uuid4().hex
    for _ in range(2):
        await client.submit(OPERATION, {"rows": 1}, operation_id=operation_id, timeout_s=60)
    records = [r for p in broker.log(f"{SERVICE}.requests") for r in p]
    requests = [from_record(r.headers, r.value) for r in records]
    assert len({r.partition for r in records}) == 1
    assert {r.reply_to for r in requests} == {
        ReplyTo(ASYNC_REPLY_TOPIC, reply_partition_for(operation_id, 3))}
    assert {r.id for r in requests} == {operation_id}


async def test_submit_honours_an_explicit_reply_to(
    broker: MemoryBroker, client: MeshClient
) -> None:
    await client.submit(OPERATION, {}, operation_id="op-1", timeout_s=5,
                        reply_to=ReplyTo(ASYNC_REPLY_TOPIC, 2))
    [record] = [r for p in broker.log(f"{SERVICE}.requests") for r in p]
    assert from_record(record.headers, record.value).reply_to == ReplyTo(ASYNC_REPLY_TOPIC, 2)


async def test_submit_refuses_what_it_cannot_send(client: MeshClient) -> None:
    with pytest.raises(ValueError, match="operation_id"):
        await client.submit(OPERATION, {}, operation_id="", timeout_s=5)
    with pytest.raises(DeadlineExceeded):
        await client.submit(OPERATION, {}, operation_id="op", timeout_s=0)


async def test_a_broker_that_hangs_bounds_the_submit(broker: MemoryBroker,
                                                     mesh: dict[str, Identity]) -> None:
    class Hanging(MemoryTransport):
        async def send(self, topic: str, value: bytes, **kwargs: Any) -> None:
            await asyncio.sleep(60)

    settings = BusSettings(service_name="gateway", request_timeout_s=0.2)
    client = MeshClient(Hanging(broker), settings, mesh["gateway"])
    with pytest.raises(DeadlineExceeded, match="could not send"):
        await client.submit(OPERATION, {}, operation_id="op", timeout_s=600)


# --- the whole path in memory ---------------------------------------------------------------


async def test_results_and_errors_are_recorded(
    broker: MemoryBroker, mesh: dict[str, Identity], client: MeshClient
) -> None:
    store = InMemoryOperationsStore()
    ok, failing = await created(store), await created(store)
    runner = recorder(broker, mesh, store)
    async with running(service_worker(broker, mesh).run, runner.run):
        await client.submit(OPERATION, {"rows": 7}, operation_id=ok, timeout_s=30,
                            principal=PRINCIPAL)
        await client.submit(OPERATION, {"fail": True}, operation_id=failing, timeout_s=30)
        await eventually(lambda: runner.recorder.counts["completed"] == 2)
    done = await store.get(ok)
    assert done is not None
    assert done.status == "succeeded"
    assert done.result == {"rows": 7, "for": PRINCIPAL}
    refused = await store.get(failing)
    assert refused is not None
    assert refused.status == "failed"
    assert refused.error == {"code": "no_data", "message": "nothing to report on",
                             "retriable": False}
    assert parked(broker) == []


def _reply(sender: Identity, operation_id: str, value: bytes, *, operation: str = OPERATION,
           error: bool = False) -> Envelope:
    request = Envelope(id=operation_id, source="gateway", type=operation, kind=KIND_REQUEST,
                       value=b"{}", time_ms=now_ms(), correlation_id=operation_id,
                       reply_to=ReplyTo(ASYNC_REPLY_TOPIC, 0), deadline_ms=now_ms() + 60_000)
    reply = reply_for(request, source=sender.service, value=value, error=error)
    assert sender.signing_key is not None
    return sign(reply, ASYNC_REPLY_TOPIC, sender.signing_key)


def _send(broker: MemoryBroker, envelope: Envelope) -> None:
    broker.append(ASYNC_REPLY_TOPIC, 0, None, envelope.value, to_headers(envelope))


async def test_a_duplicate_reply_never_overwrites(
    broker: MemoryBroker, mesh: dict[str, Identity]
) -> None:
    store = InMemoryOperationsStore()
    operation_id = await created(store)
    _send(broker, _reply(mesh[SERVICE], operation_id, b'{"n":1}'))
    _send(broker, _reply(mesh[SERVICE], operation_id, b'{"n":2}'))
    runner = recorder(broker, mesh, store)
    async with running(runner.run):
        await eventually(lambda: runner.recorder.counts["duplicate"] == 1)
    record = await store.get(operation_id)
    assert record is not None
    assert record.result == {"n": 1}
    assert runner.recorder.counts["completed"] == 1


async def test_forged_and_misdirected_replies_are_parked_not_recorded(
    broker: MemoryBroker, mesh: dict[str, Identity]
) -> None:
    store = InMemoryOperationsStore()
    operation_id = await created(store)
    other_id = await created(store, operation="inventory.stock")
    mallory, _ = generate_ed25519(SERVICE)  # claims to be the service; nobody trusts its key
    genuine = _reply(mesh[SERVICE], operation_id, b'{"n":1}')
    forged = sign(replace(genuine, id=new_id(), signature=None), ASYNC_REPLY_TOPIC, mallory)
    unsigned = replace(_reply(mesh[SERVICE], operation_id, b'{"n":2}'), signature=None)
    tampered = replace(_reply(mesh[SERVICE], operation_id, b'{"n":3}'), value=b'{"n":666}')
    # inventory may produce to the topic, but reports.build is not its operation
    wrong_service = _reply(mesh["inventory"], operation_id, b'{"n":4}')
    # reports answering an id submitted as another operation
    mismatch = _reply(mesh[SERVICE], other_id, b'{"n":5}')
    for envelope in (forged, unsigned, tampered, wrong_service, mismatch):
        _send(broker, envelope)
    broker.append(ASYNC_REPLY_TOPIC, 0, None, b"garbage", [])
    runner = recorder(broker, mesh, store)
    async with running(runner.run):
        await eventually(lambda: runner.recorder.counts["quarantined"] == 6)
    assert sorted(parked(broker)) == sorted([
        "unknown_key_id", "missing_signature", "bad_signature", "unexpected_replier",
        "unexpected_reply_type", "bad_envelope"])
    for op in (operation_id, other_id):
        record = await store.get(op)
        assert record is not None
        assert record.status == "pending"


async def test_a_store_outage_is_retried_and_nothing_is_committed_past_it(
    broker: MemoryBroker, mesh: dict[str, Identity]
) -> None:
    class Flaky(InMemoryOperationsStore):
        failures = 3

        async def complete(self, operation_id: str, **kwargs: Any) -> Any:
            if self.failures:
                self.failures -= 1
                raise OperationsError("store away")
            return await super().complete(operation_id, **kwargs)

    store = Flaky()
    operation_id = await created(store)
    _send(broker, _reply(mesh[SERVICE], operation_id, b'{"n":1}'))
    runner = recorder(broker, mesh, store)
    async with running(runner.run):
        await eventually(lambda: runner.recorder.counts["completed"] == 1)
    assert runner.retries == 3
    assert parked(broker) == []  # the retried record was not admitted twice (no "replay")
    assert broker.committed("gateway-async-recorder", ASYNC_REPLY_TOPIC, 0) == 1


async def test_a_quarantine_that_cannot_be_written_stops_before_committing(
    broker: MemoryBroker, mesh: dict[str, Identity]
) -> None:
    class NoQuarantine(MemoryTransport):
        async def send(self, topic: str, value: bytes, **kwargs: Any) -> None:
            raise TransportError("broker away")

    store = InMemoryOperationsStore()
    broker.append(ASYNC_REPLY_TOPIC, 0, None, b"garbage", [])
    runner = build(store, NoQuarantine(broker), BusSettings(service_name="gateway"),
                   mesh["gateway"])
    async with running(runner.run):
        await eventually(lambda: runner.retries >= 2)
    assert broker.committed("gateway-async-recorder", ASYNC_REPLY_TOPIC, 0) == 0


def test_completion_of_replies() -> None:
    identity = identities({SERVICE: [ASYNC_REPLY_TOPIC]})[SERVICE]
    ok = _reply(identity, "op", b'{"a":1}')
    assert completion_of(ok) == ({"a": 1}, None)
    error = _reply(identity, "op", b'{"code":"c","message":"m","retriable":true}', error=True)
    assert completion_of(error) == (None, {"code": "c", "message": "m", "retriable": True})
    big = _reply(identity, "op", json.dumps({"x": "y" * MAX_RESULT_BYTES}).encode())
    assert completion_of(big)[1] == {"code": "result_too_large", "retriable": False,
                                     "message": f"the result is over {MAX_RESULT_BYTES} bytes"}
    bad = _reply(identity, "op", b"[1]")
    result, problem = completion_of(bad)
    assert result is None
    assert problem is not None
    assert problem["code"] == "bad_reply"
