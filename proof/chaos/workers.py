"""Service workers of a scenario, parent side: in this process (``InProcess``), or as
``proof.chaos.worker`` processes (``spawn_worker``, which a scenario may SIGKILL)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bus.config import BusSettings
from bus.delivery.idempotency import IdempotencyStore
from bus.runtime.worker import DEFAULT_LEASE_MS, ServiceWorker
from bus.security.identity import Identity
from bus.transport.kafka import KafkaTransport
from proof.chaos.service import EffectLogs, chaos_service
from proof.chaos.worker import worker_config
from proof.procs import Responder, spawn

STOP_TIMEOUT_S = 20.0
_numbers = itertools.count()


class InProcess:
    """A ``ServiceWorker`` of the chaos service with its own transport, run as a task."""

    def __init__(self, settings: BusSettings, identity: Identity, logs: EffectLogs, *,
                 store: IdempotencyStore | None, handler_s: float,
                 lease_ms: int = DEFAULT_LEASE_MS, concurrency: int = 64) -> None:
        self.transport = KafkaTransport(settings)
        self.worker = ServiceWorker(
            chaos_service(settings.service_name, logs, handler_s), self.transport, settings,
            identity, store=store, lease_ms=lease_ms, concurrency=concurrency)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.failure: BaseException | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self.worker.run(self._stop),
                                         name=f"chaos-worker-{next(_numbers)}")

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        """Stop gracefully (in-flight handlers drain), cancel after ``STOP_TIMEOUT_S``."""
        self._stop.set()
        try:
            if self._task is not None:
                done, _ = await asyncio.wait([self._task], timeout=STOP_TIMEOUT_S)
                if not done:
                    self._task.cancel()
                    await asyncio.wait([self._task], timeout=5)
                elif not self._task.cancelled() and self._task.exception() is not None:
                    self.failure = self._task.exception()
        finally:
            await self.transport.close()

    def counters(self) -> dict[str, int]:
        w = self.worker
        return {"handled": w.handled, "duplicates": w.duplicates, "expired": w.expired,
                "abandoned": w.abandoned, "quarantined": w.quarantined}


@asynccontextmanager
async def running(workers: list[InProcess]) -> AsyncIterator[list[InProcess]]:
    """Start ``workers`` (and any appended inside the block); stop them all afterwards."""
    for w in workers:
        w.start()
    try:
        yield workers
    finally:
        await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)


@asynccontextmanager
async def spawn_worker(workdir: Path, name: str, env: dict[str, str], logs: EffectLogs, *,
                       table: str | None, endpoint: str | None, handler_ms: int,
                       lease_ms: int = DEFAULT_LEASE_MS,
                       processes: int = 1) -> AsyncIterator[Responder]:
    """A ``proof.chaos.worker`` process (ready, then yielded); stopped or killed afterwards.
    Its log is ``workdir/<name>.log``. With ``processes`` > 1 it is their supervisor
    (``bus.runtime.processes``; yielded once the first child is ready)."""
    config: dict[str, Any] = worker_config(env, logs, table=table, endpoint=endpoint,
                                           handler_ms=handler_ms, lease_ms=lease_ms,
                                           log=workdir / f"{name}.log", processes=processes)
    path = workdir / f"{name}.json"
    path.write_text(json.dumps(config))
    try:
        async with spawn(name, "proof.chaos.worker", ["--config", str(path)]) as responder:
            yield responder
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # it holds a signing key
