"""Metrics of bus.telemetry.mesh_telemetry beyond the spans: send and consume counts, the circuit
and consumer lag gauges, and the pure lag computation."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, Metric

from bus.delivery.offsets import OffsetTracker
from bus.envelope import ReplyTo, new_request, now_ms
from bus.errors import TransportError
from bus.telemetry.lag import EndOffsets, LagReport, PartitionLag, consumer_lag
from bus.telemetry.mesh_telemetry import MeshTelemetry
from bus.traffic.breaker import Breakers
from bus.traffic.model import CircuitBreaker
from bus.transport import Record
from bus.transport.memory import MemoryBroker, MemoryTransport

TOPIC = "orders.requests"


class Meters:
    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader])
        self.telemetry = MeshTelemetry("orders", meter_provider=self.provider)

    def metric(self, name: str) -> Metric | None:
        data = self.reader.get_metrics_data()
        if data is None:
            return None
        found = [m for rm in data.resource_metrics for sm in rm.scope_metrics
                 for m in sm.metrics if m.name == name]
        return found[0] if found else None

    def points(self, name: str) -> dict[frozenset[tuple[str, Any]], Any]:
        metric = self.metric(name)
        if metric is None:
            return {}
        return {frozenset((p.attributes or {}).items()): p for p in metric.data.data_points}


@pytest.fixture
def meters() -> Iterator[Meters]:
    found = Meters()
    yield found
    found.provider.shutdown()


def envelope() -> Any:
    return new_request(source="gateway", operation="orders.create", value=b"{}",
                       reply_to=ReplyTo("mesh.replies", 0), deadline_ms=now_ms() + 5000)


def test_a_send_counts_a_sent_message_and_its_duration(meters: Meters) -> None:
    tel = meters.telemetry
    with tel.publish_span(envelope(), TOPIC, 2):
        pass
    with pytest.raises(TransportError), tel.publish_span(envelope(), TOPIC):
        raise TransportError("broker away")
    ok = frozenset({"messaging.system": "kafka", "messaging.operation.type": "send",
                    "messaging.operation.name": "send", "messaging.destination.name": TOPIC,
                    "messaging.destination.partition.id": "2"}.items())
    failed = frozenset({"messaging.system": "kafka", "messaging.operation.type": "send",
                        "messaging.operation.name": "send", "messaging.destination.name": TOPIC,
                        "error.type": "transport"}.items())
    sent = meters.points("messaging.client.sent.messages")
    assert {key: point.value for key, point in sent.items()} == {ok: 1, failed: 1}
    duration = meters.metric("messaging.client.operation.duration")
    assert duration is not None
    assert duration.unit == "s"
    assert {key: point.count for key, point in meters.points(duration.name).items()} == {
        ok: 1, failed: 1}
    metric = meters.metric("messaging.client.sent.messages")
    assert metric is not None
    assert metric.unit == "{message}"


def test_consumed_messages_are_counted_per_partition(meters: Meters) -> None:
    records = [Record(TOPIC, p, o, b"") for p, o in ((0, 1), (0, 2), (1, 7))]
    meters.telemetry.count_consumed(records, "orders")
    meters.telemetry.count_consumed([], "orders")
    base = {"messaging.system": "kafka", "messaging.operation.type": "receive",
            "messaging.operation.name": "poll", "messaging.destination.name": TOPIC,
            "messaging.consumer.group.name": "orders"}
    consumed = meters.points("messaging.client.consumed.messages")
    assert {key: point.value for key, point in consumed.items()} == {
        frozenset({**base, "messaging.destination.partition.id": "0"}.items()): 2,
        frozenset({**base, "messaging.destination.partition.id": "1"}.items()): 1,
    }


def test_circuit_state_gauge_reports_every_breaker(meters: Meters) -> None:
    rule = CircuitBreaker(consecutive_failures=1, open_ms=1000, half_open_calls=1)
    breakers = Breakers(rule)
    meters.telemetry.watch_circuits(breakers)
    breakers.admit("orders.create", "", 0)
    breakers.get("orders.get", "canary").record_failure(0)  # opens
    half = breakers.get("inventory.reserve", "")
    half.record_failure(0)
    assert half.allow(2000)  # the wait is over: a trial goes through
    states = meters.points("mesh.circuit.state")
    assert {key: point.value for key, point in states.items()} == {
        frozenset({"mesh.operation": "orders.create", "mesh.subset": ""}.items()): 0,
        frozenset({"mesh.operation": "orders.get", "mesh.subset": "canary"}.items()): 2,
        frozenset({"mesh.operation": "inventory.reserve", "mesh.subset": ""}.items()): 1,
    }
    metric = meters.metric("mesh.circuit.state")
    assert metric is not None
    assert metric.unit == "{state}"
    meters.telemetry.unwatch_circuits(breakers)
    assert meters.points("mesh.circuit.state") == {}


def test_a_collected_source_is_no_longer_reported(meters: Meters) -> None:
    breakers = Breakers(CircuitBreaker())
    breakers.get("orders.create", "")
    meters.telemetry.watch_circuits(breakers)
    assert len(meters.points("mesh.circuit.state")) == 1
    del breakers
    gc.collect()
    assert meters.points("mesh.circuit.state") == {}


def test_mesh_client_watches_its_breakers(meters: Meters) -> None:
    from bus.config import BusSettings
    from bus.runtime.client import MeshClient
    from tests.support import identities

    identity = identities({"caller": ["orders.requests"]})["caller"]
    settings = BusSettings.resolve(service_name="caller")
    client = MeshClient(MemoryTransport(MemoryBroker()), settings, identity,
                        telemetry=meters.telemetry)
    client._breakers.get("orders.create", "")
    assert list(meters.points("mesh.circuit.state")) == [
        frozenset({"mesh.operation": "orders.create", "mesh.subset": ""}.items())]


def test_consumer_lag_gauge_reads_the_latest_report(meters: Meters) -> None:
    report = LagReport("orders")
    meters.telemetry.watch_lag(report)
    report.update({(TOPIC, 0): 3, (TOPIC, 1): 10}, {(TOPIC, 0): 8, (TOPIC, 1): 10})
    lag = meters.points("mesh.consumer.lag")
    base = {"messaging.system": "kafka", "messaging.consumer.group.name": "orders",
            "messaging.destination.name": TOPIC}
    assert {key: point.value for key, point in lag.items()} == {
        frozenset({**base, "messaging.destination.partition.id": "0"}.items()): 5,
        frozenset({**base, "messaging.destination.partition.id": "1"}.items()): 0,
    }
    metric = meters.metric("mesh.consumer.lag")
    assert metric is not None
    assert metric.unit == "{message}"
    report.clear()
    assert meters.points("mesh.consumer.lag") == {}


def test_consumer_lag_is_end_minus_position_never_negative() -> None:
    assert consumer_lag({("t", 0): 4, ("t", 1): 9, ("t", 2): 1},
                        {("t", 1): 7, ("t", 0): 10, ("t", 3): 5}) == (
        PartitionLag("t", 0, 6), PartitionLag("t", 1, 0))  # 2: no end; 3: not read yet
    assert consumer_lag({}, {}) == ()


def test_tracker_position_is_the_lowest_unanswered_offset() -> None:
    tracker = OffsetTracker()
    for offset in (5, 6, 7):
        tracker.started((TOPIC, 0), offset)
    tracker.finished((TOPIC, 0), 6)
    assert tracker.positions() == {(TOPIC, 0): 5}
    tracker.finished((TOPIC, 0), 5)
    tracker.finished((TOPIC, 0), 7)
    assert tracker.positions() == {(TOPIC, 0): 8}


async def test_memory_group_reader_knows_its_end_offsets() -> None:
    broker = MemoryBroker()
    broker.create_topic(TOPIC, 2)
    transport = MemoryTransport(broker)
    for _ in range(3):
        await transport.send(TOPIC, b"x", headers=[], partition=1)
    reader = transport.group_reader([TOPIC], "orders")
    await reader.start()
    assert isinstance(reader, EndOffsets)
    assert reader.end_offsets() == {(TOPIC, 0): 0, (TOPIC, 1): 3}
    assert not isinstance(transport.assigned_reader(TOPIC, 0), EndOffsets)
