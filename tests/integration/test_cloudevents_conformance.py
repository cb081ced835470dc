"""What the mesh writes on the real broker is a CloudEvent: one request, its reply and one
event, sent by the mesh client and a worker on the real broker, read back raw, and parsed by
the CloudEvents Python SDK's Kafka binding (binary mode)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from bus.config import BusSettings
from bus.envelope import Envelope, from_record
from bus.runtime.client import MeshClient
from bus.service import Payload, Service
from bus.topics import REPLY_TOPIC
from bus.transport import Record
from bus.transport.kafka import KafkaTransport
from tests.integration.test_bus_kafka import CALLER, running
from tests.support import identities

pytestmark = pytest.mark.integration
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@pytest.fixture
async def events_topic(bootstrap: str) -> AsyncIterator[str]:
    name = f"itest{uuid.uuid4().hex[:10]}.events"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 1, 1)])
        yield name
        await admin.delete_topics([name])
    finally:
        await admin.close()


async def read_until(transport: KafkaTransport, topic: str, partitions: Sequence[int],
                     wanted: int, *, from_beginning: bool, started: asyncio.Event | None = None,
                     match: tuple[str, bytes] | None = None) -> list[Record]:
    """``wanted`` records of ``topic`` (those with the header ``match``, if given)."""
    readers = [transport.assigned_reader(topic, p, from_beginning=from_beginning)
               for p in partitions]
    found: list[Record] = []
    for reader in readers:
        await reader.start()
    if started is not None:
        started.set()
    try:
        async with asyncio.timeout(30):
            while len(found) < wanted:
                for reader in readers:
                    found += [record for record in await reader.read(0.2)
                              if match is None
                              or dict(record.headers).get(match[0]) == match[1]]
    finally:
        for reader in readers:
            await reader.stop()
    return found


def sdk_event(record: Record) -> CloudEvent:
    message = KafkaMessage(dict(record.headers), record.key, record.value or b"")
    event = from_binary(message, JSONFormat(), CloudEvent)
    assert isinstance(event, CloudEvent)
    return event


def assert_conforms(record: Record, kind: str) -> Envelope:
    envelope = from_record(record.headers, record.value)
    event = sdk_event(record)
    assert envelope.kind == kind
    assert event.get_specversion() == "1.0"
    assert event.get_id() == envelope.id
    assert event.get_source() == envelope.source
    assert event.get_type() == envelope.type
    assert event.get_time() == EPOCH + timedelta(milliseconds=envelope.time_ms)
    assert dict(record.headers)["ce_time"].endswith(b"Z")
    assert event.get_datacontenttype() == "application/json"
    expected = {"specversion", "id", "source", "type", "time", "datacontenttype"}
    assert set(event.get_attributes()) == expected | (
        {"partitionkey"} if record.key is not None else set())
    return envelope


async def test_a_request_its_reply_and_an_event_read_back_as_cloudevents(
    service_name: str, events_topic: str, bus_settings: BusSettings
) -> None:
    mesh = identities({CALLER: [f"{service_name}.requests", events_topic],
                       service_name: [REPLY_TOPIC]})
    service = Service(service_name)

    @service.operation(f"{service_name}.add")
    async def add(payload: Payload, message: Envelope) -> Payload:
        return {"sum": payload["a"] + payload["b"]}

    reader = KafkaTransport(bus_settings)
    client = MeshClient(KafkaTransport(bus_settings), bus_settings, mesh[CALLER])
    replies: asyncio.Task[list[Record]] | None = None
    try:
        # The reply topic is long: read it from its end as of now, for this service's replies.
        listening = asyncio.Event()
        replies = asyncio.create_task(read_until(
            reader, REPLY_TOPIC, range(await reader.partition_count(REPLY_TOPIC)), 1,
            from_beginning=False, started=listening, match=("ce_source", service_name.encode())))
        await asyncio.wait_for(listening.wait(), 30)
        async with running(service, bus_settings, mesh):
            answer = await client.request(f"{service_name}.add", {"a": 2, "b": 3}, timeout_s=20)
            event_id = await client.publish(events_topic, f"{service_name}.added",
                                            {"sum": answer["sum"]}, key=b"k-1")
        [request] = await read_until(reader, f"{service_name}.requests", range(3), 1,
                                     from_beginning=True)
        sent = assert_conforms(request, "request")
        assert sdk_event(request).get_data() == {"a": 2, "b": 3}
        assert request.key == (sent.correlation_id or "").encode()
        [reply] = await asyncio.wait_for(replies, 30)
        assert reply.partition == (sent.reply_to.partition if sent.reply_to else None)
        assert assert_conforms(reply, "reply").correlation_id == sent.correlation_id
        assert sdk_event(reply).get_data() == {"sum": 5}
        [event] = await read_until(reader, events_topic, [0], 1, from_beginning=True)
        assert assert_conforms(event, "event").id == event_id
        assert sdk_event(event).get_data() == {"sum": 5}
        assert sdk_event(event).get_extension("partitionkey") == "k-1"
    finally:
        if replies is not None and not replies.done():
            replies.cancel()
            await asyncio.gather(replies, return_exceptions=True)
        await client.close()
        await reader.close()
