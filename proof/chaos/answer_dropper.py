"""A TCP proxy in front of the emulator that loses answers: of the requests whose
``x-amz-target`` ends with one of ``targets``, every ``every``-th distinct one (by its body:
a client's retry sends the same body, and is then relayed) is forwarded and answered by the
emulator (the write lands), then the client's connection is closed without that answer, as
a network that drops a connection at the wrong moment would. Counting distinct bodies keeps
the choice independent of timing: a worker's claims and completions alternate, so both lose
answers. Everything else is relayed unchanged.

HTTP/1.1 with ``content-length`` bodies only (what the DynamoDB clients send and the
emulator answers); one upstream connection per client connection.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from proof.procs import free_port

READ_TIMEOUT_S = 30.0


async def read_message(reader: asyncio.StreamReader) -> tuple[bytes, dict[str, str]] | None:
    """One HTTP message (head and body) and its headers (lower-case names); None at EOF."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
    except asyncio.IncompleteReadError:
        return None
    headers: dict[str, str] = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await asyncio.wait_for(reader.readexactly(length), READ_TIMEOUT_S) if length else b""
    return head + body, headers


@dataclass
class AnswerDropper:
    upstream: str  # the emulator's URL
    every: int
    targets: tuple[str, ...] = ("PutItem",)
    matched: int = 0  # distinct bodies of the targets
    dropped: int = 0
    relayed: int = 0
    _seen: set[bytes] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    def _drop_this(self, headers: dict[str, str], raw: bytes) -> bool:
        if not headers.get("x-amz-target", "").endswith(self.targets):
            return False
        body = hashlib.sha256(raw.partition(b"\r\n\r\n")[2]).digest()
        if body in self._seen:
            return False  # a retry of a request seen before
        self._seen.add(body)
        self.matched += 1
        return self.matched % self.every == 0

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
                     ) -> None:
        parts = urlsplit(self.upstream)
        up_r, up_w = await asyncio.open_connection(parts.hostname, parts.port)
        self._writers.update((client_w, up_w))
        try:
            while (request := await read_message(client_r)) is not None:
                raw, headers = request
                up_w.write(raw)
                await up_w.drain()
                answer = await read_message(up_r)
                if answer is None:
                    return
                if self._drop_this(headers, raw):
                    self.dropped += 1
                    return  # the write landed; its answer goes nowhere
                self.relayed += 1
                client_w.write(answer[0])
                await client_w.drain()
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            return
        finally:
            for writer in (client_w, up_w):
                writer.close()
                self._writers.discard(writer)

    def close_all(self) -> None:
        """End every connection: its task sees the end of its stream and returns."""
        for writer in list(self._writers):
            writer.close()


@asynccontextmanager
async def dropping_answers(upstream: str, every: int) -> AsyncIterator[tuple[AnswerDropper,
                                                                              str]]:
    """The proxy, running, and its URL; stopped (every connection closed) afterwards."""
    dropper = AnswerDropper(upstream, every)
    port = free_port()
    server = await asyncio.start_server(dropper._serve, "127.0.0.1", port)
    try:
        yield dropper, f"http://127.0.0.1:{port}"
    finally:
        server.close()
        dropper.close_all()
        await asyncio.wait_for(server.wait_closed(), 5)
