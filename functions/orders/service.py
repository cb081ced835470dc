"""Handlers of the demo ``orders`` service: pure business logic on the bus runtime."""

from __future__ import annotations

import hashlib
from decimal import Decimal

from pydantic import ValidationError

from bus.envelope import Envelope
from bus.errors import HandlerError
from bus.service import Payload, Service
from functions.shared.orders_contract import CreateOrder, OrderCreated

orders = Service("orders")


def price(order: CreateOrder, message_id: str) -> OrderCreated:
    """The order's total and an id derived from the request id (same request, same order)."""
    total = sum((line.unit_price * line.quantity for line in order.lines), Decimal("0"))
    order_id = "ord_" + hashlib.sha256(message_id.encode()).hexdigest()[:16]
    return OrderCreated(
        order_id=order_id,
        customer=order.customer,
        total=total,
        item_count=sum(line.quantity for line in order.lines),
    )


@orders.operation("orders.create")
async def create_order(payload: Payload, message: Envelope) -> OrderCreated:
    try:
        order = CreateOrder.model_validate(payload)
    except ValidationError as exc:
        raise HandlerError("invalid_order", exc.errors()[0]["msg"]) from exc
    return price(order, message.id)
