"""The dead-letter tool: list what sits on a dead-letter topic, and replay a dead letter.

A replay republishes the dead letter's *original* record, unchanged and still signed by its
sender, to the base topic named by the dead-letter topic (never by a header), countersigned
by an operator (``bus.security.replay_countersign``). Nothing is published unless the original
verifies against that base topic with the keyring, its sender may produce there, it is an
event, and the operator may replay onto the topic: the tool cannot make anyone say anything.

Thin I/O over ``bus.transport.Transport``; the decisions (``dead_letter_from_record``,
``plan_replay``) are pure functions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace

from bus.delivery.retry_topics import (
    DLT_SUFFIX,
    FailureHeaders,
    parse_failure_headers,
    without_failure_headers,
)
from bus.envelope import KIND_EVENT, Envelope, Headers, from_record, new_id, to_headers
from bus.errors import EnvelopeError, MeshError
from bus.security.access import AccessPolicy, NotAllowed
from bus.security.inbound import base_topic
from bus.security.keys import KeyRing, SigningKey, UnknownKeyId
from bus.security.replay_countersign import ReplayNotAllowed, countersign, without_replay_headers
from bus.security.signing import SignatureError, verify
from bus.transport import Record, Transport

DEFAULT_IDLE_TIMEOUT_S = 1.0


class NotReplayable(MeshError):
    """A dead letter the tool refuses to replay; ``reason`` is the code of what failed
    (``missing_signature``, ``bad_signature``, ``wrong_topic``, ...)."""

    code = "not_replayable"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


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


@dataclass(frozen=True)
class ReplayPlan:
    """What a replay sends: the original record plus the countersignature, to ``topic``."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers
    original_id: str
    replay_id: str
    source: str


def _where(dead_letter: DeadLetter) -> str:
    return f"{dead_letter.topic}:{dead_letter.partition}@{dead_letter.offset}"


@dataclass(frozen=True)
class Replayer:
    """Who replays (``operator``, with its own key) and what it checks against."""

    keyring: KeyRing
    access: AccessPolicy
    operator: str
    operator_key: SigningKey

    def plan(self, dead_letter: DeadLetter, *, now_ms: int,
             replay_id: str | None = None) -> ReplayPlan:
        """The replay of ``dead_letter``, or ``NotReplayable`` with the reason.

        The destination is the base topic of the dead-letter topic's *name*; the failure
        header ``mesh_original_topic`` (unsigned) must agree with it. The original must
        verify against that topic with the keyring (missing, malformed, unknown-key, bad
        and impersonating signatures are refused with their own code), be an event
        (requests are never dead-lettered: their caller stops waiting at the deadline), and
        its sender must be allowed to produce there. The operator must be allowed to
        replay onto it, with a key the keyring gives to the operator.
        """
        base, envelope = _dead_letter_of(dead_letter)
        try:
            verify(envelope, base, self.keyring)
            self.access.check_produce(envelope.source, base)
        except (SignatureError, UnknownKeyId, NotAllowed) as exc:
            raise NotReplayable(exc.code, f"{envelope.id} as sent to {base}: "
                                f"{exc.message}") from exc
        if not self.access.may_replay(self.operator, base):
            raise NotReplayable(ReplayNotAllowed.code, f"{self.operator} may not replay onto "
                                f"{base} (policy: operators.{self.operator}.replay)")
        key_id = self.operator_key.key_id
        if key_id not in self.keyring or self.keyring.get(key_id).service != self.operator:
            raise NotReplayable("operator_key_unknown", f"key {key_id} is not published as "
                                f"{self.operator}'s in the keyring (run meshgate deploy)")
        original = replace(envelope, attempt=1, extra=without_replay_headers(
            without_failure_headers(envelope.extra)))
        replay_id = replay_id or new_id()
        stamp = countersign(original, base, self.operator_key, replay_id=replay_id,
                            time_ms=now_ms)
        return ReplayPlan(topic=base, key=dead_letter.key, value=original.value,
                          headers=[*to_headers(original), *stamp], original_id=envelope.id,
                          replay_id=replay_id, source=envelope.source)

    def plan_first(self, candidates: Sequence[DeadLetter], *, now_ms: int) -> ReplayPlan:
        """The plan for the latest of ``candidates`` (dead letters sharing an id) that can
        be replayed: a forged copy next to a genuine one is never the one sent. Raises the
        latest one's ``NotReplayable`` when none can."""
        refusal: NotReplayable | None = None
        for letter in reversed(candidates):
            try:
                return self.plan(letter, now_ms=now_ms)
            except NotReplayable as exc:
                refusal = refusal or exc
        if refusal is None:
            raise ValueError("no dead letters to choose from")
        raise refusal


def _dead_letter_of(dead_letter: DeadLetter) -> tuple[str, Envelope]:
    """The base topic and envelope of a dead letter whose record says where it failed,
    consistently with the dead-letter topic's name; ``NotReplayable`` otherwise."""
    topic = dead_letter.topic
    base = base_topic(topic)
    if not topic.endswith(DLT_SUFFIX) or base == topic:
        raise NotReplayable("not_a_dead_letter_topic",
                            f"{topic} is not a dead-letter topic (<topic>{DLT_SUFFIX})")
    envelope = dead_letter.envelope
    if envelope is None:
        raise NotReplayable("bad_envelope", f"{_where(dead_letter)} is not a valid envelope: "
                                            f"{dead_letter.parse_error}")
    if dead_letter.original_topic is None:
        raise NotReplayable("not_a_dead_letter", f"{envelope.id} has no readable failure "
                            f"headers ({dead_letter.failure_error or 'none'})")
    if dead_letter.original_topic != base:
        raise NotReplayable("wrong_topic", f"{envelope.id} says it failed on "
                            f"{dead_letter.original_topic!r}, but {topic} holds dead letters "
                            f"of {base}")
    if envelope.kind != KIND_EVENT:
        raise NotReplayable("not_an_event", f"{envelope.id} is a {envelope.kind}: only events "
                            "are replayed (a request's caller stopped waiting at its deadline)")
    return base, envelope


async def send_replay(transport: Transport, plan: ReplayPlan) -> str:
    """Publish ``plan``; returns its replay id once the broker has acknowledged it."""
    await transport.send(plan.topic, plan.value, headers=plan.headers, key=plan.key)
    return plan.replay_id
