"""The bounded load: ``count`` requests at a fixed spacing, each in its own task, each
bounded by its timeout (plus a grace), the whole run bounded too. Records how each call
ended and whether the broker acknowledged it (``AckRecorder``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bus import codec
from bus.config import BusSettings
from bus.errors import MeshError
from bus.runtime.client import MeshClient
from bus.security.identity import Identity
from bus.transport import Reader
from bus.transport.connection import KafkaSecurity
from bus.transport.kafka import KafkaTransport
from proof.chaos import ledger
from proof.chaos.accounting import CallResult, Outcome

log = logging.getLogger(__name__)
GRACE_S = 10.0  # past its own timeout, a call that has not ended counts as hung


class AckRecorder:
    """A ``Transport`` passing everything to a ``KafkaTransport``; remembers which request
    numbers of ``topic`` the broker acknowledged."""

    def __init__(self, inner: KafkaTransport, topic: str) -> None:
        self._inner = inner
        self._topic = topic
        self.acked: set[int] = set()

    async def send(self, topic: str, value: bytes, *, headers: Sequence[tuple[str, bytes]],
                   key: bytes | None = None, partition: int | None = None) -> None:
        await self._inner.send(topic, value, headers=headers, key=key, partition=partition)
        if topic == self._topic:
            self.acked.add(int(codec.decode(value)["n"]))

    async def partition_count(self, topic: str) -> int:
        return await self._inner.partition_count(topic)

    def assigned_reader(self, topic: str, partition: int, *,
                        from_beginning: bool = False) -> Reader:
        return self._inner.assigned_reader(topic, partition, from_beginning=from_beginning)

    def group_reader(self, topics: Sequence[str], group_id: str) -> Reader:
        return self._inner.group_reader(topics, group_id)

    async def close(self) -> None:
        await self._inner.close()


@dataclass
class Call:
    n: int
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    outcome: Outcome = "hung"
    error: str = ""
    retriable: bool = False  # a clear failure the caller may retry


def classify(n: int, reply: dict[str, Any] | None, error: BaseException | None
             ) -> tuple[Outcome, str]:
    if error is None:
        ok = reply is not None and reply.get("n") == n
        return ("ok", "") if ok else ("unclear", f"wrong reply {reply!r}")
    if isinstance(error, MeshError):
        return "clear", f"{type(error).__name__}({error.code})"
    return "unclear", type(error).__name__


class Load:
    """Offers requests ``first..first+count-1`` to ``operation``; ``payload_for(n)`` adds fields."""

    def __init__(self, client: MeshClient, operation: str, *, count: int, spacing_s: float,
                 timeout_s: float, first: int = 0,
                 payload_for: Callable[[int], dict[str, Any]] = lambda n: {}) -> None:
        self._client = client
        self._operation = operation
        self.first = first
        self.count = count
        self._spacing_s = spacing_s
        self.timeout_s = timeout_s
        self._payload_for = payload_for
        self.calls: dict[int, Call] = {}
        self._offered = asyncio.Condition()

    async def _one(self, n: int) -> None:
        call = self.calls[n] = Call(n)
        async with self._offered:
            self._offered.notify_all()
        reply: dict[str, Any] | None = None
        error: BaseException | None = None
        try:
            async with asyncio.timeout(self.timeout_s + GRACE_S):
                reply = await self._client.request(
                    self._operation, {"n": n, **self._payload_for(n)}, timeout_s=self.timeout_s)
        except TimeoutError:
            call.ended = time.monotonic()
            return  # hung: the client did not end the call itself
        except Exception as exc:
            error = exc
        call.ended = time.monotonic()
        call.outcome, call.error = classify(n, reply, error)
        if error is not None:
            log.info("call %d failed: %r", n, error)
        call.retriable = isinstance(error, MeshError) and error.retriable

    async def run(self) -> None:
        """Offer every request, then wait for all of them (bounded)."""
        tasks: list[asyncio.Task[None]] = []
        try:
            for n in range(self.first, self.first + self.count):
                tasks.append(asyncio.create_task(self._one(n), name=f"call-{n}"))
                await asyncio.sleep(self._spacing_s)
            async with asyncio.timeout(self.timeout_s + 2 * GRACE_S):
                await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=5)

    async def offered(self, count: int, timeout_s: float) -> None:
        """Wait until ``count`` requests have been offered."""
        async with asyncio.timeout(timeout_s), self._offered:
            await self._offered.wait_for(lambda: len(self.calls) >= count)

    def answered(self) -> int:
        return sum(1 for c in self.calls.values() if c.outcome == "ok")

    def results(self, acked: set[int]) -> list[CallResult]:
        return [CallResult(c.n, c.outcome, c.n in acked, c.error)
                for c in sorted(self.calls.values(), key=lambda c: c.n)]


async def settle(path: Path, quiet_s: float, timeout_s: float) -> None:
    """Wait until the effect log ``path`` has not grown for ``quiet_s`` (at most
    ``timeout_s``): a worker may still be applying requests whose callers gave up."""
    size, since = -1, time.monotonic()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            while time.monotonic() - since < quiet_s:
                now = await asyncio.to_thread(lambda: path.stat().st_size
                                              if path.exists() else 0)
                if now != size:
                    size, since = now, time.monotonic()
                await asyncio.sleep(0.1)


async def logged_numbers(transport: KafkaTransport, topic: str, want: set[int],
                         timeout_s: float = 15.0) -> set[int]:
    """The request numbers the topic holds (read from the beginning), until ``want`` are all
    found or ``timeout_s`` has passed."""
    found: set[int] = set()
    readers: list[Reader] = [transport.assigned_reader(topic, p, from_beginning=True)
               for p in range(await transport.partition_count(topic))]
    started: list[Reader] = []
    try:
        for reader in readers:
            await reader.start()
            started.append(reader)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while not want <= found:
                    for reader in started:
                        for record in await reader.read(0.2):
                            with contextlib.suppress(Exception):
                                found.add(int(codec.decode(record.value or b"{}")["n"]))
    finally:
        for reader in started:
            await reader.stop()
    return found


def effect_numbers(path: Path) -> list[int]:
    """The request numbers of an effect log; warm-up calls (negative numbers) left out."""
    return [n for n in ledger.read_numbers(path) if n >= 0]


async def warm_up(client: MeshClient, operation: str, timeout_s: float,
                  until: Callable[[set[int]], bool] = lambda by: True, batch: int = 8,
                  limit_s: float = 60.0) -> set[int]:
    """Calls (negative numbers, not counted) until one batch is answered and ``until`` holds
    for the set of worker pids that answered so far; returns that set."""
    by: set[int] = set()
    n = -1
    async with asyncio.timeout(limit_s):
        while True:
            numbers = range(n, n - batch, -1)
            n -= batch
            replies = await asyncio.gather(*(client.request(
                operation, {"n": i}, timeout_s=timeout_s) for i in numbers),
                return_exceptions=True)
            answered = [r for r in replies if isinstance(r, dict)]
            by |= {int(r["by"]) for r in answered}
            if answered and until(by):
                return by


@asynccontextmanager
async def caller(bootstrap: str, identity: Identity, request_topic: str,
                 security: KafkaSecurity | None = None,
                 ) -> AsyncIterator[tuple[MeshClient, AckRecorder]]:
    """A ``MeshClient`` as ``identity`` whose sends to ``request_topic`` are recorded."""
    settings = BusSettings(bootstrap_servers=bootstrap, service_name=identity.service,
                           kafka=security or KafkaSecurity())
    recorder = AckRecorder(KafkaTransport(settings), request_topic)
    client = MeshClient(recorder, settings, identity)
    try:
        yield client, recorder
    finally:
        await asyncio.wait_for(client.close(), 30)
