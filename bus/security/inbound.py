"""Admission of received records: every check a message passes before a handler sees it.

Order: size, envelope, signature (bound to the topic), sender's right to produce to the
topic (and, for a request, to call its operation), its right to the principal it carries
(``bus.security.principals``), freshness, replay. The first failure decides the quarantine
reason (its ``code``). Events skip the age half of freshness and the in-memory replay guard:
their replay memory is durable (``check_event_time``).
Records on a retry or dead-letter topic are checked against their base topic, derived from
the topic *name* (never from a header, which is not signed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bus.config import BusSettings
from bus.envelope import KIND_EVENT, KIND_REQUEST, Envelope, from_record
from bus.errors import MeshError
from bus.security.access import AccessPolicy
from bus.security.batch_roots import BatchRoots
from bus.security.identity import Identity
from bus.security.keys import KeyRing
from bus.security.principals import check_principal
from bus.security.replay import PossibleReplay, ReplayGuard, record_position
from bus.security.replay_countersign import check_replay
from bus.security.signing import PairOpener, StaleMessage, check_fresh, verify
from bus.transport import Record

_DERIVED = re.compile(r"^(?P<base>.+?)(?:\.retry\.\d+|\.dlt)$")


class Oversized(MeshError):
    code = "oversized"


def base_topic(topic: str) -> str:
    """``orders.requests.retry.2`` and ``orders.requests.dlt`` -> ``orders.requests``."""
    match = _DERIVED.match(topic)
    return match.group("base") if match else topic


@dataclass
class InboundGuard:
    keyring: KeyRing | None  # None: signatures are not checked (explicitly insecure)
    access: AccessPolicy
    replay: ReplayGuard
    window_ms: int
    max_value_bytes: int
    retry_allowance_ms: int = 0  # retried records keep ce_time: widen their window
    # Events: no age limit up to this (None: none at all); their replay memory is the
    # durable idempotency record (bus.delivery.replay_memory), kept at least this long.
    event_max_age_ms: int | None = None
    # Set when the policy lets this service accept per-pair MACs (bus.security.pair_mac).
    pair: PairOpener | None = None
    # Batch roots verified before (bus.security.batch_sig): a batch's signature checked once.
    roots: BatchRoots = field(default_factory=BatchRoots)

    def admit(self, record: Record, now_ms: int) -> Envelope:
        """The record's envelope if it passes every check; else raises a coded MeshError."""
        size = len(record.value or b"")
        if size > self.max_value_bytes:
            raise Oversized(f"value is {size} bytes, over {self.max_value_bytes}")
        envelope = from_record(record.headers, record.value)
        topic = base_topic(record.topic)
        if self.keyring is not None:
            verify(envelope, topic, self.keyring, self.pair, self.roots)
        self.access.check_produce(envelope.source, topic)
        if envelope.kind == KIND_REQUEST:  # the operation: its topic is every operation's
            self.access.check_call(envelope.source, envelope.type)
        if self.keyring is not None:  # who may speak for an end user (bus.security.principals)
            check_principal(envelope, self.keyring, self.access.is_edge, now_ms)
        # An operator's replay of a dead letter: the original, verified above, plus a
        # countersignature; judged on its own time and deduplicated on its own id.
        stamp = check_replay(envelope, topic, self.keyring, self.access.may_replay)
        seen_as = f"{envelope.source}/{envelope.id}" if stamp is None else stamp.dedupe_key
        seen_at = envelope.time_ms if stamp is None else stamp.time_ms
        if envelope.kind == KIND_EVENT:  # a backlog is genuine: see check_event_time
            check_event_time(seen_at, now_ms, self.window_ms, self.event_max_age_ms)
            return envelope
        window = self.window_ms + (self.retry_allowance_ms if topic != record.topic else 0)
        check_fresh(envelope.with_time(seen_at), now_ms, window)  # itself unless replayed
        self.replay.check_and_remember(
            f"{record.topic}/{seen_as}", seen_at, now_ms,
            position=record_position(record.partition, record.offset),
        )
        return envelope


def check_event_time(time_ms: int, now_ms: int, window_ms: int, max_age_ms: int | None
                     ) -> None:
    """An event is judged on the future side of the clock-skew bound only, never on its age:
    Kafka buffers through outages, and a consumer back after ten minutes or a day must handle
    its backlog. Replays of events are refused by the durable idempotency record instead,
    which is kept ``max_age_ms`` (plus the window): an event older than that could be a
    copy the record has forgotten, so it is refused as ``possible_replay``."""
    if time_ms - now_ms > window_ms:
        raise StaleMessage(f"event is {time_ms - now_ms} ms in the future, over the "
                           f"{window_ms} ms clock-skew bound")
    if max_age_ms is not None and now_ms - time_ms > max_age_ms:
        raise PossibleReplay(f"event is {now_ms - time_ms} ms old, over the {max_age_ms} ms "
                             "its replay memory is kept")


def guard_for(identity: Identity, settings: BusSettings, *, retry_allowance_ms: int = 0
              ) -> InboundGuard:
    return InboundGuard(
        keyring=identity.keyring,
        access=identity.access,
        # Remember ids as long as any record may still be admitted, retried ones included.
        replay=ReplayGuard(settings.freshness_window_ms + retry_allowance_ms,
                           settings.replay_max_entries),
        window_ms=settings.freshness_window_ms,
        max_value_bytes=settings.max_message_bytes,
        retry_allowance_ms=retry_allowance_ms,
        event_max_age_ms=settings.event_max_age_ms,
        pair=pair_opener(identity),
    )


def pair_opener(identity: Identity) -> PairOpener | None:
    """What checks per-pair MACs addressed to ``identity``: None unless its policy accepts them."""
    return identity.pair if identity.access.accepts_pair_mac(identity.service) else None
