"""The Kafka event runner on the in-memory transport: the worker's checks, idempotency,
quarantine and replies, and the partial batch response."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace

import pytest

from bus.config import BusSettings
from bus.delivery.idempotency import MemoryIdempotencyStore
from bus.envelope import Envelope, ReplyTo, from_record, new_request, now_ms, to_headers
from bus.errors import TransportError
from bus.runtime.eventsource.records import KafkaEvent, kafka_event, parse_event
from bus.runtime.eventsource.runner import KafkaEventRunner
from bus.runtime.worker import ServiceWorker
from bus.security.access import AccessPolicy
from bus.security.identity import Identity
from bus.security.keys import KeyRing, generate_ed25519
from bus.security.quarantine import H_REASON, QUARANTINE_TOPIC
from bus.service import Payload, Service
from bus.transport import Record
from bus.transport.memory import MemoryBroker, MemoryTransport

TOPIC = "orders.requests"
REPLIES = "mesh.replies"


class FailingReplies(MemoryTransport):
    """Replies cannot be sent (a retriable broker error); everything else works."""

    async def send(self, topic: str, value: bytes, *, headers: Sequence[tuple[str, bytes]],
                   key: bytes | None = None, partition: int | None = None) -> None:
        if topic == REPLIES:
            raise TransportError("replies: broker unavailable")
        await super().send(topic, value, headers=headers, key=key, partition=partition)


class Mesh:
    def __init__(self, transport_type: type[MemoryTransport] = MemoryTransport) -> None:
        self.broker = MemoryBroker()
        for topic, partitions in ((TOPIC, 3), (REPLIES, 2), (QUARANTINE_TOPIC, 1),
                                  ("payments.requests", 1)):
            self.broker.create_topic(topic, partitions)
        self.transport = transport_type(self.broker)
        keyring = KeyRing()
        self.identities: dict[str, Identity] = {}
        for name in ("gateway", "orders"):
            signing, verify = generate_ed25519(name)
            keyring.add(verify)
            self.identities[name] = Identity(name, signing, keyring, AccessPolicy.open())
        self.calls: list[str] = []
        self.service = Service("orders")

        @self.service.operation("orders.create")
        async def create(payload: Payload, message: Envelope) -> Payload:
            self.calls.append(message.id)
            return {"total": payload["n"] * 2}

        self.settings = BusSettings(service_name="orders")
        self.store = MemoryIdempotencyStore()
        self.runner = KafkaEventRunner(self.new_worker, self.transport, self.settings)

    def new_worker(self) -> ServiceWorker:
        return ServiceWorker(self.service, self.transport, self.settings,
                             self.identities["orders"], store=self.store)

    async def request(self, n: int, partition: int, *, deadline_ms: int | None = None,
                      topic: str = TOPIC, sender: str = "gateway") -> Envelope:
        envelope = new_request(source=sender, operation="orders.create",
                               value=json.dumps({"n": n}).encode(),
                               reply_to=ReplyTo(REPLIES, 1),
                               deadline_ms=deadline_ms or now_ms() + 5_000)
        sealed = self.identities[sender].outgoing(envelope, topic)
        await self.transport.send(topic, sealed.value, headers=to_headers(sealed),
                                  partition=partition)
        return sealed

    def records(self, topic: str = TOPIC) -> list[Record]:
        return [r for partition in self.broker.log(topic) for r in partition]

    def event(self, records: list[Record]) -> KafkaEvent:
        return parse_event(kafka_event(records, bootstrap_servers="127.0.0.1:9092"))

    def replies(self) -> list[Envelope]:
        return [from_record(r.headers, r.value) for r in self.broker.partition(REPLIES, 1)]

    def quarantined(self) -> list[str]:
        return [dict(r.headers)[H_REASON].decode() for r in self.records(QUARANTINE_TOPIC)]


def later(seconds: float) -> int:
    return now_ms() + int(seconds * 1000)


async def test_a_batch_over_partitions_is_handled_and_answered() -> None:
    mesh = Mesh()
    sent = [await mesh.request(1, 0), await mesh.request(2, 2), await mesh.request(3, 2)]
    result = await mesh.runner.run(mesh.event(mesh.records()), deadline_ms=later(10))
    assert result.response == {"batchItemFailures": []}
    assert result.dispositions == {"handled": 3}
    assert sorted(mesh.calls) == sorted(e.id for e in sent)
    replies = {r.correlation_id: json.loads(r.value) for r in mesh.replies()}
    assert replies == {e.correlation_id: {"total": n * 2} for e, n in zip(sent, (1, 2, 3),
                                                                           strict=True)}
    assert all(r.signature for r in mesh.replies())  # signed by orders


async def test_a_redelivered_batch_is_answered_from_the_store_not_applied_again() -> None:
    mesh = Mesh()
    await mesh.request(1, 0)
    await mesh.request(2, 1)
    batch = mesh.event(mesh.records())
    first = await mesh.runner.run(batch, deadline_ms=later(10))
    again = await mesh.runner.run(batch, deadline_ms=later(10))
    assert first.dispositions == {"handled": 2}
    assert again.dispositions == {"duplicate": 2}
    assert again.response == {"batchItemFailures": []}
    assert len(mesh.calls) == 2
    replies = mesh.replies()
    assert len(replies) == 4  # each request answered twice, the second time from the store
    by_call: dict[str | None, set[bytes]] = {}
    for reply in replies:
        by_call.setdefault(reply.correlation_id, set()).add(reply.value)
    assert all(len(values) == 1 for values in by_call.values())
    assert mesh.quarantined() == []


async def test_forged_and_foreign_records_are_quarantined_not_failed() -> None:
    mesh = Mesh()
    genuine = await mesh.request(1, 0)
    forged_from = mesh.records()[0]
    forged = replace(forged_from, offset=1, value=b'{"n": 1000}')  # tampered value
    await mesh.request(5, 0, topic="payments.requests")
    foreign = mesh.records("payments.requests")[0]
    result = await mesh.runner.run(mesh.event([forged_from, forged, foreign]),
                                   deadline_ms=later(10))
    assert result.dispositions == {"handled": 1, "quarantined": 2}
    assert result.response == {"batchItemFailures": []}
    assert mesh.calls == [genuine.id]
    assert sorted(mesh.quarantined()) == ["bad_signature", "unexpected_topic"]


async def test_a_replay_inside_one_batch_is_refused() -> None:
    mesh = Mesh()
    await mesh.request(1, 0)
    original = mesh.records()[0]
    copy_at_new_offset = replace(original, offset=7)
    result = await mesh.runner.run(mesh.event([original, copy_at_new_offset]),
                                   deadline_ms=later(10))
    assert result.dispositions == {"handled": 1, "quarantined": 1}
    assert mesh.quarantined() == ["replayed_message"]


async def test_undone_work_is_a_batch_item_failure_and_expired_work_is_not() -> None:
    mesh = Mesh(FailingReplies)
    # Their replies cannot be sent before their deadlines (records run one after another).
    await mesh.request(1, 0, deadline_ms=later(0.2))
    await mesh.request(2, 2, deadline_ms=later(2.5))  # each retries >= 1 s (bus.delivery.intake)
    await mesh.request(3, 1, deadline_ms=now_ms() - 1)  # nobody waits for it any more
    result = await mesh.runner.run(mesh.event(mesh.records()), deadline_ms=later(10))
    assert result.dispositions == {"failed": 2, "expired": 1}
    assert result.response == {"batchItemFailures": [
        {"itemIdentifier": {"topic-partition": "orders.requests-0", "offset": 0}},
        {"itemIdentifier": {"topic-partition": "orders.requests-2", "offset": 0}},
    ]}


async def test_records_without_time_left_are_failures() -> None:
    mesh = Mesh()
    await mesh.request(1, 0)
    await mesh.request(2, 0)
    result = await mesh.runner.run(mesh.event(mesh.records()), deadline_ms=now_ms() - 1)
    assert result.dispositions == {"failed": 2}
    assert [f["itemIdentifier"]["offset"] for f in result.response["batchItemFailures"]] == [0, 1]
    assert mesh.calls == []


@pytest.mark.parametrize("partition", [0, 2])
async def test_the_reply_goes_to_the_requested_partition(partition: int) -> None:
    mesh = Mesh()
    await mesh.request(4, partition)
    await mesh.runner.run(mesh.event(mesh.records()), deadline_ms=later(10))
    assert [json.loads(r.value) for r in mesh.replies()] == [{"total": 8}]
    assert mesh.broker.partition(REPLIES, 0) == []
