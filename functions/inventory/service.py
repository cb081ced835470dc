"""Handlers of the demo ``inventory`` service: stock levels and reservations.

Stock is a pure function of the sku (its SHA-256), so callers and tests can predict it; an sku
starting with ``missing-`` does not exist.
"""

from __future__ import annotations

import hashlib
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from bus.envelope import Envelope
from bus.errors import HandlerError
from bus.service import Payload, Service
from functions.shared.inventory_contract import (
    Reservation,
    ReserveRequest,
    StockLevel,
    StockQuery,
)

inventory = Service("inventory")

WAREHOUSES = ("ams-1", "fra-1", "dub-1")
MAX_STOCK = 500  # available is in [0, MAX_STOCK)
MISSING_PREFIX = "missing-"
Request = TypeVar("Request", bound=BaseModel)


def stock_of(sku: str) -> StockLevel:
    """The sku's stock level; ``not_found`` for an sku that does not exist."""
    if sku.startswith(MISSING_PREFIX):
        raise HandlerError("not_found", f"no product {sku!r}")
    digest = hashlib.sha256(sku.encode()).digest()
    return StockLevel(
        sku=sku,
        available=int.from_bytes(digest[:4], "big") % MAX_STOCK,
        warehouse=WAREHOUSES[digest[4] % len(WAREHOUSES)],
    )


def reserve(request: ReserveRequest, call_id: str) -> Reservation:
    """Reserve ``quantity`` of the sku; the id derives from the call (same call, same id)."""
    stock = stock_of(request.sku)
    if request.quantity > stock.available:
        raise HandlerError("insufficient_stock", f"{request.sku}: {stock.available} available, "
                           f"{request.quantity} asked")
    return Reservation(
        reservation_id="res_" + hashlib.sha256(call_id.encode()).hexdigest()[:16],
        sku=request.sku,
        quantity=request.quantity,
        warehouse=stock.warehouse,
    )


def parse(model: type[Request], payload: Payload) -> Request:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise HandlerError("invalid_request", f"{where}: {error['msg']}") from exc


@inventory.operation("inventory.stock")
async def stock(payload: Payload, message: Envelope) -> StockLevel:
    return stock_of(parse(StockQuery, payload).sku)


@inventory.operation("inventory.reserve")
async def reserve_stock(payload: Payload, message: Envelope) -> Reservation:
    # Retries of one call share its correlation id (the first attempt's message id).
    return reserve(parse(ReserveRequest, payload), message.correlation_id or message.id)
