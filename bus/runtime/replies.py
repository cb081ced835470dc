"""Listening for replies on one self-assigned partition, matched by correlation id and by
the expected replier.

A Lambda instance cannot afford a consumer-group join per cold start: it assigns itself one
partition of the reply topic, seeks to its end before the first request, and ignores
replies meant for other instances that picked the same partition. Replies pass the same
admission checks as requests (signature, sender, freshness, replay): a forged reply is
refused, never handed to a caller. A reply to a pending call must then answer it
(``bus.security.reply_match``: the operation's owner, the operation, a reply or error); one that
does not (another service that may write replies, answering first) is refused with its reason and
the call keeps waiting for the genuine answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bus.envelope import Envelope, ReplyTo, now_ms
from bus.errors import MeshError
from bus.security.reply_match import Expected, refusal
from bus.transport import Reader, Record, Transport

log = logging.getLogger(__name__)
POLL_S = 0.5
STOP_TIMEOUT_S = 5.0

Admit = Callable[[Record, int], Envelope]
Reject = Callable[[Record, MeshError], Awaitable[None]]


class ReplyListener:
    def __init__(
        self, transport: Transport, topic: str, partition: int, *, admit: Admit, reject: Reject
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.reply_to = ReplyTo(topic, partition)  # what every request names
        self._reader: Reader = transport.assigned_reader(topic, partition)
        self._admit = admit
        self._reject = reject
        self._pending: dict[str, tuple[Expected, asyncio.Future[Envelope]]] = {}
        self._task: asyncio.Task[None] | None = None
        self.ignored = 0
        self.rejected = 0

    async def start(self) -> None:
        await self._reader.start()
        self._task = asyncio.create_task(self._run(), name=f"replies:{self.topic}:{self.partition}")

    def expect(self, correlation_id: str, operation: str, *, owner: str | None = None
               ) -> asyncio.Future[Envelope]:
        """A future for the reply to the call ``correlation_id`` of ``operation``: resolved
        only by a reply ``bus.security.reply_match`` accepts (from ``owner``, by default the service
        of the operation's name)."""
        expected = Expected.call(correlation_id, operation, owner=owner)
        future: asyncio.Future[Envelope] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = (expected, future)
        return future

    def forget(self, correlation_id: str) -> None:
        self._pending.pop(correlation_id, None)

    async def _run(self) -> None:
        while True:
            try:
                records = await self._reader.read(POLL_S)
            except MeshError as exc:
                log.warning("reply fetch failed, retrying: %s", exc)
                await asyncio.sleep(POLL_S)
                continue
            for record in records:
                await self._receive(record)

    async def _receive(self, record: Record) -> None:
        try:
            envelope = self._admit(record, now_ms())
        except MeshError as exc:
            await self._refuse(record, exc)
            return
        pending = self._pending.get(envelope.correlation_id or "")
        if pending is None or pending[1].done():
            self.ignored += 1  # another instance's reply, or one that came after its deadline
            return
        expected, future = pending
        refused = refusal(expected, envelope)
        if refused is not None:
            await self._refuse(record, refused)  # the call keeps waiting for its answer
            return
        del self._pending[expected.correlation_id]
        future.set_result(envelope)

    async def _refuse(self, record: Record, exc: MeshError) -> None:
        self.rejected += 1
        log.warning("refused reply at %s:%s@%s: %s: %s", record.topic, record.partition,
                    record.offset, exc.code, exc)
        try:
            await self._reject(record, exc)
        except MeshError as quarantine_failure:
            log.error("could not quarantine a refused reply: %s", quarantine_failure)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task], timeout=STOP_TIMEOUT_S)
        for _, future in self._pending.values():
            future.cancel()
        self._pending.clear()
        await self._reader.stop()
