"""The botocore client behind a direct or fast client: given, or made once on first use."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class LazyBotocore:
    """Thread-safe: the stores call from ``asyncio.to_thread``, several threads at once."""

    def __init__(self, make: Callable[[], Any], *, made: Any = None) -> None:
        self._make = make
        self._client = made
        self._lock = threading.Lock()

    @classmethod
    def given(cls, client: Any) -> LazyBotocore:
        return cls(lambda: client, made=client)

    @property
    def made(self) -> Any:
        """The client, or None while nothing has asked for it."""
        return self._client

    def get(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._make()
            return self._client

    def attribute(self, name: str) -> Any:
        """What a wrapper's ``__getattr__`` answers: the client's ``name``, never a private
        one (nor the wrapper's own, asked before its ``__init__`` ended)."""
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.get(), name)
