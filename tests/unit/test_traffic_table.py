"""The traffic table and its reloader (a fake source)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from bus.traffic.model import TrafficRules
from bus.traffic.table import TrafficReloader, TrafficTable


class Source:
    def __init__(self) -> None:
        self.value: Mapping[str, Any] | Exception = {}
        self.reads = 0

    def load(self) -> Mapping[str, Any]:
        self.reads += 1
        if isinstance(self.value, Exception):
            raise self.value
        return self.value


CANARY = {"orders.create": {"split": [{"subset": "", "weight": 90},
                                      {"subset": "canary", "weight": 10}]}}


async def test_reload_swaps_rules_only_when_they_change() -> None:
    table, source = TrafficTable(), Source()
    reloader = TrafficReloader(table, source, interval_s=60)
    source.value = CANARY
    assert await reloader.reload_once() is True
    rules = table.rules_for("orders.create")
    assert rules is not None
    assert [s.weight for s in rules.split] == [90, 10]
    assert await reloader.reload_once() is False
    assert table.version == 1


async def test_bad_rules_or_a_failing_source_keep_the_rules_in_force() -> None:
    table, source = TrafficTable(), Source()
    reloader = TrafficReloader(table, source, interval_s=60)
    source.value = CANARY
    await reloader.reload_once()
    before = table.rules_for("orders.create")
    source.value = {"orders.create": {"split": [{"subset": "", "weight": 50}]}}  # sums to 50
    assert await reloader.reload_once() is False
    source.value = OSError("disk gone")
    assert await reloader.reload_once() is False
    assert reloader.failures == 2
    assert table.rules_for("orders.create") == before
    assert table.version == 1


async def test_run_polls_until_stopped() -> None:
    table, source = TrafficTable(), Source()
    source.value = CANARY
    stop = asyncio.Event()
    task = asyncio.create_task(TrafficReloader(table, source, interval_s=0.01).run(stop))
    async with asyncio.timeout(5):
        while source.reads < 3:  # noqa: ASYNC110 - polls a counter the source owns
            await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert table.rules_for("orders.create") == TrafficRules.model_validate(CANARY["orders.create"])
