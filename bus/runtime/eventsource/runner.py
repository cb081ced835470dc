"""Run one Kafka event source mapping batch through a service, as its worker would.

Each record goes through ``ServiceWorker``'s own per-record path: admission (size, envelope,
signature bound to the topic, the sender's right to produce, freshness, replay), parking of
refused records on ``mesh.quarantine``, the idempotency store's claim (a redelivered request
is answered from the store, never applied twice), the handler, and the signed reply to the
request's ``reply_to``. Nothing of that is copied here.

What the batch adds:

- Records are handled one after another, in the event's order (so in offset order within a
  partition): Lambda runs one invocation per partition batch at a time anyway.
- Only records whose work was left undone (the worker *abandoned* them: broker or store
  unreachable within the deadline), that raised unexpectedly, or that the invocation had no
  time left for are failures; they are named in the partial batch response. A refused (poison)
  record is parked on the quarantine topic and counts as done, as does an expired request
  (nobody waits for it) and a duplicate.
- A record from a topic the service does not serve is refused and parked too.
- Each batch gets a fresh worker, so its replay memory spans one batch: a redelivered batch
  (the mapping retries after a failure) must reach the idempotency store, not be refused as a
  replay. Across batches (and across Lambda instances, which share no memory) the store is
  what keeps a replayed request from being applied twice, so it is required: the worker
  refuses to be built without one outside insecure mode (``bus.delivery.replay_memory``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from bus.config import BusSettings
from bus.envelope import now_ms
from bus.errors import MeshError
from bus.runtime.eventsource.records import KafkaEvent
from bus.runtime.eventsource.response import batch_response
from bus.runtime.worker import ServiceWorker
from bus.security.quarantine import park
from bus.transport import Record, Transport

log = logging.getLogger(__name__)
Disposition = Literal["handled", "duplicate", "quarantined", "expired", "failed"]
PARK_TIMEOUT_S = 10.0


class UnexpectedTopic(MeshError):
    """A record from a topic this service does not serve (a misconfigured mapping, or a
    forged event): refused and parked, never retried."""

    code = "unexpected_topic"


@dataclass
class BatchResult:
    dispositions: Counter[str] = field(default_factory=Counter)
    failed: list[Record] = field(default_factory=list)

    @property
    def response(self) -> dict[str, Any]:
        return batch_response(self.failed)


class KafkaEventRunner:
    """Runs batches for the service of the workers ``new_worker`` builds (one per batch; they
    share the transport, identity, idempotency store and telemetry the factory closes over)."""

    def __init__(self, new_worker: Callable[[], ServiceWorker], transport: Transport,
                 settings: BusSettings) -> None:
        self._new_worker = new_worker
        self._transport = transport
        self._settings = settings

    async def run(self, event: KafkaEvent, *, deadline_ms: int) -> BatchResult:
        """Handle every record of ``event`` before ``deadline_ms`` (epoch ms); records not
        finished by then are failures (retried by the mapping)."""
        worker = self._new_worker()
        result = BatchResult()
        for item in event.records:
            record = item.record
            left_s = (deadline_ms - now_ms()) / 1000
            disposition: Disposition = "failed"
            if left_s > 0:
                try:
                    async with asyncio.timeout(left_s):
                        disposition = await self._one(worker, record)
                except TimeoutError:
                    log.warning("no time left for %s:%s@%s", record.topic, record.partition,
                                record.offset)
                except Exception:  # catch-all on purpose: a bug must not lose the batch;
                    # logged, counted "failed" and reported so that this record is retried
                    log.exception("failed on %s:%s@%s", record.topic, record.partition,
                                  record.offset)
            result.dispositions[disposition] += 1
            if disposition == "failed":
                result.failed.append(record)
        return result

    async def _one(self, worker: ServiceWorker, record: Record) -> Disposition:
        if record.topic != worker.topic:
            return await self._refuse(worker, record)
        before = _counts(worker)
        await worker._process(record)  # the worker's own per-record path (see module doc)
        return disposition_of(before, _counts(worker))

    async def _refuse(self, worker: ServiceWorker, record: Record) -> Disposition:
        error = UnexpectedTopic(f"{worker.service.name} serves {worker.topic}, "
                                f"not {record.topic}")
        log.warning("quarantined %s:%s@%s: %s", record.topic, record.partition,
                    record.offset, error)
        try:
            async with asyncio.timeout(PARK_TIMEOUT_S):
                await park(self._transport, record, error, by=worker.service.name,
                           max_value_bytes=self._settings.max_message_bytes)
        except (MeshError, TimeoutError) as exc:
            log.error("could not park %s:%s@%s: %s", record.topic, record.partition,
                      record.offset, exc)
            return "failed"
        return "quarantined"


Counts = tuple[int, int, int, int, int]


def _counts(worker: ServiceWorker) -> Counts:
    return (worker.abandoned, worker.quarantined, worker.expired, worker.duplicates,
            worker.handled)


def disposition_of(before: Counts, after: Counts) -> Disposition:
    """What became of the one record processed between the two counter snapshots. An
    abandoned record may have been handled first (its reply could not be sent): abandoned
    wins, then quarantined, expired, duplicate, handled."""
    abandoned, quarantined, expired, duplicates, handled = (
        now - then for now, then in zip(after, before, strict=True))
    if abandoned:
        return "failed"
    if quarantined:
        return "quarantined"
    if expired:
        return "expired"
    if duplicates:
        return "duplicate"
    if handled:
        return "handled"
    raise AssertionError("the worker processed a record without counting it")
