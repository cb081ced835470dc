"""The event subscriber's replay memory is its idempotency store, not its process: after a
restart (a new subscriber on the same store) a redelivery is counted, a copy at another
position or on a retry topic is quarantined, a dead-lettered event is never run again, and
an event older than the freshness window is handled (no age limit)."""

from __future__ import annotations

from dataclasses import replace

from bus.config import BusSettings
from bus.delivery.idempotency import MemoryIdempotencyStore
from bus.delivery.retry_topics import RetryTopicPolicy, RetryTopics
from bus.envelope import KIND_EVENT, Envelope, new_id, now_ms, to_headers
from bus.errors import HandlerError
from bus.runtime.subscriber import EventSubscriber
from bus.security.identity import Identity
from bus.security.quarantine import H_ORIGINAL_OFFSET, H_ORIGINAL_TOPIC, H_REASON, QUARANTINE_TOPIC
from bus.service import Payload, Service
from bus.transport import Record
from bus.transport.memory import MemoryBroker, MemoryTransport
from tests.support import identities

TOPIC = "shop.events"
POLICY = RetryTopicPolicy((0,))
TOPICS = RetryTopics(TOPIC, POLICY)
DAY_MS = 24 * 3600 * 1000


class Rig:
    def __init__(self) -> None:
        self.broker = MemoryBroker()
        for topic in (TOPIC, *TOPICS.all_topics(), QUARANTINE_TOPIC):
            self.broker.create_topic(topic, 2)
        self.mesh = identities({"shop": [TOPIC], "shop2": [TOPIC],
                                "sub": [QUARANTINE_TOPIC, *TOPICS.all_topics()]})
        self.store = MemoryIdempotencyStore()  # stands for the durable table: it outlives a life
        self.ran: list[str] = []
        self.fail: dict[str, bool] = {}  # name -> retriable

    def subscriber(self) -> EventSubscriber:
        """A new life of the subscriber: its own process memory, the same store."""
        service = Service("sub")

        @service.on_event(TOPIC, "thing.happened")
        async def on_thing(payload: Payload, message: Envelope) -> None:
            name = str(payload["name"])
            if name in self.fail:
                raise HandlerError("nope", name, retriable=self.fail[name])
            self.ran.append(name)

        settings = BusSettings(service_name="sub", freshness_window_ms=3_000)
        return EventSubscriber(service, TOPIC, MemoryTransport(self.broker), settings,
                               self.mesh["sub"], policy=POLICY, store=self.store)

    def event(self, name: str, *, time_ms: int | None = None,
              identity: Identity | None = None) -> Envelope:
        envelope = Envelope(id=new_id(), source="shop", type="thing.happened", kind=KIND_EVENT,
                            value=f'{{"name":"{name}"}}'.encode(),
                            time_ms=now_ms() if time_ms is None else time_ms)
        return (identity or self.mesh["shop"]).outgoing(envelope, TOPIC)

    def quarantined(self) -> list[tuple[str, int, str]]:
        found = []
        for partition in self.broker.log(QUARANTINE_TOPIC):
            for record in partition:
                headers = dict(record.headers)
                found.append((headers[H_ORIGINAL_TOPIC].decode(),
                              int(headers[H_ORIGINAL_OFFSET]), headers[H_REASON].decode()))
        return found


def record(envelope: Envelope, topic: str = TOPIC, partition: int = 0, offset: int = 0
           ) -> Record:
    return Record(topic, partition, offset, envelope.value, headers=to_headers(envelope))


async def test_a_backlog_older_than_the_window_is_handled_once() -> None:
    rig = Rig()
    old = rig.event("old", time_ms=now_ms() - DAY_MS)
    first = rig.subscriber()
    await first._process(record(old))
    assert rig.ran == ["old"]
    assert first.quarantined == 0


async def test_after_a_restart_a_redelivery_is_counted_and_a_copy_is_quarantined() -> None:
    rig = Rig()
    original = rig.event("a")
    first = rig.subscriber()
    await first._process(record(original, offset=4))
    second = rig.subscriber()  # restarted: its in-memory guard is empty
    await second._process(record(original, offset=4))  # the same record (a rebalance)
    assert second.counts.duplicates == 1
    assert second.quarantined == 0
    await second._process(record(original, offset=9))  # written again by someone
    await second._process(record(original, partition=1, offset=4))
    await second._process(record(original, topic=TOPICS.retry_topics[0], offset=0))
    assert rig.ran == ["a"]
    assert second.quarantined == 3
    assert sorted(rig.quarantined()) == [
        (TOPIC, 4, "replayed_message"), (TOPIC, 9, "replayed_message"),
        (TOPICS.retry_topics[0], 0, "replayed_message")]


async def test_a_dead_lettered_event_is_never_run_again() -> None:
    rig = Rig()
    rig.fail["fatal"] = False  # not retriable: straight to the dead-letter topic
    fatal = rig.event("fatal")
    sub = rig.subscriber()
    await sub._process(record(fatal, offset=1))
    assert sub.counts.dead_lettered == 1
    del rig.fail["fatal"]  # even once it would succeed, a raw copy is not run
    again = rig.subscriber()
    await again._process(record(fatal, offset=1))  # redelivered: counted
    await again._process(record(fatal, offset=2))  # written back raw: refused
    assert rig.ran == []
    assert again.counts.duplicates == 1
    assert rig.quarantined() == [(TOPIC, 2, "replayed_message")]


async def test_a_retried_event_settles_on_its_retry_stage() -> None:
    rig = Rig()
    rig.fail["flaky"] = True
    flaky = rig.event("flaky")
    sub = rig.subscriber()
    await sub._process(record(flaky, offset=3))
    assert sub.counts.retried == 1
    del rig.fail["flaky"]
    [forwarded] = [r for p in rig.broker.log(TOPICS.retry_topics[0]) for r in p]
    await sub._process(forwarded)
    # the main record redelivered (its commit lost): an earlier stage, counted not parked
    await rig.subscriber()._process(record(flaky, offset=3))
    assert rig.ran == ["flaky"]
    assert rig.quarantined() == []


async def test_the_same_id_from_another_sender_is_another_event() -> None:
    rig = Rig()
    a = rig.event("a")
    other = replace(a, source="shop2", value=b'{"name":"b"}', signature=None)
    sub = rig.subscriber()
    await sub._process(record(a))
    await sub._process(record(rig.mesh["shop2"].outgoing(other, TOPIC), offset=1))
    assert rig.ran == ["a", "b"]
    assert rig.quarantined() == []
