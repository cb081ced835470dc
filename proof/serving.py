"""A stdlib HTTP server answering from a thread of its own, for as long as a ``with`` lasts:
what the attack suites' local impostors and the tests' scripted servers share."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import HTTPServer
from typing import TypeVar

Server = TypeVar("Server", bound=HTTPServer)
JOIN_TIMEOUT_S = 5.0


@contextmanager
def serving(server: Server, poll_interval_s: float = 0.05) -> Iterator[Server]:
    """``server`` answering from a thread of its own; shut down and closed afterwards."""
    thread = threading.Thread(target=server.serve_forever, args=(poll_interval_s,),
                              daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(JOIN_TIMEOUT_S)
