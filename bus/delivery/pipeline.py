"""Concurrent handling with safe commits: at most ``limit`` records in flight, offsets
committed in the background at the lowest position still unanswered per partition.

Waiting for each commit before the next fetch would cost a broker round trip per batch (Kafka
4.1's group coordinator lingers ~5 ms on every commit); handling one record at a time would
serialise every reply's acknowledgement. Neither is needed for at-least-once delivery.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from bus.delivery.offsets import OffsetTracker
from bus.errors import MeshError
from bus.transport import Reader, Record

log = logging.getLogger(__name__)


class Pipeline:
    def __init__(
        self, reader: Reader, handle: Callable[[Record], Awaitable[None]], limit: int
    ) -> None:
        self._reader = reader
        self._handle = handle
        self._slots = asyncio.Semaphore(limit)
        self._tracker = OffsetTracker()
        self._tasks: set[asyncio.Task[None]] = set()
        self._progress = asyncio.Event()
        self._failure: BaseException | None = None
        self._committer = asyncio.create_task(self._commit_loop(), name="pipeline-commits")

    async def feed(self, records: Sequence[Record]) -> None:
        """Start handling ``records``; waits while ``limit`` records are in flight."""
        for record in records:
            self.raise_failure()
            await self._slots.acquire()
            self._tracker.started((record.topic, record.partition), record.offset)
            task = asyncio.create_task(self._one(record))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _one(self, record: Record) -> None:
        try:
            await self._handle(record)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            # Below the handler (which never raises) this is a bug or a kill: stop the worker
            # and never commit past the record.
            if self._failure is None:
                self._failure = exc
        else:
            self._tracker.finished((record.topic, record.partition), record.offset)
            self._progress.set()
        finally:
            self._slots.release()

    def positions(self) -> dict[tuple[str, int], int]:
        """The lowest offset not answered yet per partition seen (for consumer lag)."""
        return self._tracker.positions()

    def raise_failure(self) -> None:
        """Raise what broke a record's handling, if anything did."""
        if self._failure is not None:
            raise self._failure

    async def _commit_loop(self) -> None:
        while True:
            await self._progress.wait()
            self._progress.clear()
            await self._commit()

    async def _commit(self) -> None:
        positions = self._tracker.committable()
        if not positions:
            return
        try:
            await self._reader.commit_offsets(positions)
        except MeshError as exc:
            # A rebalance took the partition, or the broker is away: the next progress
            # retries, and whatever is not committed is redelivered (idempotency absorbs it).
            log.warning("commit of %s failed: %s", positions, exc)
            return
        self._tracker.committed(positions)

    async def close(self, timeout_s: float) -> None:
        """Let in-flight records finish (cancelled after ``timeout_s``, or at once if this is
        cancelled), commit what was answered, stop."""
        try:
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=timeout_s)
        finally:
            pending = set(self._tasks)
            for task in (*pending, self._committer):
                task.cancel()
            await asyncio.wait({*pending, self._committer}, timeout=timeout_s)
        await self._commit()
        self.raise_failure()
