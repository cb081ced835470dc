"""The caller side of the mesh: request/reply and events, signed as this service."""

from __future__ import annotations

import asyncio
import logging
import random
import zlib
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from opentelemetry import context as otel_context
from pydantic import BaseModel

from bus import codec
from bus.config import BusSettings
from bus.context import current_message, inherited_deadline_ms, inherited_principal
from bus.delivery.retry import Backoff, RetryBudget, call_with_retries
from bus.envelope import (
    KIND_ERROR,
    KIND_EVENT,
    Envelope,
    ReplyTo,
    new_id,
    new_request,
    now_ms,
    to_headers,
)
from bus.errors import DeadlineExceeded, EnvelopeError, MeshError, RemoteError
from bus.runtime.replies import ReplyListener
from bus.security.identity import Identity
from bus.security.inbound import guard_for
from bus.security.quarantine import park
from bus.telemetry.mesh_telemetry import MeshTelemetry, error_type_of
from bus.telemetry.tracing import child_of, new_traceparent, valid_traceparent
from bus.topics import service_of
from bus.traffic.breaker import Breakers, CircuitBreakerState, CircuitOpen
from bus.traffic.faults import decide_fault
from bus.traffic.model import CircuitBreaker, TrafficRules
from bus.traffic.routing import choose_subset, request_topic_for, should_mirror
from bus.traffic.table import TrafficReloader, TrafficTable
from bus.transport import Record, Transport

log = logging.getLogger(__name__)
# Where the results of ``MeshClient.submit`` go unless the caller names a place.
ASYNC_REPLY_TOPIC = "mesh.async.replies"


def reply_partition_for(operation_id: str, partitions: int) -> int:
    """The reply partition of an async operation: a stable hash of its id (the same in every
    process, unlike ``hash()``), so a retried submit is answered in the same place."""
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    return zlib.crc32(operation_id.encode()) % partitions


def remote_error(envelope: Envelope) -> RemoteError:
    """Rebuild the error a service answered with, keeping its code and retriable flag."""
    try:
        body = codec.decode(envelope.value)
    except EnvelopeError:
        return RemoteError("bad_error_reply", "the service sent an unreadable error", False)
    return RemoteError(
        str(body.get("code", "remote")),
        str(body.get("message", "")),
        bool(body.get("retriable", False)),
    )


