"""The Lambda event of a Kafka event source mapping, parsed into ``bus.transport.Record``\\ s.

Two formats, one shape (AWS Lambda developer guide, "Using Lambda with Amazon MSK" and
"... with self-managed Apache Kafka"):

- MSK: ``"eventSource": "aws:kafka"`` with ``eventSourceArn`` (the cluster's ARN);
- self-managed: ``"eventSource": "SelfManagedKafka"`` with ``bootstrapServers``.

``records`` maps ``"<topic>-<partition>"`` to that partition's records, each with ``topic``,
``partition``, ``offset``, ``timestamp`` (epoch ms), ``timestampType``, base64 ``key`` and
``value`` (either may be absent or null), and ``headers``: a list of one-entry objects
``{name: [byte, ...]}``. Pure: parsing raises only ``MalformedKafkaEvent``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from bus.errors import MeshError
from bus.transport import Record

MSK_SOURCE = "aws:kafka"
SELF_MANAGED_SOURCE = "SelfManagedKafka"
# Some third-party samples spell it this way; Lambda itself sends SELF_MANAGED_SOURCE.
SELF_MANAGED_ALIASES = frozenset({SELF_MANAGED_SOURCE, "aws:SelfManagedKafka"})
TIMESTAMP_TYPES = frozenset({"CREATE_TIME", "LOG_APPEND_TIME", "NO_TIMESTAMP_TYPE"})
SourceKind = Literal["msk", "self_managed"]


class MalformedKafkaEvent(MeshError):
    """The invocation event is not a Kafka event source mapping event. Not retriable: the
    same bytes fail the same way."""

    code = "malformed_kafka_event"


@dataclass(frozen=True)
class EventRecord:
    """One record of the batch: the transport record plus what only the event carries."""

    record: Record
    timestamp_ms: int
    timestamp_type: str

    @property
    def topic_partition(self) -> str:
        return f"{self.record.topic}-{self.record.partition}"


@dataclass(frozen=True)
class KafkaEvent:
    kind: SourceKind
    source: str  # the MSK cluster ARN, or the self-managed bootstrap servers
    records: tuple[EventRecord, ...]


def parse_event(event: object) -> KafkaEvent:
    """The batch in ``event``, in the event's order (a partition's records in offset order
    as Lambda sends them); raises ``MalformedKafkaEvent`` saying what is wrong."""
    if not isinstance(event, Mapping):
        raise MalformedKafkaEvent(f"a Kafka event is a JSON object, got {type(event).__name__}")
    kind, source = _source(event)
    batches = event.get("records")
    if not isinstance(batches, Mapping):
        raise MalformedKafkaEvent("'records' must be an object keyed by 'topic-partition'")
    records: list[EventRecord] = []
    for group, entries in batches.items():
        if not isinstance(entries, list):
            raise MalformedKafkaEvent(f"records[{group!r}] must be a list")
        for index, entry in enumerate(entries):
            parsed = _record(entry, f"records[{group!r}][{index}]")
            if parsed.topic_partition != group:
                raise MalformedKafkaEvent(
                    f"records[{group!r}][{index}] is from {parsed.topic_partition!r}")
            records.append(parsed)
    return KafkaEvent(kind, source, tuple(records))


def _source(event: Mapping[str, Any]) -> tuple[SourceKind, str]:
    name = event.get("eventSource")
    if name == MSK_SOURCE:
        arn = event.get("eventSourceArn")
        if not isinstance(arn, str) or not arn.startswith("arn:"):
            raise MalformedKafkaEvent("an MSK event needs 'eventSourceArn' (the cluster ARN)")
        return "msk", arn
    if name in SELF_MANAGED_ALIASES:
        servers = event.get("bootstrapServers")
        if not isinstance(servers, str) or not servers:
            raise MalformedKafkaEvent("a self-managed Kafka event needs 'bootstrapServers'")
        return "self_managed", servers
    raise MalformedKafkaEvent(
        f"'eventSource' must be {MSK_SOURCE!r} or {SELF_MANAGED_SOURCE!r}, got {name!r}")


def _record(entry: object, where: str) -> EventRecord:
    if not isinstance(entry, Mapping):
        raise MalformedKafkaEvent(f"{where} must be an object")
    topic = entry.get("topic")
    if not isinstance(topic, str) or not topic:
        raise MalformedKafkaEvent(f"{where}.topic must be a non-empty string")
    timestamp_type = entry.get("timestampType", "NO_TIMESTAMP_TYPE")
    if timestamp_type not in TIMESTAMP_TYPES:
        raise MalformedKafkaEvent(f"{where}.timestampType {timestamp_type!r} is unknown")
    record = Record(
        topic=topic,
        partition=_count(entry.get("partition"), f"{where}.partition"),
        offset=_count(entry.get("offset"), f"{where}.offset"),
        value=_base64(entry.get("value"), f"{where}.value"),
        key=_base64(entry.get("key"), f"{where}.key"),
        headers=_headers(entry.get("headers", []), f"{where}.headers"),
    )
    timestamp = entry.get("timestamp", -1)
    if not isinstance(timestamp, int) or isinstance(timestamp, bool):
        raise MalformedKafkaEvent(f"{where}.timestamp must be an integer (epoch ms)")
    return EventRecord(record, timestamp, str(timestamp_type))


def _count(raw: object, where: str) -> int:
    """A partition or offset: a non-negative integer (some samples send "0" as a string)."""
    if isinstance(raw, str) and raw.isascii() and raw.isdigit():
        raw = int(raw)
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < 0:
        raise MalformedKafkaEvent(f"{where} must be a non-negative integer, got {raw!r}")
    return raw


def _base64(raw: object, where: str) -> bytes | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise MalformedKafkaEvent(f"{where} must be a base64 string or null")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedKafkaEvent(f"{where} is not valid base64") from exc


def _headers(raw: object, where: str) -> tuple[tuple[str, bytes], ...]:
    if not isinstance(raw, list):
        raise MalformedKafkaEvent(f"{where} must be a list of {{name: [bytes]}} objects")
    headers: list[tuple[str, bytes]] = []
    for index, entry in enumerate(raw):
        if not isinstance(entry, Mapping):
            raise MalformedKafkaEvent(f"{where}[{index}] must be an object")
        for name, values in entry.items():
            if not isinstance(values, list) or not all(
                    isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255
                    for b in values):
                raise MalformedKafkaEvent(f"{where}[{index}].{name} must be a list of bytes")
            headers.append((str(name), bytes(values)))
    return tuple(headers)


def kafka_event(
    records: Iterable[Record],
    *,
    bootstrap_servers: str | None = None,
    cluster_arn: str | None = None,
    timestamp_ms: int = 0,
) -> dict[str, Any]:
    """The event Lambda would send for ``records``: self-managed with ``bootstrap_servers``,
    MSK with ``cluster_arn`` (for tests, recorded events and direct invocations)."""
    if (bootstrap_servers is None) == (cluster_arn is None):
        raise ValueError("give exactly one of bootstrap_servers and cluster_arn")
    event: dict[str, Any] = (
        {"eventSource": SELF_MANAGED_SOURCE, "bootstrapServers": bootstrap_servers}
        if cluster_arn is None else
        {"eventSource": MSK_SOURCE, "eventSourceArn": cluster_arn})
    grouped: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        grouped.setdefault(f"{record.topic}-{record.partition}", []).append(
            _entry(record, timestamp_ms))
    event["records"] = grouped
    return event


def _entry(record: Record, timestamp_ms: int) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": timestamp_ms,
        "timestampType": "CREATE_TIME",
        "headers": [{name: list(value)} for name, value in record.headers],
    }
    if record.key is not None:
        entry["key"] = base64.b64encode(record.key).decode()
    if record.value is not None:
        entry["value"] = base64.b64encode(record.value).decode()
    return entry

