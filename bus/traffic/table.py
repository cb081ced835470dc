"""The traffic rules in force, and their reloading without a restart.

A ``TrafficSource`` reads the rules (a policy file, an SSM parameter); a ``TrafficReloader``
polls it on an owned task and swaps the table when the rules changed. A source that fails
or returns invalid rules leaves the rules in force untouched (and says so in the log).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from pydantic import TypeAdapter, ValidationError

from bus.errors import MeshError
from bus.traffic.model import TrafficRules

log = logging.getLogger(__name__)
RULES = TypeAdapter(dict[str, TrafficRules])


class TrafficSourceError(MeshError):
    """A source could not produce rules (unreadable, malformed): the rules in force stay."""

    retriable = True
    code = "traffic_source"


class TrafficSource(Protocol):
    def load(self) -> Mapping[str, Any]:
        """The raw rules by operation (may block: it runs in a thread); raises
        ``TrafficSourceError`` when it cannot."""
        ...


class TrafficTable:
    def __init__(self, rules: Mapping[str, TrafficRules] | None = None) -> None:
        self._rules: dict[str, TrafficRules] = dict(rules or {})
        self.version = 0

    def rules_for(self, operation: str) -> TrafficRules | None:
        return self._rules.get(operation)

    def replace(self, rules: Mapping[str, TrafficRules]) -> bool:
        """Swap in ``rules``; False (and nothing changed) when they are the same."""
        if dict(rules) == self._rules:
            return False
        self._rules = dict(rules)
        self.version += 1
        return True


def parse_rules(raw: Mapping[str, Any]) -> dict[str, TrafficRules]:
    return RULES.validate_python(dict(raw))


class TrafficReloader:
    def __init__(self, table: TrafficTable, source: TrafficSource, interval_s: float) -> None:
        self._table = table
        self._source = source
        self._interval_s = interval_s
        self.failures = 0

    async def reload_once(self) -> bool:
        """Read the source now; True when the rules in force changed."""
        try:
            rules = parse_rules(await asyncio.to_thread(self._source.load))
        except (MeshError, OSError, ValueError, ValidationError) as exc:
            self.failures += 1
            log.error("traffic rules not reloaded, keeping version %d: %s",
                      self._table.version, exc)
            return False
        changed = self._table.replace(rules)
        if changed:
            log.info("traffic rules reloaded: version %d, %d operations", self._table.version,
                     len(rules))
        return changed

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.reload_once()
            try:
                await asyncio.wait_for(stop.wait(), self._interval_s)
            except TimeoutError:
                continue
