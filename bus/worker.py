"""A long-lived service worker: a consumer-group member that handles requests and replies.

Each record is admitted (size, envelope, signature, sender, freshness, replay) or parked on
the quarantine topic; admitted requests run under the idempotency store's claim, so a
redelivered message gets the stored reply instead of a second application. Offsets are
committed only after the replies of a batch have been acknowledged, so a worker that dies
mid-batch leaves its records to the next group member.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from bus.config import BusSettings
from bus.envelope import KIND_ERROR, KIND_REQUEST, Envelope, now_ms, reply_for, to_headers
from bus.errors import EnvelopeError, MeshError
from bus.idempotency import IdempotencyStore
from bus.identity import Identity
from bus.inbound import guard_for
from bus.quarantine import park
from bus.retry import Backoff, RetryBudget, call_with_retries
from bus.service import Outcome, Service
from bus.telemetry import MeshTelemetry
from bus.transport import Record, Transport

log = logging.getLogger(__name__)
T = TypeVar("T")
POLL_S = 0.5
DEFAULT_LEASE_MS = 30_000
KEEP_RESULTS_MS = 24 * 3600 * 1000
STEP_BACKOFF = Backoff(base_s=0.1, cap_s=2.0, max_attempts=12)


class UnexpectedKind(EnvelopeError):
    code = "unexpected_kind"


def idempotency_key(request: Envelope) -> str:
    """Retries of one call share the correlation id (signed), so they share the key."""
    return f"{request.source}:{request.correlation_id or request.id}"


def stored_result(outcome: Outcome) -> bytes:
    assert outcome.reply is not None
    return (b"E" if outcome.reply.kind == KIND_ERROR else b"R") + outcome.reply.value


class ServiceWorker:
    def __init__(
        self,
        service: Service,
        transport: Transport,
        settings: BusSettings,
        identity: Identity,
        *,
        store: IdempotencyStore | None = None,
        group_id: str | None = None,
        telemetry: MeshTelemetry | None = None,
    ) -> None:
        if identity.service != service.name:
            raise ValueError(f"identity {identity.service!r} cannot run {service.name!r}")
        self.service = service
        self._transport = transport
        self._settings = settings
        self._identity = identity
        self._guard = guard_for(identity, settings)
        self._store = store
        self._telemetry = telemetry or MeshTelemetry(service.name)
        self._group_id = group_id or service.name
        # Retries here protect our own broker and store, not a downstream service: a wide
        # budget, bounded in time by each request's deadline.
        self._budget = RetryBudget(ratio=1.0, min_retries_per_s=20.0)
        self._rng = random.Random()
        self.handled = 0
        self.duplicates = 0
        self.quarantined = 0
        self.expired = 0
        self.abandoned = 0

    @property
    def rejected(self) -> int:
        return self.quarantined + self.expired

    async def run(self, stop: asyncio.Event) -> None:
        reader = self._transport.group_reader([self.service.request_topic], self._group_id)
        await reader.start()
        log.info("%s worker consuming %s", self.service.name, self.service.request_topic)
        try:
            while not stop.is_set():
                try:
                    records = await reader.read(POLL_S)
                except MeshError as exc:
                    log.warning("fetch failed, retrying: %s", exc)
                    await asyncio.sleep(POLL_S)
                    continue
                for record in records:
                    await self._process(record)
                await reader.commit(records)
        finally:
            await reader.stop()

    async def _process(self, record: Record) -> None:
        now = now_ms()
        try:
            request = self._guard.admit(record, now)
            if request.kind != KIND_REQUEST or request.reply_to is None:
                raise UnexpectedKind(f"a {request.kind} on the request topic")
        except MeshError as exc:
            await self._quarantine(record, exc, now)
            return
        if request.expired(now):
            self.expired += 1
            log.info("dropped %s: deadline passed before it was read", request.id)
            return
        with self._telemetry.process_span(request, record.topic, record.partition,
                                          self._group_id, offset=record.offset,
                                          key=record.key) as scope:
            outcome = await self._handle_once(request, now)
            if outcome is not None and outcome.error_code:
                scope.fail(outcome.error_code)

    async def _handle_once(self, request: Envelope, now: int) -> Outcome | None:
        """Handle ``request`` unless the store says it was (or is being) handled already.

        Each infrastructure step (claim, record the result, reply) is retried within the
        request's deadline; when one cannot succeed the request is abandoned (the caller sees
        its own timeout) and the worker goes on: a broken dependency never kills it.
        """
        deadline = request.deadline_ms or now + DEFAULT_LEASE_MS
        key = idempotency_key(request)
        store = self._store
        token: str | None = None
        try:
            if store is not None:
                claim = await self._retrying(
                    lambda: store.begin(key, now_ms=now_ms(), lease_ms=max(deadline - now, 1)),
                    deadline)
                if claim.status != "claimed":
                    self.duplicates += 1
                    if claim.status == "completed" and claim.result is not None:
                        await self._reply(request, self._rebuild(request, claim.result), deadline)
                    return None
                token = claim.token
            outcome = await self.service.handle(request)
            self.handled += 1
            if store is not None and token is not None:
                held = token
                if outcome.retriable or outcome.reply is None:
                    await self._retrying(lambda: store.release(key, token=held), deadline)
                else:
                    result = stored_result(outcome)
                    await self._retrying(lambda: store.complete(
                        key, result, token=held, now_ms=now_ms(), keep_ms=KEEP_RESULTS_MS),
                        deadline)
            if outcome.reply is not None:
                await self._reply(request, outcome.reply, deadline)
            return outcome
        except MeshError as exc:
            self.abandoned += 1
            log.error("abandoned %s (%s): %s: %s", request.id, request.type, exc.code, exc)
            return None

    async def _quarantine(self, record: Record, error: MeshError, now: int) -> None:
        self.quarantined += 1
        self._telemetry.count_quarantined(error.code, record.topic)
        log.warning("quarantined %s:%s@%s: %s: %s", record.topic, record.partition,
                    record.offset, error.code, error)
        try:
            await self._retrying(lambda: park(
                self._transport, record, error, by=self.service.name,
                max_value_bytes=self._settings.max_message_bytes), now + DEFAULT_LEASE_MS)
        except MeshError as exc:
            log.error("could not park %s:%s@%s on the quarantine topic: %s", record.topic,
                      record.partition, record.offset, exc)

    def _rebuild(self, request: Envelope, stored: bytes) -> Envelope:
        """A fresh reply (new id and time) carrying the stored result of a duplicate."""
        return reply_for(request, source=self.service.name, value=stored[1:],
                         error=stored[:1] == b"E")

    async def _reply(self, request: Envelope, reply: Envelope, deadline_ms: int) -> None:
        assert request.reply_to is not None
        target = request.reply_to
        with self._telemetry.publish_span(reply, target.topic, target.partition):
            sealed = self._identity.outgoing(self._telemetry.stamp(reply), target.topic)
            await self._retrying(lambda: self._transport.send(
                target.topic, sealed.value, headers=to_headers(sealed), partition=target.partition,
            ), deadline_ms)

    async def _retrying(self, step: Callable[[], Awaitable[T]], deadline_ms: int) -> T:
        """Run ``step``, retrying retriable errors with backoff until ``deadline_ms``."""
        self._budget.record_request(asyncio.get_running_loop().time())

        async def attempt(_number: int) -> T:
            return await step()

        return await call_with_retries(
            attempt, backoff=STEP_BACKOFF, budget=self._budget,
            deadline_ms=max(deadline_ms, now_ms() + 1000), now_ms=now_ms, sleep=asyncio.sleep,
            rng=self._rng,
        )
