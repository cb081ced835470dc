"""orders.quote (a nested call to inventory.stock) and orders.report (slow work within the
deadline), on the in-memory mesh with both services running."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bus.errors import RemoteError
from bus.telemetry.tracing import new_traceparent
from bus.testing import MeshTestKit, mesh_test_kit
from functions.inventory.service import inventory, stock_of
from functions.orders.service import list_price, order_count, orders


@pytest.fixture
async def kit() -> AsyncIterator[MeshTestKit]:
    async with mesh_test_kit(orders, inventory) as running:
        yield running


def _sku(in_stock_for: int) -> str:
    return next(f"sku-{n}" for n in range(1000)
                if stock_of(f"sku-{n}").available >= in_stock_for)


def test_list_price_is_deterministic_and_in_range() -> None:
    prices = [list_price(f"sku-{n}") for n in range(200)]
    assert all(Decimal("1.00") <= p <= Decimal("99.99") for p in prices)
    assert all(p == p.quantize(Decimal("0.01")) for p in prices)
    assert list_price("sku-1") == list_price("sku-1")
    assert len(set(prices)) > 100


async def test_quote_asks_inventory_and_prices(kit: MeshTestKit) -> None:
    sku = _sku(3)
    answer = await kit.client("gateway").request("orders.quote", {"sku": sku, "quantity": 3})
    unit = list_price(sku)
    assert answer == {"sku": sku, "quantity": 3, "unit_price": str(unit),
                      "total": str(unit * 3), "in_stock": True}
    [nested] = kit.envelopes("inventory.requests")
    assert (nested.source, nested.type) == ("orders", "inventory.stock")
    assert kit.worker("inventory").handled == 1


async def test_quote_of_more_than_available_is_not_in_stock(kit: MeshTestKit) -> None:
    sku = _sku(0)
    quantity = stock_of(sku).available + 1
    answer = await kit.client().request("orders.quote", {"sku": sku, "quantity": quantity})
    assert answer["in_stock"] is False
    assert Decimal(answer["total"]) == list_price(sku) * quantity


@pytest.mark.parametrize("payload", [{"sku": "sku-1"}, {"sku": "sku-1", "quantity": None}])
async def test_quote_quantity_defaults_to_one(kit: MeshTestKit, payload: dict[str, object]
                                              ) -> None:
    answer = await kit.client().request("orders.quote", payload)
    assert answer["quantity"] == 1
    assert answer["total"] == answer["unit_price"] == str(list_price("sku-1"))
    assert answer["in_stock"] is (stock_of("sku-1").available >= 1)


async def test_quote_continues_the_callers_trace(kit: MeshTestKit) -> None:
    trace = new_traceparent()
    await kit.client().request("orders.quote", {"sku": "sku-1"}, traceparent=trace)
    [outer] = kit.envelopes("orders.requests")
    [nested] = kit.envelopes("inventory.requests")
    trace_id = trace.split("-")[1]
    assert outer.traceparent is not None
    assert nested.traceparent is not None
    assert outer.traceparent.split("-")[1] == nested.traceparent.split("-")[1] == trace_id


async def test_quote_of_a_missing_sku_keeps_inventorys_not_found(kit: MeshTestKit) -> None:
    with pytest.raises(RemoteError) as raised:
        await kit.client().request("orders.quote", {"sku": "missing-9"})
    assert raised.value.remote_code == "not_found"
    assert raised.value.retriable is False
    assert raised.value.message.startswith("inventory.stock:")


@pytest.mark.parametrize("payload", [{}, {"sku": "a b"}, {"sku": "sku-1", "quantity": 0}])
async def test_quote_refuses_a_bad_request_without_asking_inventory(
    kit: MeshTestKit, payload: dict[str, object]
) -> None:
    with pytest.raises(RemoteError) as raised:
        await kit.client().request("orders.quote", payload)
    assert raised.value.remote_code == "invalid_request"
    assert kit.envelopes("inventory.requests") == []


async def test_report_counts_the_customers_orders(kit: MeshTestKit) -> None:
    before = datetime.now(UTC)
    answer = await kit.client().request("orders.report", {"customer": "alice"})
    assert answer["customer"] == "alice"
    assert answer["orders"] == order_count("alice")
    generated = datetime.fromisoformat(answer["generated_at"])
    assert before - timedelta(seconds=1) <= generated <= datetime.now(UTC)


async def test_report_takes_work_ms(kit: MeshTestKit) -> None:
    started = time.monotonic()
    await kit.client().request("orders.report", {"customer": "bob", "work_ms": 300})
    assert time.monotonic() - started >= 0.3


async def test_report_refuses_work_that_does_not_fit_the_deadline(kit: MeshTestKit) -> None:
    # Refused at once, not slept on: a handler that slept the 60 s of work first would let
    # the caller's 30 s deadline pass, and the call would end in DeadlineExceeded, not in
    # the handler's deadline_too_short answer (no stopwatch needed).
    with pytest.raises(RemoteError) as raised:
        await kit.client().request("orders.report", {"customer": "c", "work_ms": 60_000},
                                   timeout_s=30)
    assert raised.value.remote_code == "deadline_too_short"
    assert kit.worker("orders").handled == 1


@pytest.mark.parametrize("payload", [{}, {"customer": ""}, {"customer": "c", "work_ms": -1},
                                     {"customer": "c", "work_ms": 60_001}])
async def test_report_refuses_a_bad_request(kit: MeshTestKit, payload: dict[str, object]
                                            ) -> None:
    with pytest.raises(RemoteError) as raised:
        await kit.client().request("orders.report", payload)
    assert raised.value.remote_code == "invalid_request"
