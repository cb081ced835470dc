"""The librdkafka transport's producer: records queued on the loop, their delivery reports
served on the loop (``bus.transport.rdkafka``)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from bus.errors import TransportError
from bus.transport.rdkafka_config import START_TIMEOUT_S, producer_config
from bus.transport.rdkafka_connection import (
    CLOSE_TIMEOUT_S,
    Connection,
    librdkafka_log,
    log,
    mesh_error,
    raised,
)

DR_TICK_S = 0.001  # the producer's reports are served this often while records await them
IDLE_TICK_S = 0.1  # and this often otherwise
BUFFER_FULL_RETRY_S = 0.005


class RdProducer:
    """A librdkafka producer whose delivery reports are served on the loop: ``poll(0)``
    (which never waits) every ``DR_TICK_S`` while records await their reports, every
    ``IDLE_TICK_S`` otherwise (errors, log lines). A report handed from another thread would
    wait for the GIL, up to the interpreter's switch interval (5 ms) when the loop is busy."""

    def __init__(self, connection: Connection, loop: asyncio.AbstractEventLoop) -> None:
        config = producer_config(connection.settings, connection.security, connection.oauth_cb)
        config["error_cb"] = connection.on_error
        config["logger"] = librdkafka_log
        self.client = Producer(config)
        self.broken = False
        self._loop = loop
        self._outstanding = 0
        self._reports: deque[tuple[asyncio.Future[None], KafkaError | None]] = deque()
        self._tick_handle: asyncio.TimerHandle | None = loop.call_later(IDLE_TICK_S, self._tick)
        self._fast = False

    def _serve(self) -> None:  # on the loop
        try:
            self.client.poll(0)
        except KafkaException as exc:  # a fatal error: the sends see it in their reports
            log.warning("librdkafka producer poll: %s", exc)
        self._settle()

    def _tick(self) -> None:  # on the loop
        self._tick_handle = None
        self._serve()
        self._fast = self._outstanding > 0
        self._tick_handle = self._loop.call_later(DR_TICK_S if self._fast else IDLE_TICK_S,
                                                  self._tick)

    def delivered(self, future: asyncio.Future[None], error: KafkaError | None,
                  _message: Message) -> None:  # whoever polls: the loop, or a flush's thread
        self._reports.append((future, error))

    def _settle(self) -> None:  # on the loop
        while self._reports:
            future, error = self._reports.popleft()
            self._outstanding -= 1
            if future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                if error.fatal():
                    self.broken = True  # an idempotent producer that lost its state
                future.set_exception(mesh_error("send", error))

    async def send(self, topic: str, value: bytes, headers: Sequence[tuple[str, bytes]],
                   key: bytes | None, partition: int | None) -> None:
        future: asyncio.Future[None] = self._loop.create_future()
        give_up = 0.0
        while True:
            try:
                self.client.produce(topic, value, key,
                                    partition=-1 if partition is None else partition,
                                    headers=list(headers),
                                    on_delivery=partial(self.delivered, future))
                break
            except BufferError:  # librdkafka's queue is full: wait for reports to free it
                give_up = give_up or time.monotonic() + START_TIMEOUT_S
                if time.monotonic() >= give_up:
                    raise TransportError(f"send to {topic}: the producer's queue stayed full "
                                         f"for {START_TIMEOUT_S:g}s") from None
                await asyncio.sleep(BUFFER_FULL_RETRY_S)
            except KafkaException as exc:
                raise raised(f"send to {topic}", exc) from None
        self._outstanding += 1
        if self._outstanding > 1:
            # Others await their reports: serve what has come (a timer cannot fire sooner
            # than every millisecond; under load the sends themselves serve the reports).
            self._serve()
        if not self._fast and self._tick_handle is not None:  # wake the ticker up
            self._tick_handle.cancel()
            self._fast = True
            self._tick_handle = self._loop.call_later(DR_TICK_S, self._tick)
        # Bounded by librdkafka: every record gets its report within message.timeout.ms.
        await future

    async def close(self, executor: ThreadPoolExecutor) -> None:
        handle, self._tick_handle = self._tick_handle, None
        if handle is not None:
            handle.cancel()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await asyncio.get_running_loop().run_in_executor(executor, self.client.flush,
                                                                 CLOSE_TIMEOUT_S)
        finally:
            self._settle()
