"""The recorder as a long-lived consumer-group member of ``mesh.async.replies``.

Records are recorded concurrently (``bus.delivery.pipeline``) and an offset is committed only once
every record before it is in the store (or parked), so a recorder killed mid-stream leaves
the rest to the next one; the conditional completion makes the redelivered ones harmless.
A retriable failure (store or broker away) is retried with backoff, never skipped (until the
runner stops, leaving the record to the next one); anything else stops the runner without
committing past the record.
"""

from __future__ import annotations

import asyncio
import logging
import random

from bus.delivery.pipeline import Pipeline
from bus.delivery.retry import Backoff
from bus.errors import MeshError
from bus.runtime.client import ASYNC_REPLY_TOPIC
from bus.transport import Record, Transport
from functions.async_results.recorder import ReplyRecorder

log = logging.getLogger(__name__)
GROUP_ID = "gateway-async-recorder"
POLL_S = 0.5
CONCURRENCY = 16
DRAIN_TIMEOUT_S = 10.0
RETRY_BACKOFF = Backoff(base_s=0.1, cap_s=5.0, max_attempts=1)


class RecorderRunner:
    def __init__(self, recorder: ReplyRecorder, transport: Transport, *,
                 topic: str = ASYNC_REPLY_TOPIC, group_id: str = GROUP_ID,
                 concurrency: int = CONCURRENCY) -> None:
        self.recorder = recorder
        self._transport = transport
        self.topic = topic
        self.group_id = group_id
        self._concurrency = concurrency
        self._rng = random.Random()
        self._stop = asyncio.Event()
        self.retries = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Record replies until ``stop`` is set (in-flight ones get ``DRAIN_TIMEOUT_S``)."""
        self._stop = stop
        reader = self._transport.group_reader([self.topic], self.group_id)
        await reader.start()
        log.info("recording %s as group %s", self.topic, self.group_id)
        pipeline = Pipeline(reader, self._record, self._concurrency)
        grace_s = DRAIN_TIMEOUT_S
        try:
            while not stop.is_set():
                try:
                    records = await reader.read(POLL_S, max_records=self._concurrency)
                except MeshError as exc:
                    if not exc.retriable:
                        raise
                    log.warning("fetch failed, retrying: %s", exc)
                    await asyncio.sleep(POLL_S)
                    continue
                await pipeline.feed(records)
                pipeline.raise_failure()
        except asyncio.CancelledError:
            grace_s = 0.0
            raise
        finally:
            try:
                await pipeline.close(grace_s)
            finally:
                await reader.stop()

    async def _record(self, record: Record) -> None:
        attempt = 0
        while True:
            try:
                await self.recorder.record(record)
                return
            except MeshError as exc:
                if not exc.retriable:
                    raise
                attempt += 1
                self.retries += 1
                delay = max(RETRY_BACKOFF.base_s,
                            RETRY_BACKOFF.delay_s(min(attempt, 16), self._rng))
                log.warning("recording %s:%s@%s failed (%s), retrying in %.2fs", record.topic,
                            record.partition, record.offset, exc, delay)
                try:
                    await asyncio.wait_for(self._stop.wait(), delay)
                except TimeoutError:
                    continue
                # Stopping: leave the record unfinished (never committed) for the next runner.
                raise asyncio.CancelledError from exc
