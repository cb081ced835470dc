"""The dead-letter tool: list what sits on a dead-letter topic, and replay a dead letter.

Thin I/O over ``bus.transport.Transport``; the decisions (``dead_letter_from_record``,
``replay_envelope``) are pure functions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace

from bus.envelope import Envelope, from_record, new_id, to_headers
from bus.errors import EnvelopeError, MeshError
from bus.retry_topics import (
    H_REPLAY_OF,
    FailureHeaders,
    parse_failure_headers,
    without_failure_headers,
)
from bus.tracing import child_of
from bus.transport import Record, Transport

DEFAULT_IDLE_TIMEOUT_S = 1.0


class NotReplayable(MeshError):
    """A dead letter that cannot be replayed: unreadable envelope, or no original topic."""

    code = "not_replayable"


@dataclass(frozen=True)
class DeadLetter:
    """One record of a dead-letter topic, parsed as far as it goes.

    ``envelope`` is None when the record is not a valid envelope (``parse_error`` says why);
    the failure fields are None when the failure headers are absent or unreadable
    (``failure_error`` says why when they are present but bad).
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    envelope: Envelope | None
    parse_error: str | None
    original_topic: str | None
    error_code: str | None
    error_message: str | None
    failed_at_ms: int | None
    reason: str | None
    failure_error: str | None

    @property
    def id(self) -> str | None:
        return None if self.envelope is None else self.envelope.id


def dead_letter_from_record(record: Record) -> DeadLetter:
    """Parse a dead-letter record; never raises on bad content."""
    envelope: Envelope | None = None
    parse_error: str | None = None
    try:
        envelope = from_record(record.headers, record.value)
    except EnvelopeError as exc:
        parse_error = exc.message
    failure: FailureHeaders | None = None
    failure_error: str | None = None
    try:
        failure = parse_failure_headers(record.headers)
    except EnvelopeError as exc:
        failure_error = exc.message
    return DeadLetter(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        headers=tuple(record.headers),
        envelope=envelope,
        parse_error=parse_error,
        original_topic=None if failure is None else failure.original_topic,
        error_code=None if failure is None else failure.error_code,
        error_message=None if failure is None else failure.error_message,
        failed_at_ms=None if failure is None else failure.failed_at_ms,
        reason=None if failure is None else failure.dlt_reason,
        failure_error=failure_error,
    )


async def _read_partition(
    transport: Transport, topic: str, partition: int, limit: int, idle_timeout_s: float
) -> list[Record]:
    reader = transport.assigned_reader(topic, partition, from_beginning=True)
    records: list[Record] = []
    try:
        await reader.start()
        while len(records) < limit:
            batch = await reader.read(idle_timeout_s, max_records=limit - len(records))
            if not batch:
                break
            records.extend(batch)
    finally:
        await reader.stop()
    return records[:limit]


async def list_dead_letters(
    transport: Transport,
    dlt_topic: str,
    limit: int,
    *,
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
) -> list[DeadLetter]:
    """Up to ``limit`` dead letters of ``dlt_topic``, by partition then offset.

    Reads every partition from its start (all partitions at once, each with its own
    reader, no consumer group, nothing committed) until a read returns nothing within
    ``idle_timeout_s`` or the partition gave ``limit`` records.
    """
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if limit == 0:
        return []
    partitions = await transport.partition_count(dlt_topic)
    tasks = [
        asyncio.create_task(_read_partition(transport, dlt_topic, partition, limit, idle_timeout_s))
        for partition in range(partitions)
    ]
    try:
        batches = await asyncio.gather(*tasks)
    finally:
        # On a failure (or cancellation), stop the other readers before raising.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    records = [record for batch in batches for record in batch]
    records.sort(key=lambda record: (record.partition, record.offset))
    return [dead_letter_from_record(record) for record in records[:limit]]


def _replayable(dead_letter: DeadLetter) -> tuple[str, Envelope]:
    """The original topic and envelope of ``dead_letter``, or ``NotReplayable``."""
    envelope = dead_letter.envelope
    if envelope is None:
        raise NotReplayable(
            f"{dead_letter.topic}:{dead_letter.partition}@{dead_letter.offset} is not a valid "
            f"envelope: {dead_letter.parse_error}"
        )
    if dead_letter.original_topic is None:
        raise NotReplayable(
            f"dead letter {envelope.id} does not say its original topic"
            + (f" ({dead_letter.failure_error})" if dead_letter.failure_error else "")
        )
    return dead_letter.original_topic, envelope


def replay_envelope(dead_letter: DeadLetter, *, now_ms: int) -> Envelope:
    """The new message that replays ``dead_letter``: a new id and time, attempt 1,
    ``mesh_replay_of`` set to the dead message's id, the failure headers dropped and no
    signature; type, kind, source, value, reply-to, correlation id and content type kept,
    and a new span in the same trace. A deadline keeps its original length, counted from
    the new time (the old one has passed: a worker would drop the message as expired).

    Raises ``NotReplayable`` when the record's envelope could not be parsed or the original
    topic is unknown.
    """
    _, envelope = _replayable(dead_letter)
    deadline_ms = None
    if envelope.deadline_ms is not None:
        deadline_ms = now_ms + max(0, envelope.deadline_ms - envelope.time_ms)
    extra = tuple(
        (name, raw)
        for name, raw in without_failure_headers(envelope.extra)
        if name != H_REPLAY_OF
    )
    return replace(
        envelope,
        id=new_id(),
        time_ms=now_ms,
        deadline_ms=deadline_ms,
        attempt=1,
        signature=None,
        traceparent=None if envelope.traceparent is None else child_of(envelope.traceparent),
        extra=(*extra, (H_REPLAY_OF, envelope.id.encode("utf-8"))),
    )


def _unsigned(envelope: Envelope, topic: str) -> Envelope:
    return envelope


async def replay(
    transport: Transport,
    dead_letter: DeadLetter,
    *,
    sign: Callable[[Envelope, str], Envelope] = _unsigned,
    now_ms: Callable[[], int],
) -> str:
    """Republish ``dead_letter`` to its original topic as a new message (see
    ``replay_envelope``), passed through ``sign(envelope, topic)`` and sent with the dead
    record's key; returns the new message id once the broker has acknowledged it.

    Raises ``NotReplayable`` (nothing sent) for a dead letter that cannot be replayed.
    """
    topic, _ = _replayable(dead_letter)
    signed = sign(replay_envelope(dead_letter, now_ms=now_ms()), topic)
    await transport.send(topic, signed.value, headers=to_headers(signed), key=dead_letter.key)
    return signed.id
