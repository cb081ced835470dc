"""One reply -> one completed operation: the step a long-lived consumer (``runner``) and a
Lambda fed by a Kafka event-source mapping both call per record.

Every reply is admitted like any mesh message (size, envelope, signature of the replying
service, its right to produce to the topic, freshness, replay) and must answer its call by the
rule every caller applies (``bus.security.reply_match``: a reply or error, from the service that
owns the operation). The operation submitted under the correlation id is in the store, and the
completion is conditional on it (still pending, same operation): a reply as another operation
is refused there (``unexpected_reply_type``). A refused reply is parked on the quarantine
topic with the reason and never recorded; a redelivered or duplicate reply changes nothing.

``record`` raises only retriable ``MeshError``s (the store or the quarantine topic is away):
the caller retries the same record later and must not commit past it. A record admitted once
is not admitted again on that retry (its id would look like a replay): the admitted envelope
is kept until the record is done.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from bus import codec
from bus.config import BusSettings
from bus.envelope import KIND_ERROR, Envelope, now_ms
from bus.errors import EnvelopeError, MeshError
from bus.runtime.client import remote_error
from bus.security.identity import Identity
from bus.security.inbound import InboundGuard, pair_opener
from bus.security.replay import ReplayGuard
from bus.security.reply_match import Expected, UnexpectedReplyType, refusal
from bus.transport import Record
from functions.shared.operations_store import OperationsStore, error_body

log = logging.getLogger(__name__)
MAX_RESULT_BYTES = 350_000  # a DynamoDB item holds 400 KB
MAX_HELD = 1_000
# Replies wait in Kafka while the recorder is down or behind: they are admitted for this long
# past the freshness window (the topic's retention). A genuine old reply can only complete its
# own still-pending operation with its own signed result, so the wider window gives a forger
# nothing.
LAG_ALLOWANCE_MS = 24 * 3600 * 1000

Outcome = Literal["completed", "duplicate", "unknown", "late", "quarantined"]
Quarantine = Callable[[Record, MeshError], Awaitable[None]]


def recorder_guard(identity: Identity, settings: BusSettings, *,
                   lag_allowance_ms: int = LAG_ALLOWANCE_MS) -> InboundGuard:
    """``bus.security.inbound.guard_for`` with the freshness window widened by
    ``lag_allowance_ms``."""
    window = settings.freshness_window_ms + lag_allowance_ms
    return InboundGuard(keyring=identity.keyring, access=identity.access,
                        replay=ReplayGuard(window, settings.replay_max_entries),
                        window_ms=window, max_value_bytes=settings.max_message_bytes,
                        pair=pair_opener(identity))


def completion_of(reply: Envelope) -> tuple[Any, dict[str, Any] | None]:
    """``(result, None)`` for a reply, ``(None, error)`` for an error reply or a result the
    store cannot keep (unreadable, or over ``MAX_RESULT_BYTES``)."""
    if reply.kind == KIND_ERROR:
        error = remote_error(reply)
        return None, error_body(error.remote_code, error.message, error.retriable)
    try:
        result = codec.decode(reply.value)
    except EnvelopeError as exc:
        return None, error_body("bad_reply", str(exc), False)
    if len(json.dumps(result, separators=(",", ":"))) > MAX_RESULT_BYTES:
        return None, error_body("result_too_large",
                                f"the result is over {MAX_RESULT_BYTES} bytes", False)
    return result, None


class ReplyRecorder:
    def __init__(self, store: OperationsStore, guard: InboundGuard,
                 quarantine: Quarantine) -> None:
        self._store = store
        self._guard = guard
        self._quarantine = quarantine
        self._held: OrderedDict[tuple[str, int, int], Envelope] = OrderedDict()
        self.counts: Counter[str] = Counter()

    async def record(self, record: Record) -> Outcome:
        where = (record.topic, record.partition, record.offset)
        reply = self._held.get(where)
        if reply is None:
            try:
                reply = self._admit(record)
            except MeshError as refusal:
                return self._counted(await self._refuse(record, refusal))
            self._held[where] = reply
            while len(self._held) > MAX_HELD:
                self._held.popitem(last=False)
        outcome = await self._complete(record, reply)
        self._held.pop(where, None)
        return self._counted(outcome)

    def _admit(self, record: Record) -> Envelope:
        reply = self._guard.admit(record, now_ms())
        # The operation it claims to answer here; the store's conditional completion checks
        # that it is the one submitted under this correlation id.
        refused = refusal(Expected.call(reply.correlation_id or "", reply.type), reply)
        if refused is not None:
            raise refused
        return reply

    async def _complete(self, record: Record, reply: Envelope) -> Outcome:
        assert reply.correlation_id is not None
        result, error = completion_of(reply)
        try:
            done = await self._store.complete(reply.correlation_id, operation=reply.type,
                                              result=result, error=error)
        except MeshError as exc:
            if exc.retriable:
                raise
            return await self._refuse(record, exc)  # the store will never take it: park it
        if done == "mismatch":
            return await self._refuse(record, UnexpectedReplyType(
                f"operation {reply.correlation_id} was not submitted as {reply.type}"))
        if done != "completed":
            log.info("reply %s for operation %s not recorded: %s", reply.id,
                     reply.correlation_id, done)
        return done

    async def _refuse(self, record: Record, refusal: MeshError) -> Outcome:
        log.warning("quarantined reply at %s:%s@%s: %s: %s", record.topic, record.partition,
                    record.offset, refusal.code, refusal)
        await self._quarantine(record, refusal)  # raises if it cannot be parked
        return "quarantined"

    def _counted(self, outcome: Outcome) -> Outcome:
        self.counts[outcome] += 1
        return outcome
