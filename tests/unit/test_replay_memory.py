"""The durable replay memory's pure parts: event keys, where an event was settled, the event
time rule at admission, and the rule that a secure consumer has a store."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bus.config import BusSettings
from bus.delivery.idempotency import MAX_KEY_BYTES, MemoryIdempotencyStore
from bus.delivery.replay_memory import (
    IDEMPOTENCY_TABLE_ENV,
    Settled,
    StoreRequired,
    event_idempotency_key,
    event_keep_ms,
    is_redelivery,
    require_store,
    stage_of,
)
from bus.delivery.retry_topics import RetryTopicPolicy
from bus.envelope import (
    H_REPLAY_ID,
    H_REPLAY_SIG,
    H_REPLAY_TIME,
    KIND_EVENT,
    Envelope,
    ReplyTo,
    new_id,
    to_headers,
)
from bus.runtime.subscriber import EventSubscriber
from bus.runtime.worker import ServiceWorker
from bus.security.identity import Identity
from bus.security.inbound import check_event_time, guard_for
from bus.security.replay import PossibleReplay
from bus.security.signing import StaleMessage
from bus.service import Service
from bus.transport import Record
from bus.transport.memory import MemoryBroker, MemoryTransport
from functions.shared.durable_store import durable_store
from functions.shared.dynamodb_idempotency import DynamoDBIdempotencyStore
from tests.support import identities

TOPIC = "shop.events"
DAY_MS = 24 * 3600 * 1000
NOW = 1_700_000_000_000


def event(source: str = "shop", *, time_ms: int = NOW, event_id: str | None = None) -> Envelope:
    return Envelope(id=event_id or new_id(), source=source, type="thing.happened",
                    kind=KIND_EVENT, value=b"{}", time_ms=time_ms)


def at(topic: str, partition: int, offset: int) -> Record:
    return Record(topic, partition, offset, b"{}")


# --- keys ------------------------------------------------------------------------------


def test_event_key_is_base_topic_sender_and_id() -> None:
    e = event(event_id="e-1")
    assert event_idempotency_key(TOPIC, e) == "shop.events/shop/e-1"
    assert event_idempotency_key(TOPIC, replace(e, source="other")) != \
        event_idempotency_key(TOPIC, e)
    assert event_idempotency_key("other.events", e) != event_idempotency_key(TOPIC, e)


def test_an_operator_replay_has_a_key_of_its_own() -> None:
    e = event(event_id="e-1")
    replayed = replace(e, extra=((H_REPLAY_ID, b"r-42"), (H_REPLAY_TIME, b"1"),
                                 (H_REPLAY_SIG, b"ed25519:k:sig")))
    assert event_idempotency_key(TOPIC, replayed) == "shop.events/replay:r-42"


def test_an_over_long_key_is_hashed_not_refused() -> None:
    e = event(source="s" * 2000, event_id="i" * 2000)
    key = event_idempotency_key(TOPIC, e)
    assert key.startswith("sha256:")
    assert len(key.encode()) <= MAX_KEY_BYTES
    assert key != event_idempotency_key(TOPIC, replace(e, id="j" * 2000))


def test_records_are_kept_as_long_as_any_copy_is_admitted() -> None:
    settings = BusSettings(freshness_window_ms=3_000, event_max_age_ms=DAY_MS)
    assert event_keep_ms(settings) == DAY_MS + 3_000


# --- where an event was settled --------------------------------------------------------


def test_settled_round_trips_and_rejects_foreign_results() -> None:
    settled = Settled.at("dead_lettered", at("shop.events.retry.2", 3, 17))
    assert Settled.decode(settled.encode()) == settled
    for foreign in (None, b"", b"R{}", b"Hnot-a-position", b"H1:x@t", b"\xff\xfe"):
        assert Settled.decode(foreign) is None


def test_stage_of_a_topic() -> None:
    assert stage_of("shop.events") == 0
    assert stage_of("shop.events.retry.1") == 1
    assert stage_of("shop.events.retry.12") == 12


@pytest.mark.parametrize(("settled_at", "delivery", "redelivery"), [
    (("shop.events", 0, 5), ("shop.events", 0, 5), True),  # the same record again
    (("shop.events", 0, 5), ("shop.events", 0, 9), False),  # a copy at another offset
    (("shop.events", 0, 5), ("shop.events", 1, 5), False),  # ... or partition
    (("shop.events", 0, 5), ("shop.events.retry.1", 0, 0), False),  # a copy on a retry topic
    (("shop.events.retry.1", 0, 3), ("shop.events", 0, 5), True),  # forwarded from there
    (("shop.events.retry.2", 0, 3), ("shop.events.retry.1", 2, 8), True),
    (("shop.events.retry.1", 0, 3), ("shop.events.retry.1", 0, 4), False),
])
def test_redelivery_or_copy(settled_at: tuple[str, int, int], delivery: tuple[str, int, int],
                            redelivery: bool) -> None:
    result = Settled.at("handled", at(*settled_at)).encode()
    assert is_redelivery(result, at(*delivery)) is redelivery


def test_a_result_without_a_position_is_never_parked() -> None:
    assert is_redelivery(b"", at(TOPIC, 0, 1))


# --- admission of events ---------------------------------------------------------------


def test_an_event_is_admitted_at_any_age_up_to_its_replay_memory() -> None:
    check_event_time(NOW - DAY_MS, NOW, 300_000, 7 * DAY_MS)
    check_event_time(NOW + 300_000, NOW, 300_000, 7 * DAY_MS)  # the skew bound's edge
    with pytest.raises(StaleMessage, match="future"):
        check_event_time(NOW + 300_001, NOW, 300_000, 7 * DAY_MS)
    with pytest.raises(PossibleReplay):
        check_event_time(NOW - 7 * DAY_MS - 1, NOW, 300_000, 7 * DAY_MS)


def test_the_guard_admits_an_old_event_but_not_an_old_request() -> None:
    mesh = identities({"shop": [TOPIC, "shop.requests"], "sub": []})
    guard = guard_for(mesh["sub"], BusSettings(service_name="sub", freshness_window_ms=3_000))
    old = mesh["shop"].outgoing(event(time_ms=NOW - DAY_MS), TOPIC)
    record = Record(TOPIC, 0, 1, old.value, headers=to_headers(old))
    assert guard.admit(record, NOW).id == old.id
    # Twice, and at another offset: the in-memory guard keeps no events (the store does).
    assert guard.admit(replace(record, offset=2), NOW).id == old.id
    request = mesh["shop"].outgoing(replace(old, kind="request", id=new_id(), signature=None,
                                            reply_to=ReplyTo("mesh.replies", 0)), TOPIC)
    with pytest.raises(StaleMessage):
        guard.admit(Record(TOPIC, 0, 3, request.value, headers=to_headers(request)), NOW)


# --- a secure consumer has a store -----------------------------------------------------


def test_a_secure_worker_or_subscriber_refuses_to_start_without_a_store() -> None:
    mesh = identities({"shop": [TOPIC], "sub": []})
    service = Service("sub")

    @service.on_event(TOPIC, "thing.happened")
    async def on_thing(payload: object, message: Envelope) -> None:
        return None

    transport = MemoryTransport(MemoryBroker())
    settings = BusSettings(service_name="sub")
    with pytest.raises(StoreRequired) as raised:
        ServiceWorker(service, transport, settings, mesh["sub"])
    message = str(raised.value)
    assert IDEMPOTENCY_TABLE_ENV in message
    assert "MESH_INSECURE" in message
    assert "\n" not in message
    with pytest.raises(StoreRequired):
        EventSubscriber(service, TOPIC, transport, settings, mesh["sub"],
                        policy=RetryTopicPolicy(()))
    # With a store, or insecure, they are built.
    ServiceWorker(service, transport, settings, mesh["sub"], store=MemoryIdempotencyStore())
    EventSubscriber(service, TOPIC, transport, settings, Identity.insecure("sub"),
                    policy=RetryTopicPolicy(()))
    require_store(None, Identity.insecure("sub"), "sub")


def test_a_process_gets_the_durable_store_or_one_line_naming_the_table() -> None:
    store = durable_store(BusSettings(idempotency_table="t-idem"), "orders worker")
    assert isinstance(store, DynamoDBIdempotencyStore)
    assert store.table_name == "t-idem"
    assert isinstance(durable_store(BusSettings(insecure=True), "w"), MemoryIdempotencyStore)
    with pytest.raises(StoreRequired) as raised:
        durable_store(BusSettings(), "orders worker")
    message = str(raised.value)
    assert message.startswith("orders worker: error: MESH_IDEMPOTENCY_TABLE is not set;")
    assert "MESH_INSECURE=1" in message
    assert "\n" not in message


def test_the_table_comes_from_the_environment() -> None:
    settings = BusSettings.resolve({"MESH_IDEMPOTENCY_TABLE": "stack-idempotency"})
    assert settings.idempotency_table == "stack-idempotency"
