"""Mesh keys rotate on the running stack under load, with no failed call.

While HTTP calls run through the emulated API Gateway (``POST /v1/orders``: gateway Lambda
-> orders worker; ``GET /v1/products/{sku}``: gateway -> inventory, and orders.quote, whose
handler asks inventory itself), ``meshgate keys rotate orders gateway`` rotates the key of
a worker (orders) and of the Lambda signer (gateway) with a short grace. Every call must
succeed; afterwards a message signed with either retired key is quarantined as
``unknown_key_id`` by the live workers, and the same message signed with the new key is
answered (the control).

This rotates the shared demo stack's keys: every other test reads the current keys from
Secrets Manager and the keyring file when it runs, never a copy from before.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bus.envelope import H_CORRELATION, H_ID, ReplyTo, new_request, now_ms, to_headers
from bus.security.keys import SigningKey
from bus.security.quarantine import H_REASON, QUARANTINE_TOPIC
from bus.security.signing import sign
from bus.topics import REPLY_TOPIC
from infra.keys import mesh_keys
from infra.local.smoke import DEMO_ORDER
from infra.settings import Settings
from proof.attack.bus_probe import end_offsets
from tests.e2e.edge_support import token
from tests.support import MESHGATE, run

pytestmark = pytest.mark.e2e
GRACE_S = 5  # the local stack reloads keys every 2 s
THREADS = 3
WAIT_S = 30.0


@dataclass
class Load:
    """Bounded HTTP load in threads; every answer's outcome counted."""

    endpoint: str
    bearer: str
    stop: threading.Event = field(default_factory=threading.Event)
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def one(self, client: httpx.Client, n: int) -> None:
        if n % 2 == 0:
            answer = client.post(f"{self.endpoint}/v1/orders", json=DEMO_ORDER)
            ok = answer.status_code == 201
        else:  # inventory, and orders.quote asking inventory (orders' own nested call)
            answer = client.get(f"{self.endpoint}/v1/products/sku-{n % 7}",
                                params={"quantity": 2},
                                headers={"authorization": f"Bearer {self.bearer}"})
            ok = answer.status_code == 200 and answer.json().get("partial") is False
        with self.lock:
            self.calls += 1
            self.outcomes[str(answer.status_code)] += 1
            if not ok:
                self.failures.append(f"{answer.status_code} {answer.text[:300]}")

    def worker(self, index: int) -> None:
        with httpx.Client(timeout=30) as client:
            n = index
            while not self.stop.is_set():
                try:
                    self.one(client, n)
                except (httpx.HTTPError, ValueError) as exc:  # a failed call, not a dead thread
                    with self.lock:
                        self.calls += 1
                        self.outcomes[type(exc).__name__] += 1
                        self.failures.append(repr(exc))
                n += THREADS


@dataclass(frozen=True)
class Probe:
    topic: str
    source: str
    operation: str


async def _sent(probe: Probe, key: SigningKey, bootstrap: str) -> str:
    envelope = new_request(source=probe.source, operation=probe.operation,
                           value=b'{"sku": "rot-1"}', reply_to=ReplyTo(REPLY_TOPIC, 0),
                           deadline_ms=now_ms() + 20_000)
    signed = sign(envelope, probe.topic, key)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await asyncio.wait_for(producer.start(), 10)
    try:
        await asyncio.wait_for(producer.send_and_wait(
            probe.topic, signed.value, headers=to_headers(signed)), 10)
    finally:
        await producer.stop()
    return envelope.id


async def _ends(bootstrap: str, topics: list[str]) -> dict[TopicPartition, int]:
    return await end_offsets(bootstrap, topics)


async def _find(bootstrap: str, since: dict[TopicPartition, int], header: str,
                wanted: set[str]) -> dict[str, dict[str, bytes]]:
    """The headers of the records after ``since`` whose ``header`` is one of ``wanted``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await asyncio.wait_for(consumer.start(), 10)
    found: dict[str, dict[str, bytes]] = {}
    try:
        consumer.assign(list(since))
        for tp, offset in since.items():
            consumer.seek(tp, offset)
        deadline = time.monotonic() + WAIT_S
        while set(found) != wanted and time.monotonic() < deadline:
            batches = await asyncio.wait_for(consumer.getmany(timeout_ms=300), 10)
            for records in batches.values():
                for record in records:
                    headers = {k: v for k, v in record.headers or () if v is not None}
                    value = headers.get(header, b"").decode()
                    if value in wanted:
                        found[value] = headers
    finally:
        await consumer.stop()
    return found


async def _judge(bootstrap: str, old: dict[Probe, SigningKey], new: dict[Probe, SigningKey]
                 ) -> tuple[dict[str, str], set[str]]:
    """Send each probe signed with the retired and with the new key: the quarantine
    reasons of the retired ones, and which new ones were answered."""
    quarantine = await _ends(bootstrap, [QUARANTINE_TOPIC])
    replies = {tp: end for tp, end in (await _ends(bootstrap, [REPLY_TOPIC])).items()
               if tp.partition == 0}
    retired = {await _sent(probe, key, bootstrap): probe.topic for probe, key in old.items()}
    control = {await _sent(probe, key, bootstrap) for probe, key in new.items()}
    parked = await _find(bootstrap, quarantine, H_ID, set(retired) | control)
    answered = await _find(bootstrap, replies, H_CORRELATION, control)
    reasons = {retired[i]: h[H_REASON].decode() for i, h in parked.items() if i in retired}
    reasons.update({f"control {i}": h[H_REASON].decode() for i, h in parked.items()
                    if i in control})
    return reasons, set(answered)


def test_keys_rotate_under_load_with_no_failed_call(settings: Settings, endpoint: str) -> None:
    probes = {Probe("inventory.requests", "orders", "inventory.stock"): "orders",
              Probe("orders.requests", "gateway", "orders.quote"): "gateway"}
    before = {probe: mesh_keys.read_secret(settings, service).current
              for probe, service in probes.items()}
    load = Load(endpoint, token(settings))
    threads = [threading.Thread(target=load.worker, args=(i,), daemon=True)
               for i in range(THREADS)]
    for thread in threads:
        thread.start()
    try:
        started = time.monotonic()
        while load.calls < 6 and time.monotonic() - started < WAIT_S:
            time.sleep(0.2)
        calls_before = load.calls
        result = run([str(MESHGATE), "keys", "rotate", "orders", "gateway",
                      "--grace", str(GRACE_S)], timeout_s=300)
        during = load.calls - calls_before
        time.sleep(2 * GRACE_S / 5)  # and a little after the old keys left the keyring
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(60)
    print(result.stdout)
    print(f"calls: {load.calls} ({during} during the rotation), outcomes {dict(load.outcomes)}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rotated orders" in result.stdout
    assert "rotated gateway" in result.stdout
    assert load.failures == [], load.failures[:5]
    assert during >= 10  # the load really ran through every step

    after = {probe: mesh_keys.read_secret(settings, service).current
             for probe, service in probes.items()}
    ring = mesh_keys.require_published(settings)
    for probe in probes:
        assert after[probe].key_id != before[probe].key_id
        assert before[probe].key_id not in ring
        assert after[probe].key_id in ring
    reasons, answered = asyncio.run(_judge(settings.kafka_bootstrap, before, after))
    assert reasons == {"inventory.requests": "unknown_key_id",
                       "orders.requests": "unknown_key_id"}
    assert len(answered) == 2  # the same messages signed with the new keys were answered
