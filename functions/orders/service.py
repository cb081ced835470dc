"""Handlers of the demo ``orders`` service: pure business logic on the bus runtime.

``orders.quote`` asks ``inventory.stock`` through the mesh from inside the handler (a nested
call: it inherits the handled message's deadline, trace and principal).
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import BaseModel, Field, ValidationError, field_validator

from bus.context import mesh_client
from bus.envelope import Envelope, now_ms
from bus.errors import HandlerError, RemoteError
from bus.service import Payload, Service
from functions.shared.inventory_contract import SKU_PATTERN, StockLevel
from functions.shared.orders_contract import CreateOrder, OrderCreated

orders = Service("orders")

STOCK_TIMEOUT_S = 2.0  # capped by the handled message's deadline
MAX_ORDERS = 50
Request = TypeVar("Request", bound=BaseModel)


MAX_QUOTE_QUANTITY = 1_000


class QuoteRequest(BaseModel):
    """``orders.quote``'s request (the product route's path and query, merged)."""

    sku: str = Field(pattern=SKU_PATTERN)
    # Quotes stop at 1,000 units (bigger orders are negotiated): the product route accepts
    # up to 10,000, so a larger quantity answers the stock part and fails the quote part.
    quantity: int = Field(default=1, ge=1, le=MAX_QUOTE_QUANTITY)

    @field_validator("quantity", mode="before")
    @classmethod
    def _absent_is_one(cls, value: Any) -> Any:
        return 1 if value is None else value


class Quote(BaseModel):
    sku: str
    quantity: int
    unit_price: Decimal
    total: Decimal
    in_stock: bool


class ReportRequest(BaseModel):
    customer: str = Field(min_length=1, max_length=128)
    work_ms: int = Field(default=0, ge=0, le=60_000)


class Report(BaseModel):
    customer: str
    orders: int
    generated_at: datetime


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


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def list_price(sku: str) -> Decimal:
    """The sku's unit price, from 1.00 to 99.99 (deterministic, as the demo's catalogue)."""
    return Decimal(100 + _digest("price:" + sku) % 9_900) / 100


def quote(request: QuoteRequest, stock: StockLevel) -> Quote:
    unit_price = list_price(request.sku)
    return Quote(sku=request.sku, quantity=request.quantity, unit_price=unit_price,
                 total=unit_price * request.quantity, in_stock=stock.available >= request.quantity)


def order_count(customer: str) -> int:
    return _digest("orders:" + customer) % MAX_ORDERS


def _parse(model: type[Request], payload: Payload, code: str) -> Request:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise HandlerError(code, exc.errors()[0]["msg"]) from exc


@orders.operation("orders.create")
async def create_order(payload: Payload, message: Envelope) -> OrderCreated:
    return price(_parse(CreateOrder, payload, "invalid_order"), message.id)


@orders.operation("orders.quote")
async def quote_order(payload: Payload, message: Envelope) -> Quote:
    request = _parse(QuoteRequest, payload, "invalid_request")
    try:
        answer = await mesh_client().request("inventory.stock", {"sku": request.sku},
                                             timeout_s=STOCK_TIMEOUT_S)
    except RemoteError as exc:  # keep inventory's code (not_found, ...) for our caller
        raise HandlerError(exc.remote_code, f"inventory.stock: {exc.message}",
                           retriable=exc.retriable) from exc
    return quote(request, StockLevel.model_validate(answer))


@orders.operation("orders.report")
async def build_report(payload: Payload, message: Envelope) -> Report:
    """A slow operation (``work_ms`` of simulated work) for the async route."""
    request = _parse(ReportRequest, payload, "invalid_request")
    remaining = message.remaining_ms(now_ms())
    if remaining is not None and request.work_ms >= remaining:
        raise HandlerError("deadline_too_short", f"{request.work_ms} ms of work does not fit "
                           f"in the {remaining} ms left of the deadline")
    await asyncio.sleep(request.work_ms / 1000)
    return Report(customer=request.customer, orders=order_count(request.customer),
                  generated_at=datetime.now(UTC))
