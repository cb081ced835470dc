"""The ``inventory`` contract: what ``inventory.stock`` and ``inventory.reserve`` take and answer.

Shared data between the inventory service and its callers (``orders.quote``, the edge's
product route), so that no feature folder imports another.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

SKU_PATTERN = r"^[A-Za-z0-9-]{1,64}$"  # as the edge's /v1/products/{sku} route checks it


class StockQuery(BaseModel):
    """``inventory.stock``'s request; other fields (the route's ``quantity``) are ignored."""

    sku: str = Field(pattern=SKU_PATTERN)


class StockLevel(BaseModel):
    sku: str
    available: int = Field(ge=0)
    warehouse: str


class ReserveRequest(BaseModel):
    sku: str = Field(pattern=SKU_PATTERN)
    quantity: int = Field(gt=0, le=10_000)


class Reservation(BaseModel):
    reservation_id: str
    sku: str
    quantity: int
    warehouse: str
