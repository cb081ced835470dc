"""A long-lived service worker: a consumer-group member that handles requests and replies.

Offsets are committed only after the reply has been acknowledged by the broker, so a worker
that dies mid-batch leaves its records to the next group member.
"""

from __future__ import annotations

import asyncio
import logging

from bus.envelope import KIND_REQUEST, from_record, now_ms, to_headers
from bus.errors import EnvelopeError, MeshError
from bus.service import Service
from bus.transport import Record, Transport

log = logging.getLogger(__name__)
POLL_S = 0.5


class ServiceWorker:
    def __init__(self, service: Service, transport: Transport, group_id: str | None = None) -> None:
        self.service = service
        self._transport = transport
        self._group_id = group_id or service.name
        self.handled = 0
        self.rejected = 0

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
        try:
            request = from_record(record.headers, record.value)
        except EnvelopeError as exc:
            self.rejected += 1
            log.warning("rejected %s:%s@%s: %s", record.topic, record.partition, record.offset, exc)
            return
        if request.kind != KIND_REQUEST or request.reply_to is None:
            self.rejected += 1
            log.warning("rejected %s: kind %s on a request topic", request.id, request.kind)
            return
        if request.expired(now_ms()):
            self.rejected += 1
            log.info("dropped %s: deadline passed before it was read", request.id)
            return
        outcome = await self.service.handle(request)
        self.handled += 1
        if outcome.reply is not None:
            await self._transport.send(
                request.reply_to.topic,
                outcome.reply.value,
                headers=to_headers(outcome.reply),
                partition=request.reply_to.partition,
            )
