"""The load of the cluster scenarios: signed requests through ``MeshClient.request`` (the
``Load`` of ``proof.chaos.load``) and signed events through ``MeshClient.publish``
(``EventLoad``, one attempt an event: a publish that fails is a clear error the publisher
knows about, never retried here, so a retry can never be a second event), both offered
steadily until the fault is over (``steady``); the event subscriber that applies them; and
how long callers saw errors (``error_window``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bus.delivery.retry_topics import RetryTopicPolicy, RetryTopics
from bus.envelope import Envelope
from bus.errors import MeshError
from bus.runtime.client import MeshClient
from bus.security.access import AccessPolicy
from bus.security.identity import Identity
from bus.security.keys import KeyRing, generate_ed25519
from bus.security.quarantine import QUARANTINE_TOPIC
from bus.service import Payload, Service
from proof.chaos import ledger
from proof.chaos.accounting import CallResult
from proof.chaos.load import GRACE_S, Call
from proof.chaos.stack import CALLER, REPLY_TOPIC

EVENT_TYPE = "chaos.happened"
EVENT_BASE = 1_000_000  # event numbers start here: apart from request numbers
POLICY = RetryTopicPolicy.of_seconds(1.0)


def cluster_identities(service: str, events_topic: str) -> dict[str, Identity]:
    """The caller may produce requests and events; ``service`` replies, quarantines and
    retries events."""
    produce = {CALLER: [f"{service}.requests", events_topic],
               service: [REPLY_TOPIC, QUARANTINE_TOPIC,
                         *RetryTopics(events_topic, POLICY).all_topics()]}
    keys = {name: generate_ed25519(name) for name in produce}
    keyring = KeyRing(verify for _, verify in keys.values())
    access = AccessPolicy.from_dict(produce)
    return {name: Identity(name, signing, keyring, access)
            for name, (signing, _) in keys.items()}


def event_service(name: str, topic: str, runs: Path) -> Service:
    """One event handler: each run appends ``<event id> <n> <pid>`` to ``runs``."""
    service = Service(name)

    @service.on_event(topic, EVENT_TYPE)
    async def happened(payload: Payload, event: Envelope) -> None:
        await asyncio.to_thread(ledger.record_run, runs, event.id, int(payload["n"]))

    return service


class Offers(Protocol):
    calls: dict[int, Call]

    async def run(self) -> None: ...

    async def offered(self, count: int, timeout_s: float) -> None: ...

    def results(self, acked: set[int]) -> list[CallResult]: ...


class EventLoad:
    """Publishes events ``first..first+count-1`` (payload ``{"n": n}``) to ``topic``;
    ``acked`` holds those the broker acknowledged."""

    def __init__(self, client: MeshClient, topic: str, *, count: int, spacing_s: float,
                 timeout_s: float, first: int, bound_s: float | None = None) -> None:
        self._client = client
        self._topic = topic
        self.first = first
        self.count = count
        self._spacing_s = spacing_s
        self.timeout_s = timeout_s
        # past this a publish counts as hung (the client has no deadline of its own)
        self.bound_s = bound_s if bound_s is not None else timeout_s + GRACE_S
        self.calls: dict[int, Call] = {}
        self.acked: set[int] = set()
        self._offered = asyncio.Condition()

    async def _one(self, n: int) -> None:
        call = self.calls[n] = Call(n)
        async with self._offered:
            self._offered.notify_all()
        try:
            async with asyncio.timeout(self.bound_s):
                await self._client.publish(self._topic, EVENT_TYPE, {"n": n},
                                           key=str(n).encode())
        except TimeoutError:
            call.ended = time.monotonic()
            return  # hung
        except MeshError as exc:
            call.ended = time.monotonic()
            call.outcome, call.error, call.retriable = (
                "clear", f"{type(exc).__name__}({exc.code})", exc.retriable)
            return
        except Exception as exc:  # anything untyped is what the run must expose
            call.ended = time.monotonic()
            call.outcome, call.error = "unclear", type(exc).__name__
            return
        call.ended = time.monotonic()
        call.outcome = "ok"
        self.acked.add(n)

    async def run(self) -> None:
        tasks: list[asyncio.Task[None]] = []
        try:
            for n in range(self.first, self.first + self.count):
                tasks.append(asyncio.create_task(self._one(n), name=f"event-{n}"))
                await asyncio.sleep(self._spacing_s)
            async with asyncio.timeout(self.bound_s + GRACE_S):
                await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=5)

    async def offered(self, count: int, timeout_s: float) -> None:
        async with asyncio.timeout(timeout_s), self._offered:
            await self._offered.wait_for(lambda: len(self.calls) >= count)

    def results(self, acked: set[int]) -> list[CallResult]:
        return [CallResult(c.n, c.outcome, c.n in self.acked, c.error)
                for c in sorted(self.calls.values(), key=lambda c: c.n)]


async def steady(make: Callable[[int], Offers], chunk: int, first: int,
                 until: asyncio.Event, min_chunks: int = 2) -> list[Offers]:
    """Offer chunks of ``chunk`` back to back (``make(first_number)`` makes one) until
    ``until`` is set (and at least ``min_chunks``), then wait for every call to end."""
    loads: list[Offers] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        while not until.is_set() or len(loads) < min_chunks:
            load = make(first + len(loads) * chunk)
            loads.append(load)
            tasks.append(asyncio.create_task(load.run(), name=f"chunk-{len(loads)}"))
            await load.offered(chunk, 120)
        await asyncio.gather(*tasks)  # each bounds itself
    finally:
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=10)
    return loads


@dataclass(frozen=True)
class Window:
    """What callers saw: calls that failed, and calls that succeeded only after ``slow_s``."""

    failed: int
    error_window_s: float  # first failed call's start to the last one's end; 0: none failed
    slow: int
    slow_window_s: float
    slowest_ok_s: float

    def as_dict(self) -> dict[str, float | int]:
        return {"failed": self.failed, "error_window_s": round(self.error_window_s, 1),
                "slow_over_1s": self.slow, "slow_window_s": round(self.slow_window_s, 1),
                "slowest_ok_s": round(self.slowest_ok_s, 1)}


def error_window(calls: Sequence[Call], slow_s: float = 1.0) -> Window:
    """Pure: the spans over which ``calls`` failed or were slow."""
    failed = [c for c in calls if c.outcome != "ok"]
    ok = [(c, c.ended - c.started) for c in calls if c.outcome == "ok" and c.ended is not None]
    slow = [c for c, took in ok if took > slow_s]
    return Window(len(failed), _span(failed), len(slow), _span(slow),
                  max((took for _, took in ok), default=0.0))


def _span(calls: Sequence[Call]) -> float:
    if not calls:
        return 0.0
    last = max(c.ended if c.ended is not None else c.started for c in calls)
    return max(0.0, last - min(c.started for c in calls))
