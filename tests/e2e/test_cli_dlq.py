"""``meshgate dlq`` against the running stack: a dead letter is listed, shown, and replayed
as its original sender, and the live orders worker answers the replay."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bus.config import BusSettings
from bus.envelope import ReplyTo, from_record, new_request, now_ms
from bus.kafka import KafkaTransport
from bus.retry_topics import DeadLetterHop, Failure, hop_headers
from infra.deadletters import sender_identity
from infra.settings import Settings
from tests.support import MESHGATE, run

pytestmark = pytest.mark.e2e
DLT = "orders.requests.dlt"
REPLY_PARTITION = 15


@pytest.fixture
async def dlt(settings: Settings, endpoint: str) -> AsyncIterator[KafkaTransport]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    transport = KafkaTransport(BusSettings.resolve(
        bootstrap_servers=settings.kafka_bootstrap, service_name="e2e", insecure=True))
    try:
        await admin.create_topics([NewTopic(DLT, 1, 1)])
        yield transport
    finally:
        await transport.close()
        await admin.delete_topics([DLT])
        await admin.close()


async def test_list_show_and_replay_a_dead_letter(
    dlt: KafkaTransport, settings: Settings
) -> None:
    gateway = await asyncio.to_thread(sender_identity, settings, "gateway")
    order = b'{"customer":"dlq","lines":[{"sku":"a","quantity":2,"unit_price":"3.00"}]}'
    request = gateway.outgoing(new_request(
        source="gateway", operation="orders.create", value=order,
        reply_to=ReplyTo("mesh.replies", REPLY_PARTITION), deadline_ms=now_ms() + 60_000,
    ), "orders.requests")
    headers = hop_headers(request, DeadLetterHop(DLT, 1, "not_retriable"),
                          original_topic="orders.requests",
                          failure=Failure("boom", "the handler blew up", False),
                          failed_at_ms=now_ms())
    await dlt.send(DLT, request.value, headers=headers)

    listed = await asyncio.to_thread(run, [str(MESHGATE), "dlq", "list", DLT])
    assert listed.returncode == 0, listed.stderr
    [row] = [line for line in listed.stdout.splitlines() if request.id in line]
    assert "orders.create" in row
    assert "gateway" in row
    assert "boom" in row
    assert "1 dead letter(s)" in listed.stdout

    shown = await asyncio.to_thread(run, [str(MESHGATE), "dlq", "show", DLT, request.id])
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["error"]["message"] == "the handler blew up"

    replies = dlt.assigned_reader("mesh.replies", REPLY_PARTITION)
    await replies.start()
    try:
        replayed = await asyncio.to_thread(
            run, [str(MESHGATE), "dlq", "replay", DLT, request.id])
        assert replayed.returncode == 0, replayed.stderr
        assert f"replayed {request.id} as " in replayed.stdout
        answer = None
        async with asyncio.timeout(30):
            while answer is None:
                for record in await replies.read(0.5):
                    envelope = from_record(record.headers, record.value)
                    if envelope.correlation_id == request.correlation_id:
                        answer = envelope
    finally:
        await replies.stop()
    assert answer.source == "orders"
    assert answer.kind == "reply"
    assert json.loads(answer.value)["total"] == "6.00"


def test_unknown_id_is_one_clear_error(dlt: KafkaTransport) -> None:
    result = run([str(MESHGATE), "dlq", "replay", DLT, "no-such-id"])
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"meshgate: error: no dead letter with id no-such-id on {DLT}; "
        f"list them with 'meshgate dlq list {DLT}'")
