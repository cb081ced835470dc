"""Observable gauges of the mesh: circuit breaker state and consumer lag.

Each gauge is one instrument whose callback reads the sources registered with ``watch``
(held weakly: a forgotten client or worker stops being reported without an ``unwatch``).
The callback runs on the metric reader's thread (the SDK's periodic exporter), so it only
reads: ``Breakers.snapshot`` copies in one step under the GIL, and a ``LagReport`` hands
over one immutable tuple.

Instruments (OpenTelemetry naming; attribute keys from the conventions where one exists)
    ``mesh.circuit.state`` ({state}): 0 closed, 1 half-open, 2 open, per breaker, with
        ``mesh.operation`` and ``mesh.subset`` (``""`` for the primary subset). An open
        breaker whose wait is over reads 2 until the next call moves it to half-open.
    ``mesh.consumer.lag`` ({message}): records a consumer group still owes an answer for,
        per partition, with ``messaging.system``, ``messaging.consumer.group.name``,
        ``messaging.destination.name`` and ``messaging.destination.partition.id``. The
        conventions define no lag metric, and ``messaging.*`` names are theirs to define,
        so it carries the mesh's prefix like the other mesh metrics.

One ``MeshTelemetry`` (hence one set of gauges) per process and meter provider: the SDK
keeps the first observable instrument of a name and ignores a second one's callbacks.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Final, TypeVar

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from bus.telemetry.lag import LagReport
from bus.traffic.breaker import Breakers, BreakerState

T = TypeVar("T")
METRIC_CIRCUIT_STATE: Final = "mesh.circuit.state"
METRIC_CONSUMER_LAG: Final = "mesh.consumer.lag"
MESH_OPERATION: Final = "mesh.operation"
MESH_SUBSET: Final = "mesh.subset"
STATE_VALUES: Final = {
    BreakerState.CLOSED: 0,
    BreakerState.HALF_OPEN: 1,
    BreakerState.OPEN: 2,
}
# Convention attribute keys (the same constants as bus.telemetry.mesh_telemetry; not imported from
# there, which imports this module).
_SYSTEM: Final = "messaging.system"
_GROUP: Final = "messaging.consumer.group.name"
_TOPIC: Final = "messaging.destination.name"
_PARTITION: Final = "messaging.destination.partition.id"


def _members(sources: weakref.WeakSet[T]) -> list[T]:
    """A copy of ``sources``, taken on another thread than the one that adds to it."""
    for _ in range(3):
        try:
            return list(sources)
        except RuntimeError:  # changed size during the copy: a watch on the event loop
            continue
    return []


class CircuitGauge:
    def __init__(self, meter: Meter) -> None:
        self._sources: weakref.WeakSet[Breakers] = weakref.WeakSet()
        meter.create_observable_gauge(
            METRIC_CIRCUIT_STATE, callbacks=[self.observe], unit="{state}",
            description="Circuit breaker state: 0 closed, 1 half-open, 2 open",
        )

    def watch(self, breakers: Breakers) -> None:
        self._sources.add(breakers)

    def unwatch(self, breakers: Breakers) -> None:
        self._sources.discard(breakers)

    def observe(self, options: CallbackOptions | None = None) -> Iterable[Observation]:
        observations = []
        for breakers in _members(self._sources):
            for (operation, subset), state in breakers.snapshot():
                observations.append(Observation(
                    STATE_VALUES[state], {MESH_OPERATION: operation, MESH_SUBSET: subset}
                ))
        return observations


class ConsumerLagGauge:
    def __init__(self, meter: Meter) -> None:
        self._sources: weakref.WeakSet[LagReport] = weakref.WeakSet()
        meter.create_observable_gauge(
            METRIC_CONSUMER_LAG, callbacks=[self.observe], unit="{message}",
            description="Records of a partition the consumer group has not answered yet",
        )

    def watch(self, report: LagReport) -> None:
        self._sources.add(report)

    def unwatch(self, report: LagReport) -> None:
        self._sources.discard(report)

    def observe(self, options: CallbackOptions | None = None) -> Iterable[Observation]:
        observations = []
        for report in _members(self._sources):
            for lag in report.snapshot:
                observations.append(Observation(lag.lag, {
                    _SYSTEM: "kafka", _GROUP: report.group, _TOPIC: lag.topic,
                    _PARTITION: str(lag.partition),
                }))
        return observations
