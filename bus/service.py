"""The service side of the mesh: handlers keyed by operation, and the reply they produce."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from pydantic import BaseModel

from bus import codec
from bus.context import current_message
from bus.envelope import Envelope, now_ms, reply_for
from bus.errors import DeadlineExceeded, HandlerError, MeshError, UnknownOperation
from bus.topics import request_topic, service_of

log = logging.getLogger(__name__)

Payload = dict[str, Any]
Handler = Callable[[Payload, Envelope], Awaitable[BaseModel | Payload]]
EventHandler = Callable[[Payload, Envelope], Awaitable[None]]


class Outcome(NamedTuple):
    """What handling one request produced: the reply to send, or None (nobody waits)."""

    reply: Envelope | None
    error_code: str | None = None
    retriable: bool = False


class Service:
    """A named set of handlers, e.g. ``@orders.operation("orders.create")``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.handlers: dict[str, Handler] = {}
        self.event_handlers: dict[str, dict[str, EventHandler]] = {}

    @property
    def request_topic(self) -> str:
        return request_topic(self.name)

    def request_topic_of(self, subset: str) -> str:
        return request_topic(self.name, subset)

    def operation(self, name: str) -> Callable[[Handler], Handler]:
        if service_of(name) != self.name:
            raise ValueError(f"operation {name!r} does not belong to service {self.name!r}")

        def register(handler: Handler) -> Handler:
            if name in self.handlers:
                raise ValueError(f"operation {name!r} already has a handler")
            self.handlers[name] = handler
            return handler

        return register

    def on_event(self, topic: str, event_type: str) -> Callable[[EventHandler], EventHandler]:
        """Handle events of ``event_type`` published on ``topic``."""

        def register(handler: EventHandler) -> EventHandler:
            by_type = self.event_handlers.setdefault(topic, {})
            if event_type in by_type:
                raise ValueError(f"{topic}/{event_type} already has a handler")
            by_type[event_type] = handler
            return handler

        return register

    async def handle_event(self, topic: str, event: Envelope) -> bool:
        """Run the handler for ``event`` (False when this service ignores its type).

        Raises what the handler raises: the subscriber decides between retry and dead letter.
        """
        handler = self.event_handlers.get(topic, {}).get(event.type)
        if handler is None:
            return False
        token = current_message.set(event)
        try:
            await handler(codec.decode(event.value), event)
        finally:
            current_message.reset(token)
        return True

    async def handle(self, request: Envelope) -> Outcome:
        """Run the handler for ``request`` within its deadline and build the reply."""
        token = current_message.set(request)
        try:
            return await self._handle(request)
        finally:
            current_message.reset(token)

    async def _handle(self, request: Envelope) -> Outcome:
        try:
            body = await self._call(request)
        except MeshError as exc:
            return Outcome(self._error_reply(request, exc), _code(exc), _retriable(exc))
        except Exception as exc:  # catch-all on purpose: a handler's bug becomes an error
            # reply (logged with its traceback, counted as "internal"), never a silent caller
            log.exception("handler for %s failed on message %s", request.type, request.id)
            wrapped = HandlerError("internal", f"{type(exc).__name__} in handler", retriable=True)
            return Outcome(self._error_reply(request, wrapped), "internal", True)
        return Outcome(reply_for(request, source=self.name, value=codec.encode(body)))

    async def _call(self, request: Envelope) -> BaseModel | Payload:
        handler = self.handlers.get(request.type)
        if handler is None:
            raise UnknownOperation(f"{self.name} has no operation {request.type!r}")
        remaining = request.remaining_ms(now_ms())
        if remaining is not None and remaining <= 0:
            raise DeadlineExceeded(f"{request.type}: deadline passed before handling")
        payload = codec.decode(request.value)
        if remaining is None:
            return await handler(payload, request)
        try:
            async with asyncio.timeout(remaining / 1000):  # no extra task, unlike wait_for
                return await handler(payload, request)
        except TimeoutError:
            raise DeadlineExceeded(f"{request.type}: handler ran past the deadline") from None

    def _error_reply(self, request: Envelope, error: MeshError) -> Envelope:
        body = {"code": _code(error), "message": error.message, "retriable": _retriable(error)}
        return reply_for(request, source=self.name, value=codec.encode(body), error=True)


def _code(error: MeshError) -> str:
    return error.error_code if isinstance(error, HandlerError) else error.code


def _retriable(error: MeshError) -> bool:
    return error.retriable
