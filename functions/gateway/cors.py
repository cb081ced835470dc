"""CORS for the edge: Starlette's ``CORSMiddleware`` for every request that names an
``Origin``, and a lean path for those that do not (issue 15: most API calls, whose only
CORS work is ``Vary: Origin`` on the answer, paid Starlette's header parsing twice per
request).

The lean path answers exactly as Starlette does for a request without ``Origin``: every
``Vary`` value of the answer joined into one header, ``, Origin`` appended, kept at the first
``Vary``'s place (appended when there was none); nothing else changes.
"""

from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware
from starlette.types import Message, Receive, Scope, Send

ORIGIN = b"origin"
VARY = b"vary"


def vary_origin(headers: list[tuple[bytes, bytes]]) -> None:
    """Add ``Origin`` to the ``Vary`` header of an answer's raw headers, in place (pure
    otherwise), as Starlette's ``headers["Vary"] = ", ".join([*getlist("Vary"), "Origin"])``."""
    found = [index for index, (name, _) in enumerate(headers) if name == VARY]
    value = b", ".join([*(headers[i][1] for i in found), b"Origin"])
    for index in reversed(found[1:]):
        del headers[index]
    if found:
        headers[found[0]] = (VARY, value)
    else:
        headers.append((VARY, value))


class EdgeCorsMiddleware(CORSMiddleware):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or any(name == ORIGIN for name, _ in scope["headers"]):
            await super().__call__(scope, receive, send)
            return

        async def send_vary(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message["headers"] = list(message.get("headers", []))
                vary_origin(headers)
            await send(message)

        await self.app(scope, receive, send_vary)
