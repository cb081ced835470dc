"""What every consumer of the mesh does with a record before and around its handler:
admission (or parking on the quarantine topic) and infrastructure steps retried within a
deadline. Shared by the request worker and the event subscriber."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from bus.config import BusSettings
from bus.delivery.retry import Backoff, RetryBudget, call_with_retries
from bus.envelope import Envelope, now_ms
from bus.errors import MeshError
from bus.security.inbound import InboundGuard
from bus.security.quarantine import park
from bus.telemetry.mesh_telemetry import MeshTelemetry
from bus.transport import Record, Transport

log = logging.getLogger(__name__)
T = TypeVar("T")
PARK_WITHIN_MS = 30_000
STEP_BACKOFF = Backoff(base_s=0.1, cap_s=2.0, max_attempts=12)


class Intake:
    def __init__(
        self,
        service: str,
        transport: Transport,
        settings: BusSettings,
        guard: InboundGuard,
        telemetry: MeshTelemetry,
    ) -> None:
        self._service = service
        self._transport = transport
        self._settings = settings
        self._guard = guard
        self._telemetry = telemetry
        # These retries protect our own broker and store, not a downstream service: a wide
        # budget, bounded in time by each step's deadline.
        self._budget = RetryBudget(ratio=1.0, min_retries_per_s=20.0)
        self._rng = random.Random()
        self.quarantined = 0

    async def admit(self, record: Record, expect_kind: str) -> Envelope | None:
        """The record's envelope, or None when it was refused and parked with the reason."""
        now = now_ms()
        try:
            envelope = self._guard.admit(record, now)
            if envelope.kind != expect_kind:
                raise UnexpectedKind(f"a {envelope.kind} where a {expect_kind} belongs")
        except MeshError as exc:
            await self._park(record, exc, now)
            return None
        return envelope

    async def refuse(self, record: Record, error: MeshError) -> None:
        """Park an admitted record that a later check refused (e.g. a replayed event)."""
        await self._park(record, error, now_ms())

    async def _park(self, record: Record, error: MeshError, now: int) -> None:
        self.quarantined += 1
        self._telemetry.count_quarantined(error.code, record.topic)
        log.warning("quarantined %s:%s@%s: %s: %s", record.topic, record.partition,
                    record.offset, error.code, error)
        try:
            await self.retrying(lambda: park(
                self._transport, record, error, by=self._service,
                max_value_bytes=self._settings.max_message_bytes), now + PARK_WITHIN_MS)
        except MeshError as exc:
            log.error("could not park %s:%s@%s on the quarantine topic: %s", record.topic,
                      record.partition, record.offset, exc)

    async def retrying(self, step: Callable[[], Awaitable[T]], deadline_ms: int) -> T:
        """Run ``step``, retrying retriable errors with backoff until ``deadline_ms``."""
        try:
            result = await step()  # the common case, without the retry machinery
        except MeshError as exc:
            if not exc.retriable:
                raise
            first_failure = exc
        else:
            self._budget.record_request(now_ms() / 1000)  # the budget's clock: epoch seconds
            return result

        async def attempt(number: int) -> T:
            if number == 1:
                raise first_failure  # already tried above: let the backoff schedule begin
            return await step()

        return await call_with_retries(
            attempt, backoff=STEP_BACKOFF, budget=self._budget,
            deadline_ms=max(deadline_ms, now_ms() + 1000), now_ms=now_ms, sleep=asyncio.sleep,
            rng=self._rng,
        )


class UnexpectedKind(MeshError):
    code = "unexpected_kind"
