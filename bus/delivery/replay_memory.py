"""The durable replay memory: what a consumer's idempotency record is keyed on and what it
keeps, and the rule that a secure consumer has one.

Events are admitted without an age limit (a backlog that waited out an outage is genuine),
so their replay protection is the idempotency store's record, never a process's memory:

- ``event_idempotency_key``: ``{base_topic}/{source}/{id}``. The base topic, so a copy on a
  retry topic is the same message; the sender, because ids are unique per source only. The
  one place that decides what counts as "the same event" (an operator's countersigned
  replay is another: ``{base_topic}/replay:{replay_id}``).
- The completed record keeps where the event was first settled (``Settled``): handled, or
  dead-lettered (terminal too, so a raw copy written back is not run again). A later
  delivery of that same record, or of a record of an earlier stage that was forwarded from
  (its commit lost in a rebalance), is a redelivery; anything else is a copy someone wrote
  again: a replay.
- The record is kept ``event_keep_ms``: longer than any copy can still be admitted.

Pure, except ``require_store`` (raises).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Literal

from bus.config import BusSettings
from bus.delivery.idempotency import MAX_KEY_BYTES, IdempotencyStore
from bus.envelope import Envelope
from bus.errors import MeshError
from bus.security.identity import Identity
from bus.security.replay_countersign import parse_stamp
from bus.transport import Record

IDEMPOTENCY_TABLE_ENV = "MESH_IDEMPOTENCY_TABLE"
Marker = Literal["handled", "dead_lettered"]
_MARKS: dict[Marker, bytes] = {"handled": b"H", "dead_lettered": b"D"}
_STAGE = re.compile(r"\.retry\.(\d+)$")


class StoreRequired(MeshError):
    """A consumer outside insecure mode was built without an idempotency store."""

    code = "idempotency_store_required"


def require_store(store: IdempotencyStore | None, identity: Identity, who: str) -> None:
    """Refuse to run ``who`` without a store unless ``identity`` is insecure (no keyring)."""
    if store is None and identity.keyring is not None:
        raise StoreRequired(
            f"{who}: error: no idempotency store, so replays and redeliveries could run "
            f"twice; set {IDEMPOTENCY_TABLE_ENV} to its DynamoDB table (a library caller "
            "passes store=), or run insecure (MESH_INSECURE=1: no signatures and no replay "
            "protection, tests only)")


def event_idempotency_key(base_topic: str, event: Envelope) -> str:
    """The key of the durable record of ``event``, an *admitted* event of ``base_topic``.

    An operator's replay of a dead letter (``bus.security.replay_countersign``; admission has
    verified its countersignature, or refused it) is keyed on its replay id, so it runs once more,
    once; copies of that replay share its key. Keys over the store's limit are hashed, never
    refused."""
    stamp = parse_stamp(event.extra)
    if stamp is not None:
        key = f"{base_topic}/{stamp.dedupe_key}"
    else:
        key = f"{base_topic}/{event.source}/{event.id}"
    if len(key.encode("utf-8", "surrogatepass")) <= MAX_KEY_BYTES:
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def event_keep_ms(settings: BusSettings) -> int:
    """How long an event's record is kept: an event is admitted up to ``event_max_age_ms``
    after its time, which is at most ``freshness_window_ms`` ahead of now."""
    return settings.event_max_age_ms + settings.freshness_window_ms


def stage_of(topic: str) -> int:
    """0 for a base topic, ``n`` for ``<base>.retry.<n>``."""
    match = _STAGE.search(topic)
    return int(match.group(1)) if match else 0


@dataclass(frozen=True)
class Settled:
    """How and where an event was settled: the record that was handled or dead-lettered."""

    marker: Marker
    topic: str
    partition: int
    offset: int

    @classmethod
    def at(cls, marker: Marker, record: Record) -> Settled:
        return cls(marker, record.topic, record.partition, record.offset)

    def encode(self) -> bytes:
        return _MARKS[self.marker] + f"{self.partition}:{self.offset}@{self.topic}".encode()

    @classmethod
    def decode(cls, result: bytes | None) -> Settled | None:
        """None for a result this module did not write (e.g. an empty one)."""
        if not result:
            return None
        markers = {mark: name for name, mark in _MARKS.items()}
        marker = markers.get(result[:1])
        try:
            where, _, topic = result[1:].decode().partition("@")
            partition, _, offset = where.partition(":")
            if marker is None or not topic:
                return None
            return cls(marker, topic, int(partition), int(offset))
        except (UnicodeDecodeError, ValueError):
            return None

    def is_redelivery(self, record: Record) -> bool:
        """Whether ``record`` (a delivery of the settled event) may be a legitimate
        redelivery: the very record settled, or one of an earlier stage that was forwarded
        from. Only the broker assigns offsets, so a copy cannot land on those positions."""
        if (record.topic, record.partition, record.offset) == (
                self.topic, self.partition, self.offset):
            return True
        return stage_of(record.topic) < stage_of(self.topic)


def is_redelivery(result: bytes | None, record: Record) -> bool:
    """``Settled.is_redelivery`` of a stored result; an unreadable result (written before
    positions were kept) cannot tell, so it counts as a redelivery (never run, never parked)."""
    settled = Settled.decode(result)
    return settled is None or settled.is_redelivery(record)
