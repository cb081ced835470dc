"""Aggregation on the project policy's GET /v1/products/{sku}: ``stock`` (inventory.stock,
required) and ``quote`` (orders.quote, optional) are called at once, each under its own
deadline, and merged into ``{data, errors, partial}``."""

from __future__ import annotations

import time

from bus.errors import HandlerError
from tests.unit.edge_support import (
    PRODUCT,
    Handlers,
    assert_problem,
    bearer,
    edge,
    route,
    with_route,
)

URL = "/v1/products/sku-1?quantity=3"


def test_project_route_aggregates_stock_and_quote() -> None:
    product = route(PRODUCT)
    assert product.aggregate is not None
    stock, quote = product.aggregate["stock"], product.aggregate["quote"]
    assert (stock.operation, stock.required, stock.timeout_ms) == ("inventory.stock", True, 2000)
    assert (quote.operation, quote.required, quote.timeout_ms) == ("orders.quote", False, 2000)


def test_both_parts_answer() -> None:
    with edge() as gw:
        response = gw.http.get(URL, headers=bearer())
        seen = {s.operation: s for s in gw.handlers.seen}
    assert response.status_code == 200, response.text
    assert response.json() == {
        "data": {"stock": {"sku": "sku-1", "available": 7, "warehouse": "ams-1"},
                 "quote": {"sku": "sku-1", "quantity": 3, "total": "12.50"}},
        "errors": {}, "partial": False}
    # Each part got the path and query, the quantity as the integer its schema says.
    assert seen["inventory.stock"].payload == {"sku": "sku-1", "quantity": 3}
    assert seen["orders.quote"].payload == {"sku": "sku-1", "quantity": 3}


def test_failed_optional_part_gives_a_partial_answer() -> None:
    handlers = Handlers(faults={"orders.quote": HandlerError("pricing_down", "db at 10.1.2.3")})
    with edge(handlers=handlers) as gw:
        response = gw.http.get(URL, headers=bearer())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["partial"] is True
    assert body["data"] == {"stock": {"sku": "sku-1", "available": 7, "warehouse": "ams-1"}}
    assert body["errors"] == {"quote": {"status": 502, "reason": "bad_gateway",
                                        "detail": "the service answered pricing_down"}}
    assert "10.1.2.3" not in response.text


def test_failed_required_part_fails_the_call_with_its_status() -> None:
    handlers = Handlers(faults={"inventory.stock": HandlerError("not_found", "no product sku-1")})
    with edge(handlers=handlers) as gw:
        response = gw.http.get(URL, headers=bearer())
        assert len(gw.handlers.saw("orders.quote")) == 1  # the other part was still called
    body = assert_problem(response, 404, "not_found")
    assert body["detail"] == "no product sku-1"
    assert "data" not in body


def test_failed_required_invalid_part_is_422() -> None:
    handlers = Handlers(faults={"inventory.stock": HandlerError("invalid_sku", "bad sku")})
    with edge(handlers=handlers) as gw:
        response = gw.http.get(URL, headers=bearer())
    assert_problem(response, 422, "invalid_sku")


def test_silent_optional_part_is_cut_at_its_own_timeout() -> None:
    """The project's 2 s part timeout, inside the route's 5 s: stock answers at once, quote
    never does; the answer comes after quote's own 2 s, partial, with quote's 504.

    Which deadline cut it is read from the mechanism, not a stopwatch: the quote request
    carried a 2 s deadline (not the route's 5 s), and the route's own deadline would have
    failed the whole call, not answered 200 with the stock part."""
    with edge(handlers=Handlers(faults={"orders.quote": "hang"})) as gw:
        started = time.monotonic()
        response = gw.http.get(URL, headers=bearer())
        elapsed = time.monotonic() - started
        [asked] = [e for e in gw.requests() if e.type == "orders.quote"]
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["partial"] is True
    assert body["data"] == {"stock": {"sku": "sku-1", "available": 7, "warehouse": "ams-1"}}
    assert body["errors"]["quote"]["status"] == 504
    assert body["errors"]["quote"]["reason"] == "timeout"
    assert asked.deadline_ms is not None
    assert asked.deadline_ms - asked.time_ms <= 2000  # its own 2 s, not the route's 5 s
    assert elapsed >= 1.9, elapsed  # one-sided: the part was waited for, not dropped early


def test_silent_required_part_is_504_at_its_own_timeout() -> None:
    quick = with_route(PRODUCT, aggregate={
        "stock": {"operation": "inventory.stock", "timeout_ms": 300, "required": True},
        "quote": {"operation": "orders.quote", "timeout_ms": 2000}})
    with edge(quick, handlers=Handlers(faults={"inventory.stock": "hang"})) as gw:
        started = time.monotonic()
        response = gw.http.get(URL, headers=bearer())
        elapsed = time.monotonic() - started
        assert len(gw.handlers.saw("orders.quote")) == 1
        [asked] = [e for e in gw.requests("inventory.requests") if e.type == "inventory.stock"]
    assert_problem(response, 504, "timeout")
    # Cut at stock's own 300 ms deadline (carried by its request), not quote's 2 s or the
    # route's 5 s: those would not give the required part's timeout.
    assert asked.deadline_ms is not None
    assert asked.deadline_ms - asked.time_ms <= 300
    assert elapsed >= 0.25, elapsed  # one-sided: waited for, not refused early


def test_parts_run_concurrently() -> None:
    """Each part answers only once the other has been called too: parts called one after the
    other would never both answer (the first is cut at its deadline)."""
    quick = with_route(PRODUCT, aggregate={
        "stock": {"operation": "inventory.stock", "timeout_ms": 2000, "required": True},
        "quote": {"operation": "orders.quote", "timeout_ms": 2000}})
    together = Handlers(together={"inventory.stock", "orders.quote"})
    with edge(quick, handlers=together) as gw:
        response = gw.http.get(URL, headers=bearer())
    assert response.status_code == 200, response.text
    assert response.json()["partial"] is False
