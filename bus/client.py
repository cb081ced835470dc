"""The caller side of the mesh: request/reply and events."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from pydantic import BaseModel

from bus import codec
from bus.config import BusSettings
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
from bus.errors import DeadlineExceeded, EnvelopeError, RemoteError
from bus.replies import ReplyListener
from bus.topics import topic_for_operation
from bus.tracing import new_traceparent
from bus.transport import Transport


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
    """Sends requests and events as ``settings.service_name``; starts on first use."""

    def __init__(self, transport: Transport, settings: BusSettings) -> None:
        self.settings = settings
        self._transport = transport
        self._listener: ReplyListener | None = None
        self._start_lock = asyncio.Lock()

    async def start(self) -> ReplyListener:
        async with self._start_lock:
            if self._listener is None:
                topic = self.settings.reply_topic
                partition = self.settings.reply_partition
                if partition is None:
                    partition = random.randrange(await self._transport.partition_count(topic))
                listener = ReplyListener(self._transport, topic, partition)
                await listener.start()
                self._listener = listener
            return self._listener

    async def request(
        self,
        operation: str,
        payload: BaseModel | dict[str, Any],
        *,
        timeout_s: float | None = None,
        traceparent: str | None = None,
    ) -> dict[str, Any]:
        """Send ``payload`` to ``operation`` and wait for its reply until the deadline."""
        timeout = self.settings.request_timeout_s if timeout_s is None else timeout_s
        deadline_ms = now_ms() + int(timeout * 1000)
        listener = await self.start()
        envelope = new_request(
            source=self.settings.service_name,
            operation=operation,
            value=codec.encode(payload),
            reply_to=ReplyTo(listener.topic, listener.partition),
            deadline_ms=deadline_ms,
            traceparent=traceparent or new_traceparent(),
        )
        correlation_id = envelope.correlation_id or envelope.id
        waiter = listener.expect(correlation_id)
        try:
            await self._transport.send(
                topic_for_operation(operation),
                envelope.value,
                headers=to_headers(envelope),
                key=envelope.id.encode(),
            )
            remaining_s = max(0.0, (deadline_ms - now_ms()) / 1000)
            try:
                reply = await asyncio.wait_for(waiter, remaining_s)
            except TimeoutError:
                raise DeadlineExceeded(
                    f"{operation}: no reply within {timeout:g}s"
                ) from None
        finally:
            listener.forget(correlation_id)
        if reply.kind == KIND_ERROR:
            raise remote_error(reply)
        return codec.decode(reply.value)

    async def publish(
        self, topic: str, event_type: str, payload: BaseModel | dict[str, Any], *,
        key: bytes | None = None,
    ) -> str:
        """Publish an event; returns its id once the broker has acknowledged it."""
        envelope = Envelope(
            id=new_id(),
            source=self.settings.service_name,
            type=event_type,
            kind=KIND_EVENT,
            value=codec.encode(payload),
            time_ms=now_ms(),
            traceparent=new_traceparent(),
        )
        await self._transport.send(topic, envelope.value, headers=to_headers(envelope), key=key)
        return envelope.id

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.stop()
        await self._transport.close()
