"""functions.orders.service: pricing with Decimal and idempotent order ids."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from bus.envelope import Envelope, ReplyTo, new_request, now_ms
from functions.orders.service import orders, price
from functions.shared.orders_contract import CreateOrder, OrderCreated


def _order(*lines: tuple[str, int, str], customer: str = "alice") -> CreateOrder:
    return CreateOrder.model_validate(
        {
            "customer": customer,
            "lines": [{"sku": s, "quantity": q, "unit_price": p} for s, q, p in lines],
        }
    )


def test_price_totals_with_decimal() -> None:
    created = price(_order(("a", 3, "0.10"), ("b", 1, "0.20")), "m1")
    # with floats this would be 0.5000000000000001
    assert created.total == Decimal("0.50")
    assert isinstance(created.total, Decimal)
    assert created.item_count == 4
    assert created.customer == "alice"
    assert created.status == "accepted"
    assert created.handled_by == "orders"


def test_price_of_many_lines() -> None:
    created = price(_order(("a", 2, "9.99"), ("b", 1, "5.00"), ("c", 10_000, "0.01")), "m1")
    assert created.total == Decimal("124.98")
    assert created.item_count == 10_003


def test_free_items_total_zero() -> None:
    assert price(_order(("gift", 5, "0")), "m1").total == Decimal("0")


def test_same_message_id_same_order_id() -> None:
    first = price(_order(("a", 1, "1.00")), "message-123")
    again = price(_order(("b", 9, "7.00"), customer="bob"), "message-123")
    other = price(_order(("a", 1, "1.00")), "message-124")
    assert first.order_id == again.order_id
    assert first.order_id != other.order_id
    assert re.fullmatch(r"ord_[0-9a-f]{16}", first.order_id)


def test_total_serializes_exactly() -> None:
    created = price(_order(("a", 3, "0.10")), "m")
    assert json.loads(created.model_dump_json())["total"] == "0.30"


@pytest.mark.parametrize(
    "payload",
    [
        {"customer": "", "lines": [{"sku": "a", "quantity": 1, "unit_price": "1"}]},
        {"customer": "c", "lines": []},
        {"customer": "c", "lines": [{"sku": "", "quantity": 1, "unit_price": "1"}]},
        {"customer": "c", "lines": [{"sku": "a", "quantity": 0, "unit_price": "1"}]},
        {"customer": "c", "lines": [{"sku": "a", "quantity": 10_001, "unit_price": "1"}]},
        {"customer": "c", "lines": [{"sku": "a", "quantity": 1, "unit_price": "-1"}]},
        {"customer": "c", "lines": [{"sku": "a", "quantity": 1, "unit_price": "1.001"}]},
        {"customer": "c"},
    ],
)
def test_create_order_validation(payload: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        CreateOrder.model_validate(payload)


def test_orders_service_serves_orders_create() -> None:
    assert orders.name == "orders"
    assert orders.request_topic == "orders.requests"
    assert set(orders.handlers) == {"orders.create", "orders.quote", "orders.report"}


def _request(payload: dict[str, Any]) -> Envelope:
    return new_request(
        source="gateway", operation="orders.create", value=json.dumps(payload).encode(),
        reply_to=ReplyTo("mesh.replies", 0), deadline_ms=now_ms() + 60_000,
    )


async def test_handler_answers_the_priced_order() -> None:
    request = _request({"customer": "c", "lines": [{"sku": "a", "quantity": 2,
                                                    "unit_price": "1.25"}]})
    outcome = await orders.handle(request)
    assert outcome.error_code is None
    assert outcome.reply is not None
    answer = OrderCreated.model_validate_json(outcome.reply.value)
    assert answer.total == Decimal("2.50")
    assert answer.order_id == price(_order(("a", 2, "1.25")), request.id).order_id


async def test_handler_refuses_invalid_order_with_invalid_order() -> None:
    outcome = await orders.handle(_request({"customer": "c", "lines": []}))
    assert outcome.error_code == "invalid_order"
    assert outcome.reply is not None
    body = json.loads(outcome.reply.value)
    assert body["code"] == "invalid_order"
    assert body["retriable"] is False
    assert body["message"]
