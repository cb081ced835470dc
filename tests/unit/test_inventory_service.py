"""functions.inventory.service: predictable stock, reservations and their refusals, on the
in-memory mesh."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator

import pytest

from bus.errors import HandlerError, RemoteError
from bus.testing import MeshTestKit, mesh_test_kit
from functions.inventory.service import MAX_STOCK, WAREHOUSES, inventory, stock_of
from functions.shared.inventory_contract import StockLevel


@pytest.fixture
async def kit() -> AsyncIterator[MeshTestKit]:
    async with mesh_test_kit(inventory) as running:
        yield running


def test_inventory_serves_its_two_operations() -> None:
    assert inventory.request_topic == "inventory.requests"
    assert set(inventory.handlers) == {"inventory.stock", "inventory.reserve"}


def test_stock_is_a_function_of_the_skus_hash() -> None:
    digest = hashlib.sha256(b"sku-1").digest()
    assert stock_of("sku-1") == StockLevel(
        sku="sku-1", available=int.from_bytes(digest[:4], "big") % MAX_STOCK,
        warehouse=WAREHOUSES[digest[4] % len(WAREHOUSES)])
    levels = [stock_of(f"sku-{n}") for n in range(200)]
    assert all(0 <= level.available < MAX_STOCK for level in levels)
    assert {level.warehouse for level in levels} == set(WAREHOUSES)
    assert len({level.available for level in levels}) > 100  # not a constant


def test_a_missing_sku_is_not_found() -> None:
    with pytest.raises(HandlerError) as raised:
        stock_of("missing-42")
    assert raised.value.error_code == "not_found"


async def test_stock_through_the_mesh(kit: MeshTestKit) -> None:
    answer = await kit.client("gateway").request("inventory.stock", {"sku": "sku-7"})
    assert answer == stock_of("sku-7").model_dump()


async def test_stock_ignores_the_routes_quantity(kit: MeshTestKit) -> None:
    answer = await kit.client("gateway").request("inventory.stock",
                                                 {"sku": "sku-7", "quantity": 3})
    assert answer == stock_of("sku-7").model_dump()


async def test_stock_of_a_missing_sku_answers_not_found(kit: MeshTestKit) -> None:
    with pytest.raises(RemoteError) as raised:
        await kit.client().request("inventory.stock", {"sku": "missing-1"})
    assert raised.value.remote_code == "not_found"
    assert raised.value.retriable is False


@pytest.mark.parametrize("payload", [{}, {"sku": ""}, {"sku": "bad sku!"}, {"sku": "x" * 65}])
async def test_stock_refuses_a_bad_sku(kit: MeshTestKit, payload: dict[str, str]) -> None:
    with pytest.raises(RemoteError) as raised:
        await kit.client().request("inventory.stock", payload)
    assert raised.value.remote_code == "invalid_request"
    assert "sku" in raised.value.message


def _sku_with_stock(minimum: int) -> str:
    return next(f"sku-{n}" for n in range(1000) if stock_of(f"sku-{n}").available >= minimum)


async def test_reserve_derives_the_id_from_the_request(kit: MeshTestKit) -> None:
    sku = _sku_with_stock(2)
    answer = await kit.client().request("inventory.reserve", {"sku": sku, "quantity": 2})
    [request] = kit.envelopes("inventory.requests")
    expected = "res_" + hashlib.sha256(request.id.encode()).hexdigest()[:16]
    assert answer == {"reservation_id": expected, "sku": sku, "quantity": 2,
                      "warehouse": stock_of(sku).warehouse}
    again = await kit.client().request("inventory.reserve", {"sku": sku, "quantity": 2})
    assert again["reservation_id"] != expected  # another call, another reservation
    assert re.fullmatch(r"res_[0-9a-f]{16}", again["reservation_id"])


async def test_reserve_all_that_is_available(kit: MeshTestKit) -> None:
    sku = _sku_with_stock(1)
    available = stock_of(sku).available
    answer = await kit.client().request("inventory.reserve", {"sku": sku, "quantity": available})
    assert answer["quantity"] == available


async def test_reserve_more_than_available_is_refused(kit: MeshTestKit) -> None:
    sku = _sku_with_stock(0)
    available = stock_of(sku).available
    with pytest.raises(RemoteError) as raised:
        await kit.client().request("inventory.reserve", {"sku": sku, "quantity": available + 1})
    assert raised.value.remote_code == "insufficient_stock"
    assert raised.value.retriable is False
    assert f"{available} available" in raised.value.message


async def test_reserve_of_a_missing_sku_answers_not_found(kit: MeshTestKit) -> None:
    with pytest.raises(RemoteError) as raised:
        await kit.client().request("inventory.reserve", {"sku": "missing-2", "quantity": 1})
    assert raised.value.remote_code == "not_found"


@pytest.mark.parametrize("quantity", [0, -1, 10_001, "many"])
async def test_reserve_refuses_a_bad_quantity(kit: MeshTestKit, quantity: object) -> None:
    with pytest.raises(RemoteError) as raised:
        await kit.client().request("inventory.reserve", {"sku": "sku-1", "quantity": quantity})
    assert raised.value.remote_code == "invalid_request"
    assert raised.value.message.startswith("quantity:")