class MeshClient:
    """Sends requests and events as ``identity.service``; starts on first use."""

    def __init__(
        self,
        transport: Transport,
        settings: BusSettings,
        identity: Identity,
        *,
        telemetry: MeshTelemetry | None = None,
        traffic: TrafficTable | None = None,
        reloader: TrafficReloader | None = None,
        retry_budget: RetryBudget | None = None,
    ) -> None:
        if identity.service != settings.service_name:
            raise ValueError(f"identity {identity.service!r} is not {settings.service_name!r}")
        self.settings = settings
        self.identity = identity
        self._transport = transport
        self._telemetry = telemetry or MeshTelemetry(identity.service)
        self._guard = guard_for(identity, settings)
        self._listener: ReplyListener | None = None
        self._start_lock = asyncio.Lock()
        self._backoff = Backoff(max_attempts=settings.max_attempts)
        self._budget = retry_budget if retry_budget is not None else RetryBudget()
        self._rng = random.Random()
        self._traffic = traffic
        self._reloader = reloader
        self._stopping = asyncio.Event()
        self._breakers = Breakers(CircuitBreaker())
        self._telemetry.watch_circuits(self._breakers)  # mesh.circuit.state
        self._background: set[asyncio.Task[None]] = set()
        self.quarantined = 0
        self.mirrored = 0

    async def start(self) -> ReplyListener:
        if self._listener is not None:  # every call asks: no lock once started
            return self._listener
        async with self._start_lock:
            if self._listener is None:
                topic = self.settings.reply_topic
                partition = self.settings.reply_partition
                if partition is None:
                    partition = random.randrange(await self._transport.partition_count(topic))
                listener = ReplyListener(
                    self._transport, topic, partition, admit=self._guard.admit,
                    reject=self._quarantine,
                )
                await listener.start()
                self._listener = listener
                if self._reloader is not None:
                    await self._reloader.reload_once()  # the rules in force before any call
                    task = asyncio.create_task(self._reloader.run(self._stopping),
                                               name="traffic-reloader")
                    self._background.add(task)
                    task.add_done_callback(self._background.discard)
            return self._listener

    async def _quarantine(self, record: Record, error: MeshError) -> None:
        self.quarantined += 1
        self._telemetry.count_quarantined(error.code, record.topic)
        await park(self._transport, record, error, by=self.identity.service,
                   max_value_bytes=self.settings.max_message_bytes)

    def _trace(self, explicit: str | None) -> str:
        if valid_traceparent(explicit):
            assert explicit is not None
            return explicit
        parent = current_message.get()
        return child_of(parent.traceparent) if parent is not None else new_traceparent()

    async def request(
        self,
        operation: str,
        payload: BaseModel | dict[str, Any],
        *,
        timeout_s: float | None = None,
        traceparent: str | None = None,
        headers: Mapping[str, str] | None = None,
        principal: str | None = None,
    ) -> dict[str, Any]:
        """Send ``payload`` to ``operation`` and wait for its reply until the deadline.

        ``principal`` (compact JSON) names who the call is made for; it is signed with the
        request, and inside a handler it defaults to the handled message's. Only an edge
        names one (and signs an assertion of it until the deadline); any other service
        forwards the handled message's principal and assertion unchanged, and naming another
        raises ``PrincipalNotAllowed`` (``bus.security.principals``).

        Inside a handler, the deadline is capped by the handled message's deadline and the
        trace continues the handled message's trace. The operation's traffic rules (if any)
        pick the subset (header match, weighted split), mirror a share of calls, inject
        faults, cap the timeout, set the retry policy and guard the destination with a
        circuit breaker; ``headers`` are what header matches and sticky splits look at.
        """
        # Refused here as the receiver would (bus.security.inbound): never a wait for nothing.
        self.identity.access.check_call(self.identity.service, operation)
        rules = self._traffic.rules_for(operation) if self._traffic is not None else None
        timeout = self.settings.request_timeout_s if timeout_s is None else timeout_s
        if rules is not None and rules.timeout_ms is not None:
            timeout = min(timeout, rules.timeout_ms / 1000)
        deadline_ms = inherited_deadline_ms(now_ms() + int(timeout * 1000))
        if deadline_ms <= now_ms():
            raise DeadlineExceeded(f"{operation}: no time left in the caller's deadline")
        subset = choose_subset(rules, headers or {}, self._rng) if rules is not None else ""
        topic = request_topic_for(service_of(operation), subset)
        value = self._encoded(payload)
        listener = await self.start()
        parent = (self._telemetry.extract_headers(traceparent)
                  if valid_traceparent(traceparent) else None)
        correlation_id = new_id()
        reply_to = listener.reply_to
        trace = self._trace(traceparent)
        on_behalf_of, assertion = self.identity.on_behalf_of(
            principal, inherited_principal(), expires_ms=deadline_ms, now_ms=now_ms())

        breaker_config = rules.circuit_breaker if rules is not None else None

        def admitted() -> CircuitBreakerState | None:
            """The destination's breaker, once it let a call through now; else CircuitOpen."""
            if breaker_config is None:
                return None
            return self._breakers.admit(operation, subset, now_ms(), breaker_config)

        def blocked_until_ms() -> int | None:
            """Until when the destination's breaker refuses calls (None: it takes them)."""
            if breaker_config is None:
                return None
            return self._breakers.get(operation, subset, breaker_config).reopens_at_ms()

        async def attempt(number: int) -> Envelope:
            breaker = first_breaker if number == 1 else admitted()
            if rules is not None and rules.faults is not None:
                await self._inject(operation, rules, deadline_ms)
            # The call's id is its first request's id; retries get new ids.
            envelope = new_request(
                source=self.identity.service, operation=operation, value=value,
                reply_to=reply_to, deadline_ms=deadline_ms,
                traceparent=trace, correlation_id=correlation_id, attempt=number,
                principal=on_behalf_of, principal_assertion=assertion,
                message_id=correlation_id if number == 1 else None,
            )
            if number == 1 and rules is not None:
                self._mirror(rules, operation, envelope, deadline_ms)
            try:
                reply = await self._exchange(listener, topic, envelope, deadline_ms, timeout)
                if reply.kind == KIND_ERROR:
                    raise remote_error(reply)
            except MeshError as exc:
                if breaker is not None:
                    # Like 5xx in Envoy's outlier detection: only failures a retry could fix
                    # count against the destination; a refused input is the caller's.
                    (breaker.record_failure if exc.retriable else breaker.record_success)(
                        now_ms())
                raise
            if breaker is not None:
                breaker.record_success(now_ms())
            return reply

        def retried(number: int, error: BaseException, delay_s: float) -> None:
            log.info("%s attempt %d failed (%s), retrying in %.3fs", operation, number, error,
                     delay_s)
            self._telemetry.count_retry(operation, error_type_of(error))

        backoff = self._backoff
        if rules is not None and rules.retry is not None:
            backoff = Backoff(base_s=rules.retry.base_ms / 1000, cap_s=max(
                rules.retry.cap_ms, rules.retry.base_ms) / 1000,
                max_attempts=rules.retry.max_attempts)
        with self._telemetry.request_span(operation, topic, parent=parent):
            # An open circuit refuses the call before the retry loop: no attempt, no backoff
            # sleep, nothing counted in or spent from the retry budget (CircuitOpen is
            # retriable only later, so the loop fails fast on it too).
            first_breaker = admitted()
            reply = await call_with_retries(
                attempt, backoff=backoff, budget=self._budget, deadline_ms=deadline_ms,
                now_ms=now_ms, sleep=asyncio.sleep, rng=self._rng, on_retry=retried,
                fail_fast=(CircuitOpen,), blocked_until_ms=blocked_until_ms,
            )
            return codec.decode(reply.value)

    def _encoded(self, payload: BaseModel | dict[str, Any]) -> bytes:
        value = codec.encode(payload)
        if len(value) > self.settings.max_message_bytes:
            raise EnvelopeError(f"payload is {len(value)} bytes, over "
                                f"{self.settings.max_message_bytes}")
        return value

    def _destination(self, operation: str, payload: BaseModel | dict[str, Any],
                     rules: TrafficRules | None, headers: Mapping[str, str] | None
                     ) -> tuple[str, bytes]:
        """The request topic the rules pick for ``operation`` and the encoded payload."""
        subset = choose_subset(rules, headers or {}, self._rng) if rules is not None else ""
        return request_topic_for(service_of(operation), subset), self._encoded(payload)

    async def submit(
        self,
        operation: str,
        payload: BaseModel | dict[str, Any],
        *,
        operation_id: str,
        reply_to: ReplyTo | None = None,
        timeout_s: float,
        traceparent: str | None = None,
        principal: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """Send ``payload`` to ``operation`` without waiting for its reply; returns
        ``operation_id`` once the broker has acknowledged the request.

        The request's id and correlation id are ``operation_id`` (the service's idempotency
        key, so a retried submit is applied once) and its deadline is ``timeout_s`` from now
        (capped inside a handler, like ``request``). The reply goes to ``reply_to``, by
        default a partition of ``mesh.async.replies`` chosen from ``operation_id``
        (``reply_partition_for``). The operation's traffic rules pick the subset; their
        timeout, retries, faults, mirroring and circuit breaker are for calls that wait, and
        do not apply. Sending is bounded by ``min(timeout_s, settings.request_timeout_s)``.
        """
        if not operation_id:
            raise ValueError("operation_id must not be empty")
        self.identity.access.check_call(self.identity.service, operation)
        deadline_ms = inherited_deadline_ms(now_ms() + int(timeout_s * 1000))
        if deadline_ms <= now_ms():
            raise DeadlineExceeded(f"{operation}: no time left in the caller's deadline")
        rules = self._traffic.rules_for(operation) if self._traffic is not None else None
        topic, value = self._destination(operation, payload, rules, headers)
        if reply_to is None:
            partitions = await self._transport.partition_count(ASYNC_REPLY_TOPIC)
            reply_to = ReplyTo(ASYNC_REPLY_TOPIC, reply_partition_for(operation_id, partitions))
        on_behalf_of, assertion = self.identity.on_behalf_of(
            principal, inherited_principal(), expires_ms=deadline_ms, now_ms=now_ms())
        envelope = replace(new_request(
            source=self.identity.service, operation=operation, value=value, reply_to=reply_to,
            deadline_ms=deadline_ms, traceparent=self._trace(traceparent),
            correlation_id=operation_id, principal=on_behalf_of, principal_assertion=assertion,
        ), id=operation_id)
        key = operation_id.encode()
        send_s = min(timeout_s, self.settings.request_timeout_s)
        token = (otel_context.attach(self._telemetry.extract_headers(traceparent))
                 if valid_traceparent(traceparent) else None)
        try:
            with self._telemetry.publish_span(envelope, topic, key=key):
                sealed = await self.identity.outgoing_batched(self._telemetry.stamp(envelope),
                                                             topic)
                try:
                    async with asyncio.timeout(send_s):
                        await self._transport.send(topic, sealed.value,
                                                   headers=to_headers(sealed), key=key)
                except TimeoutError:
                    raise DeadlineExceeded(
                        f"{operation}: could not send within {send_s:g}s") from None
        finally:
            if token is not None:
                otel_context.detach(token)
        return operation_id

    async def _inject(self, operation: str, rules: TrafficRules, deadline_ms: int) -> None:
        """The rules' fault injection: a delay (within the deadline) and/or an abort."""
        fault = decide_fault(rules.faults, self._rng)
        if fault.delay_ms:
            await asyncio.sleep(min(fault.delay_ms, max(0, deadline_ms - now_ms())) / 1000)
        if fault.aborts:
            raise fault.error(operation)

    def _mirror(
        self, rules: TrafficRules, operation: str, request: Envelope, deadline_ms: int
    ) -> None:
        """Copy ``request`` to the mirror subset, in the background: the caller never waits
        for it and never sees its answer (replies to its fresh correlation id are ignored)."""
        subset = should_mirror(rules, self._rng)
        if subset is None:
            return
        topic = request_topic_for(service_of(operation), subset)
        copy = replace(request, id=new_id(), correlation_id=new_id())

        async def send() -> None:
            try:
                sealed = await self.identity.outgoing_batched(copy, topic)
                async with asyncio.timeout_at(self._loop_deadline(deadline_ms)):
                    await self._transport.send(topic, sealed.value,
                                               headers=to_headers(sealed))
                self.mirrored += 1
            except (MeshError, TimeoutError) as exc:
                log.warning("mirror of %s to %s failed: %s", operation, topic, exc)

        task = asyncio.create_task(send(), name=f"mirror:{operation}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _exchange(
        self, listener: ReplyListener, topic: str, envelope: Envelope, deadline_ms: int,
        timeout_s: float,
    ) -> Envelope:
        """Send one request and wait for its reply until the deadline."""
        correlation_id = envelope.correlation_id or envelope.id
        key = correlation_id.encode()
        waiter = listener.expect(correlation_id, envelope.type)  # owner: bus.security.reply_match
        try:
            with self._telemetry.publish_span(envelope, topic, key=key):
                sealed = await self.identity.outgoing_batched(self._telemetry.stamp(envelope),
                                                             topic)
                try:
                    async with asyncio.timeout_at(self._loop_deadline(deadline_ms)):
                        await self._transport.send(topic, sealed.value,
                                                   headers=to_headers(sealed), key=key)
                except TimeoutError:
                    raise DeadlineExceeded(
                        f"{envelope.type}: could not send within {timeout_s:g}s") from None
            try:
                # Not wait_for: its extra future and done-callback cost a loop turn per reply.
                async with asyncio.timeout_at(self._loop_deadline(deadline_ms)):
                    return await waiter
            except TimeoutError:
                raise DeadlineExceeded(
                    f"{envelope.type}: no reply within {timeout_s:g}s") from None
        finally:
            listener.forget(correlation_id)

    async def publish(
        self, topic: str, event_type: str, payload: BaseModel | dict[str, Any], *,
        key: bytes | None = None,
    ) -> str:
        """Publish an event; returns its id once the broker has acknowledged it."""
        envelope = Envelope(
            id=new_id(),
            source=self.identity.service,
            type=event_type,
            kind=KIND_EVENT,
            value=codec.encode(payload),
            time_ms=now_ms(),
            traceparent=self._trace(None),
        )
        with self._telemetry.publish_span(envelope, topic, key=key):
            sealed = await self.identity.outgoing_batched(self._telemetry.stamp(envelope), topic)
            await self._transport.send(topic, sealed.value, headers=to_headers(sealed), key=key)
        return envelope.id

    @staticmethod
    def _loop_deadline(deadline_ms: int) -> float:
        """``deadline_ms`` (epoch) on the event loop's clock."""
        return asyncio.get_running_loop().time() + max(0.0, (deadline_ms - now_ms()) / 1000)

    async def close(self) -> None:
        self._stopping.set()
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.wait(list(self._background), timeout=5)
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.stop()
        await self._transport.close()
