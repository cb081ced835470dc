"""A long-lived service worker: a consumer-group member that handles requests and replies.

Each record is admitted (size, envelope, signature, sender, freshness, replay) or parked on
the quarantine topic; admitted requests run under the idempotency store's claim, so a
redelivered message gets the stored reply instead of a second application. The store is the
durable replay memory (the in-memory guard forgets on restart): outside insecure mode a
worker refuses to be built without one (``bus.delivery.replay_memory.require_store``), and
uses it for every operation except those the policy declares ``side_effect_free``. Records are
handled concurrently (``concurrency`` at most, so order within a partition is not kept for
requests) and an offset is committed only once every record before it has been answered, so
a worker that dies mid-batch leaves its unanswered records to the next group member.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from bus.config import BusSettings
from bus.context import current_client
from bus.delivery.idempotency import Claim, IdempotencyStore
from bus.delivery.intake import Intake
from bus.delivery.pipeline import Pipeline
from bus.delivery.replay_memory import require_store
from bus.delivery.stored_results import NOT_KEPT, NOT_KEPT_CODE, answer_from, stored_result
from bus.envelope import KIND_REQUEST, Envelope, now_ms, to_headers
from bus.errors import MeshError
from bus.runtime.client import MeshClient
from bus.security.identity import Identity
from bus.security.inbound import guard_for
from bus.service import Outcome, Service
from bus.telemetry.lag import EndOffsets, LagReport
from bus.telemetry.mesh_telemetry import MeshTelemetry
from bus.transport import Record, Transport

log = logging.getLogger(__name__)
POLL_S = 0.5
# A claim's lease: short, and renewed while the handler runs, so that a dead worker's
# requests are taken over within seconds (effects must tolerate that second run).
DEFAULT_LEASE_MS = 5_000
NO_DEADLINE_MS = 30_000
KEEP_RESULTS_MS = 24 * 3600 * 1000
DRAIN_TIMEOUT_S = 10.0


def idempotency_key(request: Envelope) -> str:
    """Retries of one call share the correlation id (signed), so they share the key."""
    return f"{request.source}:{request.correlation_id or request.id}"


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
        concurrency: int = 64,
        lease_ms: int = DEFAULT_LEASE_MS,
        subset: str = "",
        client: MeshClient | None = None,
    ) -> None:
        if identity.service != service.name:
            raise ValueError(f"identity {identity.service!r} cannot run {service.name!r}")
        if client is not None and client.identity.service != service.name:
            raise ValueError(f"a client of {client.identity.service!r} cannot make "
                             f"{service.name!r}'s nested calls")
        require_store(store, identity, f"{service.name} worker")
        self.service = service
        self._transport = transport
        self._settings = settings
        self._identity = identity
        self._store = store
        self._telemetry = telemetry or MeshTelemetry(service.name)
        self._intake = Intake(service.name, transport, settings, guard_for(identity, settings),
                              self._telemetry)
        # A subset (e.g. a canary) reads its own topic in its own group.
        self.topic = service.request_topic_of(subset)
        self._group_id = group_id or (f"{service.name}.{subset}" if subset else service.name)
        self._concurrency = concurrency
        self._lease_ms = lease_ms
        # Handlers reach it through bus.context.mesh_client() for nested calls; the worker
        # neither starts nor closes it (its owner does).
        self.client = client
        self.handled = 0
        self.duplicates = 0
        self.expired = 0
        self.abandoned = 0
        self._told_not_kept: set[str] = set()  # operations whose results were too long

    @property
    def quarantined(self) -> int:
        return self._intake.quarantined

    @property
    def rejected(self) -> int:
        return self.quarantined + self.expired

    async def run(self, stop: asyncio.Event) -> None:
        self._identity.access.check_consume(self.service.name, self.topic)
        reader = self._transport.group_reader([self.topic], self._group_id)
        await reader.start()
        log.info("%s worker consuming %s", self.service.name, self.topic)
        pipeline = Pipeline(reader, self._process, self._concurrency)
        lag = LagReport(self._group_id)  # mesh.consumer.lag, refreshed once per fetch
        ends = reader.end_offsets if isinstance(reader, EndOffsets) else None
        self._telemetry.watch_lag(lag)
        grace_s = DRAIN_TIMEOUT_S
        try:
            while not stop.is_set():
                try:
                    records = await reader.read(POLL_S, max_records=self._concurrency)
                except MeshError as exc:
                    log.warning("fetch failed, retrying: %s", exc)
                    await asyncio.sleep(POLL_S)
                    continue
                self._telemetry.count_consumed(records, self._group_id)
                await pipeline.feed(records)
                pipeline.raise_failure()
                if ends is not None:
                    lag.update(pipeline.positions(), ends())
        except asyncio.CancelledError:
            grace_s = 0.0  # cancelled, not stopped: in-flight handlers are cancelled at once
            raise
        finally:
            self._telemetry.unwatch_lag(lag)
            try:
                await pipeline.close(grace_s)
            finally:
                await reader.stop()

    async def _process(self, record: Record) -> None:
        token = current_client.set(self.client)
        try:
            await self._process_record(record)
        finally:
            current_client.reset(token)

    async def _process_record(self, record: Record) -> None:
        request = await self._intake.admit(record, KIND_REQUEST)
        if request is None:
            return
        now = now_ms()
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
        deadline = request.deadline_ms or now + NO_DEADLINE_MS
        key = idempotency_key(request)
        # An operation the policy declares free of side effects skips the store: no claim,
        # no stored result; a redelivered copy runs again and answers again.
        store = self._store if self._identity.access.has_side_effects(request.type) else None
        token: str | None = None
        try:
            if store is not None:
                claim = await self._claim(store, key, deadline)
                if claim.status != "claimed":
                    self.duplicates += 1
                    if claim.status == "completed" and claim.result is not None:
                        await self._reply(request, answer_from(
                            request, claim.result, source=self.service.name), deadline)
                    return None
                token = claim.token
            if store is not None and token is not None:
                outcome = await self._holding(store, key, token, self.service.handle(request))
            else:
                outcome = await self.service.handle(request)
            self.handled += 1
            if store is not None and token is not None:
                held = token
                if outcome.retriable or outcome.reply is None:
                    await self._intake.retrying(lambda: store.release(key, token=held), deadline)
                else:
                    result = stored_result(outcome.reply, store.max_result_bytes)
                    if result == NOT_KEPT and request.type not in self._told_not_kept:
                        self._told_not_kept.add(request.type)  # once an operation: no flood
                        log.warning("%s: a result over the %d bytes the store keeps (first: "
                                    "%s); its duplicates are answered %s", request.type,
                                    store.max_result_bytes, request.id, NOT_KEPT_CODE)
                    await self._intake.retrying(lambda: store.complete(
                        key, result, token=held, now_ms=now_ms(), keep_ms=KEEP_RESULTS_MS),
                        deadline)
            if outcome.reply is not None:
                await self._reply(request, outcome.reply, deadline)
            return outcome
        except MeshError as exc:
            self.abandoned += 1
            log.error("abandoned %s (%s): %s: %s", request.id, request.type, exc.code, exc)
            return None

    async def _claim(self, store: IdempotencyStore, key: str, deadline: int) -> Claim:
        """Claim ``key``; while another delivery of the same call is being handled, wait (up to
        the deadline) for its result, or for its lease to expire and take it over."""
        pause_s = 0.02
        while True:
            claim = await self._intake.retrying(
                lambda: store.begin(key, now_ms=now_ms(), lease_ms=self._lease_ms), deadline)
            if claim.status != "in_progress" or now_ms() + pause_s * 1000 >= deadline:
                return claim
            await asyncio.sleep(pause_s)
            pause_s = min(pause_s * 2, 1.0)

    async def _holding(
        self, store: IdempotencyStore, key: str, token: str, work: Awaitable[Outcome]
    ) -> Outcome:
        """Await ``work`` while renewing the claim's short lease: if this worker dies, another
        takes the request over within one lease instead of at the caller's deadline.

        The renewing task starts only once the handler has run for a third of the lease (a
        timer until then): most handlers finish long before, and a task per request would
        cost its creation, a cancellation and a wait on every message."""
        period_s = self._lease_ms / 3000

        async def heartbeat() -> None:
            while True:
                try:
                    held = await store.renew(key, token=token, now_ms=now_ms(),
                                             lease_ms=self._lease_ms)
                except MeshError as exc:
                    log.warning("could not renew the claim on %s: %s", key, exc)
                else:
                    if not held:
                        log.warning("lost the claim on %s: another worker took it over", key)
                        return
                await asyncio.sleep(period_s)

        beats: list[asyncio.Task[None]] = []
        timer = asyncio.get_running_loop().call_later(
            period_s, lambda: beats.append(asyncio.create_task(heartbeat(), name=f"lease:{key}")))
        try:
            return await work
        finally:
            timer.cancel()
            for beat in beats:
                beat.cancel()
            if beats:
                await asyncio.wait(beats, timeout=1.0)

    async def _reply(self, request: Envelope, reply: Envelope, deadline_ms: int) -> None:
        assert request.reply_to is not None
        target = request.reply_to
        with self._telemetry.publish_span(reply, target.topic, target.partition):
            sealed = await self._identity.outgoing_batched(self._telemetry.stamp(reply),
                                                           target.topic, to=request.source)
            await self._intake.retrying(lambda: self._transport.send(
                target.topic, sealed.value, headers=to_headers(sealed), partition=target.partition,
            ), deadline_ms)
