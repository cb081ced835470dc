"""Real HTTP through the emulated API Gateway into the gateway Lambda, over Kafka to the
orders worker, and back."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.e2e

ORDER: dict[str, Any] = {
    "customer": "e2e",
    "lines": [{"sku": "a", "quantity": 3, "unit_price": "2.50"},
              {"sku": "b", "quantity": 1, "unit_price": "0.99"}],
}


def test_order_is_priced_by_the_service(endpoint: str) -> None:
    response = httpx.post(f"{endpoint}/v1/orders", json=ORDER, timeout=30)
    assert response.status_code == 201, response.text
    body = response.json()
    assert Decimal(body["total"]) == Decimal("8.49")
    assert body["item_count"] == 4
    assert body["handled_by"] == "orders"
    assert body["order_id"].startswith("ord_")


def test_concurrent_calls_each_get_their_own_reply(endpoint: str) -> None:
    def call(i: int) -> dict[str, Any]:
        order = {"customer": f"c{i}", "lines": [{"sku": "x", "quantity": i + 1,
                                                 "unit_price": "1.00"}]}
        response = httpx.post(f"{endpoint}/v1/orders", json=order, timeout=30)
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    with ThreadPoolExecutor(max_workers=8) as pool:
        bodies = list(pool.map(call, range(24)))
    assert [b["customer"] for b in bodies] == [f"c{i}" for i in range(24)]
    assert [Decimal(b["total"]) for b in bodies] == [Decimal(i + 1) for i in range(24)]
    assert len({b["order_id"] for b in bodies}) == 24


def test_a_body_that_is_not_json_gets_400(endpoint: str) -> None:
    response = httpx.post(f"{endpoint}/v1/orders", content=b"not json",
                          headers={"content-type": "application/json"}, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["reason"] == "malformed_json"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"customer": "x", "lines": []}', "application/json"),
        (b'{"customer": "x", "lines": [{"sku": "a", "quantity": -1, "unit_price": "1"}]}',
         "application/json"),
        (b"[]", "application/json"),
    ],
)
def test_malformed_requests_get_422(endpoint: str, body: bytes, content_type: str) -> None:
    response = httpx.post(f"{endpoint}/v1/orders", content=body,
                          headers={"content-type": content_type}, timeout=30)
    assert response.status_code == 422, response.text
    assert "detail" in response.json()


def test_every_violation_is_named_in_one_422(endpoint: str) -> None:
    """The deployed gateway (its zip vendors the full validator) lists each broken rule."""
    body = {"customer": "", "admin": True, "lines": [{"sku": "a", "quantity": 0}]}
    response = httpx.post(f"{endpoint}/v1/orders", json=body, timeout=30)
    assert response.status_code == 422, response.text
    pointers = sorted(e["pointer"] for e in response.json()["errors"])
    assert pointers == ["/body", "/body/customer", "/body/lines/0", "/body/lines/0/quantity"]


def test_unknown_route_is_404(endpoint: str) -> None:
    assert httpx.get(f"{endpoint}/v1/nothing-here", timeout=30).status_code == 404
    assert httpx.get(f"{endpoint}/healthz", timeout=30).json() == {"status": "ok"}
