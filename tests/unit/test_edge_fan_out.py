"""fan_out directly: parts run at once, each under its own deadline, and a failed required
part ends the wait for the others."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bus.errors import DeadlineExceeded, RemoteError
from bus.policy.edge import AggregatePart
from functions.gateway.aggregate import fan_out, merged

PARTS = {"stock": AggregatePart(operation="inventory.stock", timeout_ms=2000, required=True),
         "quote": AggregatePart(operation="orders.quote", timeout_ms=2000)}


async def test_a_failed_required_part_does_not_wait_for_the_others() -> None:
    cancelled: list[str] = []

    async def call(operation: str, timeout_s: float) -> dict[str, Any]:
        if operation == "inventory.stock":
            raise RemoteError("not_found", "no such sku", False)
        try:
            await asyncio.sleep(timeout_s)
        except asyncio.CancelledError:
            cancelled.append(operation)
            raise
        return {}

    outcomes = await fan_out(PARTS, call, budget_s=5)
    # Not waited for: the quote (which would sleep its whole 2 s) was cancelled, not finished.
    assert cancelled == ["orders.quote"]
    assert isinstance(outcomes["quote"].error, DeadlineExceeded)
    with pytest.raises(RemoteError):
        merged(PARTS, outcomes)


async def test_parts_run_concurrently_under_the_smaller_of_their_timeout_and_the_budget(
) -> None:
    seen: dict[str, float] = {}
    both_started = asyncio.Event()

    async def call(operation: str, timeout_s: float) -> dict[str, Any]:
        seen[operation] = timeout_s
        if len(seen) == len(PARTS):
            both_started.set()
        # Together, not one after the other: each part answers only once every part has been
        # called, so parts run one at a time would never answer (each is cut at its deadline).
        await both_started.wait()
        return {"op": operation}

    outcomes = await fan_out(PARTS, call, budget_s=1.5)
    assert seen == {"inventory.stock": 1.5, "orders.quote": 1.5}
    assert merged(PARTS, outcomes) == {"data": {"stock": {"op": "inventory.stock"},
                                                "quote": {"op": "orders.quote"}},
                                       "errors": {}, "partial": False}


async def test_a_part_that_ignores_its_deadline_is_cut_and_reported() -> None:
    async def call(operation: str, timeout_s: float) -> dict[str, Any]:
        if operation == "orders.quote":
            await asyncio.sleep(10)  # never honours timeout_s
        return {}

    parts = {"stock": PARTS["stock"],
             "quote": AggregatePart(operation="orders.quote", timeout_ms=100)}
    outcomes = await fan_out(parts, call, budget_s=5)
    assert isinstance(outcomes["quote"].error, DeadlineExceeded)
    body = merged(parts, outcomes)
    assert body["partial"] is True
    assert body["errors"]["quote"]["status"] == 504
