"""How a worker uses its idempotency store (issue 15): not at all for an operation the policy
declares free of side effects (a duplicate runs again), claim and completion for any other
(a duplicate is answered from the store), and the claim's lease renewed only for a handler
that outlives a third of it (memory transport)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from bus.codec import decode
from bus.config import BusSettings
from bus.delivery.idempotency import MAX_RESULT_BYTES, Claim, MemoryIdempotencyStore
from bus.envelope import Envelope, ReplyTo, from_record, new_id, new_request, now_ms, to_headers
from bus.runtime.worker import ServiceWorker
from bus.security.access import AccessPolicy
from bus.security.identity import Identity
from bus.security.keys import KeyRing, generate_ed25519
from bus.security.quarantine import QUARANTINE_TOPIC
from bus.service import Payload, Service
from bus.transport.memory import MemoryBroker, MemoryTransport

REQUESTS = "back.requests"
REPLIES = "mesh.replies"


class CountingStore(MemoryIdempotencyStore):
    """The in-memory store, counting the calls a worker makes."""

    def __init__(self, max_result_bytes: int = MAX_RESULT_BYTES) -> None:
        super().__init__(max_result_bytes=max_result_bytes)
        self.calls: Counter[str] = Counter()

    async def begin(self, key: str, *, now_ms: int, lease_ms: int) -> Claim:
        self.calls["begin"] += 1
        return await super().begin(key, now_ms=now_ms, lease_ms=lease_ms)

    async def complete(self, key: str, result: bytes, *, token: str, now_ms: int,
                       keep_ms: int) -> bool:
        self.calls["complete"] += 1
        return await super().complete(key, result, token=token, now_ms=now_ms, keep_ms=keep_ms)

    async def renew(self, key: str, *, token: str, now_ms: int, lease_ms: int) -> bool:
        self.calls["renew"] += 1
        return await super().renew(key, token=token, now_ms=now_ms, lease_ms=lease_ms)


@pytest.fixture
def broker() -> MemoryBroker:
    broker = MemoryBroker()
    for topic in (REQUESTS, QUARANTINE_TOPIC, REPLIES):
        broker.create_topic(topic)
    return broker


@pytest.fixture
def mesh() -> dict[str, Identity]:
    keys = {name: generate_ed25519(name) for name in ("front", "back")}
    ring = KeyRing(verify for _, verify in keys.values())
    access = AccessPolicy.from_dict({"front": [REQUESTS], "back": [REPLIES]},
                                    side_effect_free=["back.read"])
    return {name: Identity(name, signing, ring, access) for name, (signing, _) in keys.items()}


def back_service(runs: list[str], *, slow_s: float = 0.0) -> Service:
    back = Service("back")

    @back.operation("back.read")
    async def read(payload: Payload, message: Envelope) -> Payload:
        runs.append(message.id)
        return {"n": len(runs)}

    @back.operation("back.write")
    async def write(payload: Payload, message: Envelope) -> Payload:
        runs.append(message.id)
        await asyncio.sleep(slow_s)
        return {"n": len(runs)}

    @back.operation("back.export")
    async def export(payload: Payload, message: Envelope) -> Payload:
        runs.append(message.id)
        return {"n": len(runs), "rows": "x" * 5_000}

    return back


async def send_twice(broker: MemoryBroker, caller: Identity, operation: str) -> Envelope:
    """A call and its retry after a lost reply: one correlation id, two message ids."""
    first = new_request(source="front", operation=operation, value=b"{}",
                        reply_to=ReplyTo(REPLIES, 0), deadline_ms=now_ms() + 10_000)
    again = new_request(source="front", operation=operation, value=b"{}",
                        reply_to=ReplyTo(REPLIES, 0), deadline_ms=first.deadline_ms or 0,
                        correlation_id=first.correlation_id, attempt=2, message_id=new_id())
    transport = MemoryTransport(broker)
    for envelope in (first, again):
        sealed = caller.outgoing(envelope, REQUESTS)
        await transport.send(REQUESTS, sealed.value, headers=to_headers(sealed))
    return first


@asynccontextmanager
async def running(broker: MemoryBroker, identity: Identity, service: Service,
                  store: CountingStore, *, lease_ms: int = 5_000
                  ) -> AsyncIterator[ServiceWorker]:
    worker = ServiceWorker(service, MemoryTransport(broker), BusSettings(service_name="back"),
                           identity, store=store, lease_ms=lease_ms)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def replies(broker: MemoryBroker, count: int) -> list[Envelope]:
    async with asyncio.timeout(5):
        while len(broker.log(REPLIES)[0]) < count:
            await broker.wait_for_change(0.1)
    return [from_record(r.headers, r.value) for r in broker.log(REPLIES)[0]]


async def test_a_side_effect_free_operation_skips_the_store_and_runs_again(
    broker: MemoryBroker, mesh: dict[str, Identity]
) -> None:
    runs: list[str] = []
    store = CountingStore()
    first = await send_twice(broker, mesh["front"], "back.read")
    async with running(broker, mesh["back"], back_service(runs), store) as worker:
        answers = await replies(broker, 2)
    assert len(runs) == 2  # the retry ran again: nothing was stored to answer it from
    assert worker.duplicates == 0
    assert store.calls == Counter()
    assert len(store) == 0
    assert {a.correlation_id for a in answers} == {first.correlation_id}


async def test_an_operation_with_side_effects_is_applied_once(
    broker: MemoryBroker, mesh: dict[str, Identity]
) -> None:
    runs: list[str] = []
    store = CountingStore()
    first = await send_twice(broker, mesh["front"], "back.write")
    async with running(broker, mesh["back"], back_service(runs), store) as worker:
        answers = await replies(broker, 2)
    assert runs == [first.id]
    assert worker.duplicates == 1
    assert [a.value for a in answers] == [b'{"n":1}', b'{"n":1}']
    assert store.calls["complete"] == 1
    assert store.calls["renew"] == 0  # a quick handler: no lease renewal at all


async def test_a_long_handler_keeps_its_claim_renewed(
    broker: MemoryBroker, mesh: dict[str, Identity]
) -> None:
    """Lease 300 ms, handler 700 ms: renewed about every 100 ms after the first 100 ms, so the
    retry (delivered meanwhile) finds the claim held and waits for the stored answer."""
    runs: list[str] = []
    store = CountingStore()
    first = await send_twice(broker, mesh["front"], "back.write")
    async with running(broker, mesh["back"], back_service(runs, slow_s=0.7), store,
                       lease_ms=300) as worker:
        answers = await replies(broker, 2)
    assert runs == [first.id]
    assert worker.duplicates == 1
    assert store.calls["renew"] >= 2
    assert [a.value for a in answers] == [b'{"n":1}', b'{"n":1}']


async def test_a_result_too_long_to_keep_is_answered_once_and_never_run_again(
    broker: MemoryBroker, mesh: dict[str, Identity]
) -> None:
    """A reply over what the store keeps (a DynamoDB item holds 400 KB, a Kafka message up to
    1 MB): the call is answered and kept as handled; its retry gets a clear error instead of
    a second run. (Before: the completion was refused, the first answer never left, and the
    retry ran the handler again once the claim's lease ran out.)"""
    runs: list[str] = []
    store = CountingStore(max_result_bytes=1_000)
    first = await send_twice(broker, mesh["front"], "back.export")
    async with running(broker, mesh["back"], back_service(runs), store,
                       lease_ms=300) as worker:
        answers = await replies(broker, 2)
    assert runs == [first.id]
    assert (worker.handled, worker.duplicates, worker.abandoned) == (1, 1, 0)
    answered, duplicate = answers
    assert answered.kind == "reply"
    assert decode(answered.value) == {"n": 1, "rows": "x" * 5_000}
    assert duplicate.kind == "error"
    assert decode(duplicate.value)["code"] == "result_not_kept"
    assert decode(duplicate.value)["retriable"] is False
    assert {a.correlation_id for a in answers} == {first.correlation_id}


async def test_results_too_long_to_keep_are_reported_once_an_operation(
    broker: MemoryBroker, mesh: dict[str, Identity], caplog: pytest.LogCaptureFixture
) -> None:
    runs: list[str] = []
    store = CountingStore(max_result_bytes=1_000)
    for _ in range(3):
        await send_twice(broker, mesh["front"], "back.export")
    with caplog.at_level("WARNING", logger="bus.runtime.worker"):
        async with running(broker, mesh["back"], back_service(runs), store):
            await replies(broker, 6)
    assert len(runs) == 3
    told = [r for r in caplog.records if "result_not_kept" in r.getMessage()]
    assert [r.getMessage().split(":")[0] for r in told] == ["back.export"]
