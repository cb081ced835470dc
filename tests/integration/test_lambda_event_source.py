"""The deployed ``orders-events`` function (orders on Lambda, fed by Kafka events), invoked
directly on the emulator, which has no Kafka event source mapping.

Real signed requests (the gateway's key from the emulator's Secrets Manager) are produced to
the real broker and read back as real records; a self-managed Kafka event is built from them
and the function is invoked with it, as a mapping would. The records are produced to a scratch
topic (signed for ``orders.requests``) and presented as ``orders.requests`` records, so the
live ``orders`` worker, which consumes ``orders.requests``, cannot answer them first.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bus.config import BusSettings
from bus.envelope import Envelope, ReplyTo, from_record, new_request, now_ms, to_headers
from bus.runtime.eventsource.records import kafka_event
from bus.runtime.worker import idempotency_key
from bus.security.identity import Identity
from bus.security.quarantine import H_ORIGINAL_OFFSET, H_REASON, QUARANTINE_TOPIC
from bus.topics import REPLY_TOPIC
from bus.transport import Reader, Record
from bus.transport.kafka import KafkaTransport
from infra.deploy import aws as deploy
from infra.settings import Settings
from infra.stack.otel_env import SPANS_FILE, telemetry_dir
from tests.support import sender_identity

pytestmark = pytest.mark.integration
TOPIC = "orders.requests"
REPLY_PARTITIONS = 16
QUARANTINE_PARTITIONS = 3
WAIT_S = 30.0


@pytest.fixture
async def scratch_topic(bootstrap: str) -> AsyncIterator[str]:
    name = f"itest-events-{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 2, 1)])
        yield name
        await admin.delete_topics([name])
    finally:
        await admin.close()


@pytest.fixture
async def transport(bootstrap: str) -> AsyncIterator[KafkaTransport]:
    kafka = KafkaTransport(BusSettings.resolve(bootstrap_servers=bootstrap,
                                               service_name="itest-events"))
    try:
        yield kafka
    finally:
        await kafka.close()


def function_name(settings: Settings) -> str:
    outputs = deploy.stack_outputs(settings)
    if not outputs or "OrdersEventsFunctionName" not in outputs:
        pytest.fail("the stack has no orders-events function: run '.venv/bin/meshgate deploy'")
    return outputs["OrdersEventsFunctionName"]


def invoke(settings: Settings, name: str, event: dict[str, Any]) -> Any:
    result = deploy.client(settings, "lambda").invoke(
        FunctionName=name, Payload=json.dumps(event).encode())
    payload = json.loads(result["Payload"].read())
    assert "FunctionError" not in result, payload
    return payload


def stored(settings: Settings, key: str) -> dict[str, Any] | None:
    item: dict[str, Any] | None = deploy.client(settings, "dynamodb").get_item(
        TableName=f"{settings.stack_name}-idempotency", Key={"id": {"S": key}},
        ConsistentRead=True).get("Item")
    return item


async def read_until(readers: list[Reader], count: int, keep: Any) -> list[Record]:
    found: list[Record] = []
    deadline = time.monotonic() + WAIT_S
    while len(found) < count and time.monotonic() < deadline:
        for reader in readers:
            found += [r for r in await reader.read(0.2) if keep(r)]
    return found


async def started(readers: list[Reader]) -> list[Reader]:
    for reader in readers:
        await reader.start()
    return readers


def order(customer: str, quantity: int) -> bytes:
    return json.dumps({"customer": customer, "lines": [
        {"sku": "SKU-1", "quantity": quantity, "unit_price": "2.50"}]}).encode()


async def test_deployed_function_answers_a_kafka_batch_once_and_quarantines_a_forgery(
    infra_settings: Settings, scratch_topic: str, transport: KafkaTransport
) -> None:
    name = await asyncio.to_thread(function_name, infra_settings)
    gateway: Identity = await asyncio.to_thread(sender_identity, infra_settings, "gateway")
    reply_partition = random.randrange(REPLY_PARTITIONS)
    requests: list[Envelope] = []
    for index in range(3):
        envelope = gateway.outgoing(new_request(
            source="gateway", operation="orders.create", value=order(f"esm-{index}", index + 1),
            reply_to=ReplyTo(REPLY_TOPIC, reply_partition), deadline_ms=now_ms() + 25_000),
            TOPIC)
        requests.append(envelope)
        await transport.send(scratch_topic, envelope.value, headers=to_headers(envelope),
                             partition=index % 2)
    forged_value = order("esm-forged", 999)  # the signature covers the value: tampered
    await transport.send(scratch_topic, forged_value, headers=to_headers(requests[0]),
                         partition=1)
    produced = await read_until(await started([
        transport.assigned_reader(scratch_topic, p, from_beginning=True) for p in (0, 1)]),
        4, lambda _: True)
    assert len(produced) == 4
    records = [replace(r, topic=TOPIC) for r in produced]
    forged = next(r for r in records if r.value == forged_value)
    event = kafka_event(records, bootstrap_servers=infra_settings.kafka_bootstrap,
                        timestamp_ms=now_ms())
    assert event["eventSource"] == "SelfManagedKafka"

    replies = await started([transport.assigned_reader(REPLY_TOPIC, reply_partition)])
    quarantine = await started([transport.assigned_reader(QUARANTINE_TOPIC, p)
                                for p in range(QUARANTINE_PARTITIONS)])
    calls = {e.correlation_id: e for e in requests}

    def ours(record: Record) -> bool:
        return from_record(record.headers, record.value).correlation_id in calls

    def parked_forgery(record: Record) -> bool:
        headers = dict(record.headers)
        return (record.value == forged_value
                and headers.get(H_ORIGINAL_OFFSET) == str(forged.offset).encode())

    try:
        started_at = time.monotonic()
        first = await asyncio.to_thread(invoke, infra_settings, name, event)
        first_s = time.monotonic() - started_at
        assert first == {"batchItemFailures": []}  # the forgery is done, not failed
        answers = [from_record(r.headers, r.value) for r in
                   await read_until(replies, 3, ours)]
        assert sorted(a.correlation_id or "" for a in answers) == sorted(
            e.correlation_id or "" for e in requests)
        for answer in answers:
            request = calls[answer.correlation_id]
            body = json.loads(answer.value)
            quantity = json.loads(request.value)["lines"][0]["quantity"]
            assert answer.kind == "reply", body
            assert Decimal(body["total"]) == Decimal("2.50") * quantity
            assert answer.source == "orders"
            assert answer.signature  # signed by the function's own key
        keys = [idempotency_key(e) for e in requests]
        before = {key: stored(infra_settings, key) for key in keys}
        assert all(item is not None and item["status"]["S"] == "COMPLETED"
                   for item in before.values()), before
        parked = await read_until(quarantine, 1, parked_forgery)
        assert [dict(r.headers)[H_REASON] for r in parked] == [b"bad_signature"]

        await asyncio.sleep(1.1)  # a second completion would write a later expiry
        again = await asyncio.to_thread(invoke, infra_settings, name, event)
        assert again == {"batchItemFailures": []}
        repeated = [from_record(r.headers, r.value) for r in
                    await read_until(replies, 3, ours)]
        by_call = {a.correlation_id: a.value for a in answers}
        assert sorted(a.correlation_id or "" for a in repeated) == sorted(
            c or "" for c in by_call)
        assert all(a.value == by_call[a.correlation_id] for a in repeated)  # from the store
        after = {key: stored(infra_settings, key) for key in keys}
        assert after == before  # claimed and completed once: not applied twice
        assert len(await read_until(quarantine, 1, parked_forgery)) == 1
    finally:
        for reader in [*replies, *quarantine]:
            await reader.stop()
    print(f"first invocation (cold or warm) {first_s:.2f}s")


async def test_a_handler_on_lambda_makes_nested_calls(
    infra_settings: Settings, scratch_topic: str, transport: KafkaTransport
) -> None:
    """orders.quote asks inventory.stock through the mesh: on Lambda too, the handler gets
    the instance's mesh client (the live inventory worker answers it)."""
    name = await asyncio.to_thread(function_name, infra_settings)
    gateway: Identity = await asyncio.to_thread(sender_identity, infra_settings, "gateway")
    reply_partition = random.randrange(REPLY_PARTITIONS)
    trace_id = uuid.uuid4().hex
    request = gateway.outgoing(new_request(
        source="gateway", operation="orders.quote",
        value=json.dumps({"sku": "esm-quote-1", "quantity": 2}).encode(),
        reply_to=ReplyTo(REPLY_TOPIC, reply_partition), deadline_ms=now_ms() + 25_000,
        traceparent=f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"), TOPIC)
    await transport.send(scratch_topic, request.value, headers=to_headers(request), partition=0)
    [produced] = await read_until(await started(
        [transport.assigned_reader(scratch_topic, 0, from_beginning=True)]), 1, lambda _: True)
    event = kafka_event([replace(produced, topic=TOPIC)],
                        bootstrap_servers=infra_settings.kafka_bootstrap, timestamp_ms=now_ms())
    replies = await started([transport.assigned_reader(REPLY_TOPIC, reply_partition)])

    def ours(record: Record) -> bool:
        return from_record(record.headers, record.value).correlation_id == request.correlation_id

    assert await asyncio.to_thread(invoke, infra_settings, name, event) == {
        "batchItemFailures": []}
    [answer] = [from_record(r.headers, r.value) for r in await read_until(replies, 1, ours)]
    body = json.loads(answer.value)
    assert answer.kind == "reply", body
    assert body["sku"] == "esm-quote-1"
    assert body["quantity"] == 2
    assert Decimal(body["total"]) == Decimal(body["unit_price"]) * 2
    # The function continued the caller's trace and exported before returning: its spans,
    # and inventory's for the nested call, are in the local collector's file.
    services = await asyncio.to_thread(services_in_trace, infra_settings, trace_id,
                                       {"orders", "inventory"})
    assert {"orders", "inventory"} <= services, services


def services_in_trace(settings: Settings, trace_id: str, wanted: set[str]) -> set[str]:
    path = telemetry_dir(settings) / SPANS_FILE
    deadline = time.monotonic() + WAIT_S
    found: set[str] = set()
    while time.monotonic() < deadline and not wanted <= found:
        if path.exists():
            rows = [json.loads(line) for line in path.read_text().splitlines()]
            found = {str(row.get("service.name")) for row in rows
                     if row.get("trace_id") == trace_id}
        time.sleep(0.5)
    return found
