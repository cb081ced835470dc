"""The ``orders.create`` contract: the request the edge validates and the service handles.

Shared data between the gateway and the orders service, so neither feature folder imports
the other (issue 5 moves route schemas into the policies).
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, Field


class OrderLine(BaseModel):
    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(gt=0, le=10_000)
    unit_price: Decimal = Field(ge=0, max_digits=12, decimal_places=2)


class CreateOrder(BaseModel):
    customer: str = Field(min_length=1, max_length=128)
    lines: list[OrderLine] = Field(min_length=1, max_length=100)


class OrderCreated(BaseModel):
    order_id: str
    customer: str
    total: Decimal
    item_count: int
    status: str = "accepted"
    handled_by: str = "orders"
