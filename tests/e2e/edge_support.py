"""Helpers of the edge's e2e tests: credentials from the local stack's dev issuer and key
table, and how many requests reached the bus (``proof.attack.bus_probe``: end offsets of the
request topics)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from infra.cli import keys as keys_cli
from infra.keys import dev_issuer
from infra.settings import Settings
from proof.attack.bus_probe import end_offsets, values_since

_end_offsets = end_offsets  # the older private name, still imported by e2e tests


@contextmanager
def nothing_reaches_the_bus(settings: Settings, marker: str) -> Iterator[None]:
    """Asserts that no request carrying ``marker`` (a value unique to the test) was written
    to the request topics while the block ran; other traffic on the bus does not matter."""
    before = asyncio.run(end_offsets(settings.kafka_bootstrap))
    yield
    time.sleep(0.2)  # a send the gateway made would be acknowledged before it answered
    reached = [v for v in asyncio.run(values_since(settings.kafka_bootstrap, before))
               if marker.encode() in v]
    assert reached == [], "a refused request reached the bus"


def requests_on_the_bus(settings: Settings) -> int:
    """How many records the request topics hold (their end offsets, summed)."""
    return sum(asyncio.run(end_offsets(settings.kafka_bootstrap)).values())


def token(settings: Settings, **claims: Any) -> str:
    return dev_issuer.mint(settings, {"sub": "e2e-user", "scope": "catalog:read reports:write",
                                      **claims})


def issue_key(settings: Settings, *, rate: float = 50, burst: int = 100,
              quota: int | None = None) -> tuple[str, str]:
    """A fresh API key (plaintext, key id) in the deployed key table."""
    lines: list[str] = []
    record = keys_cli.issue_command(settings, lines.append, owner="e2e", rate=rate, burst=burst,
                                    quota=quota)
    return lines[-1], record.key_id
