"""The policy's routes through the emulated API Gateway: rate limits and quotas under
concurrent clients, aggregation with a failing part, validation, and async calls to
completion."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from infra.settings import Settings
from tests.e2e.edge_support import issue_key, token

pytestmark = pytest.mark.e2e
ORDER: dict[str, Any] = {"customer": "e2e-limits",
                         "lines": [{"sku": "r-1", "quantity": 1, "unit_price": "1.00"}]}


def test_a_keys_rate_limit_holds_under_concurrent_clients(endpoint: str,
                                                          settings: Settings) -> None:
    # Driven by count, not by time: N requests however long they take, and the bound
    # computed from the time they took (a slow machine sends fewer per second, not fewer).
    rate, burst, clients, each = 1.0, 5, 4, 12
    key, _ = issue_key(settings, rate=rate, burst=burst)
    started = time.monotonic()

    def hammer(_: int) -> list[httpx.Response]:
        with httpx.Client(timeout=30) as http:
            return [http.post(f"{endpoint}/v1/partner/orders", json=ORDER,
                              headers={"x-api-key": key}) for _ in range(each)]

    with ThreadPoolExecutor(clients) as pool:
        answers = [a for batch in pool.map(hammer, range(clients)) for a in batch]
    elapsed = time.monotonic() - started
    granted = [a for a in answers if a.status_code == 201]
    limited = [a for a in answers if a.status_code == 429]
    assert len(answers) == clients * each
    assert len(granted) + len(limited) == len(answers), {a.status_code for a in answers}
    # every instance shares one bucket: never more than burst + rate * time
    bound = burst + rate * elapsed + 1
    assert burst <= len(granted) <= bound, (len(granted), elapsed)
    # the rest were refused: 48 answers outrun the bound unless they took over 42 s
    assert len(limited) >= len(answers) - bound > 0, (len(limited), elapsed)
    for answer in limited:
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert int(answer.headers["retry-after"]) >= 1
        assert answer.headers["ratelimit-remaining"] == "0"


def test_a_keys_daily_quota_ends_in_429_until_midnight(endpoint: str,
                                                       settings: Settings) -> None:
    key, _ = issue_key(settings, quota=3)
    answers = [httpx.post(f"{endpoint}/v1/partner/orders", json=ORDER,
                          headers={"x-api-key": key}, timeout=30) for _ in range(5)]
    assert [a.status_code for a in answers] == [201, 201, 201, 429, 429]
    refused = answers[-1]
    assert refused.json()["reason"] == "quota_exceeded"
    assert 1 <= int(refused.headers["retry-after"]) <= 86_400


def product(endpoint: str, settings: Settings, path: str) -> httpx.Response:
    return httpx.get(f"{endpoint}{path}", headers={"authorization": f"Bearer {token(settings)}"},
                     timeout=30)


def test_aggregation_answers_both_parts(endpoint: str, settings: Settings) -> None:
    body = product(endpoint, settings, "/v1/products/sku-3?quantity=2").json()
    assert body["partial"] is False
    assert body["data"]["stock"]["sku"] == "sku-3"
    assert body["data"]["quote"]["quantity"] == 2
    assert body["data"]["quote"]["in_stock"] == (body["data"]["stock"]["available"] >= 2)


def test_aggregation_with_a_failing_optional_part_is_partial(endpoint: str,
                                                             settings: Settings) -> None:
    response = product(endpoint, settings, "/v1/products/sku-3?quantity=5000")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["partial"] is True
    assert body["data"]["stock"]["sku"] == "sku-3"  # the other part is still answered
    assert "quote" not in body["data"]
    assert body["errors"]["quote"]["status"] == 422


def test_aggregation_with_a_failing_required_part_fails(endpoint: str,
                                                        settings: Settings) -> None:
    response = product(endpoint, settings, "/v1/products/missing-sku")
    assert response.status_code == 404, response.text
    assert response.json()["reason"] == "not_found"


@pytest.mark.parametrize(("path", "pointer"), [
    ("/v1/products/sku-3?quantity=lots", "/query/quantity"),
    ("/v1/products/sku-3?quantity=0", "/query/quantity"),
    ("/v1/products/sku-3?debug=1", "/query/debug"),
    ("/v1/products/bad%20sku", "/path/sku"),
])
def test_invalid_parameters_are_422_with_a_pointer(endpoint: str, settings: Settings,
                                                   path: str, pointer: str) -> None:
    response = product(endpoint, settings, path)
    assert response.status_code == 422, response.text
    assert pointer in [error["pointer"] for error in response.json()["errors"]]


def test_a_body_over_the_limit_is_413(endpoint: str) -> None:
    response = httpx.post(f"{endpoint}/v1/orders", content=b"{" + b" " * 300_000 + b"}",
                          headers={"content-type": "application/json"}, timeout=30)
    assert response.status_code == 413, response.text


def test_an_async_call_runs_to_completion(endpoint: str, settings: Settings) -> None:
    # A caller of its own: the status route's bucket is per caller (edge.status_rate_limit,
    # 1/s burst 10), and the fuzz test spends the shared e2e user's just before.
    caller = token(settings, sub=f"e2e-async-{uuid.uuid4().hex[:8]}")
    headers = {"authorization": f"Bearer {caller}"}
    accepted = httpx.post(f"{endpoint}/v1/reports", json={"customer": "e2e", "work_ms": 1500},
                          headers=headers, timeout=30)
    assert accepted.status_code == 202, accepted.text
    body = accepted.json()
    assert accepted.headers["location"] == body["status_url"]
    status_url = f"{endpoint}{body['status_url']}"
    first = httpx.get(status_url, headers=headers, timeout=30).json()
    assert first["status"] == "pending"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(1.0)  # the policy's edge.status_rate_limit: a poll a second per caller
        state = httpx.get(status_url, headers=headers, timeout=30).json()
        if state["status"] != "pending":
            break
    assert state["status"] == "succeeded", state
    assert state["result"]["customer"] == "e2e"
    other = {"authorization": f"Bearer {token(settings, sub='someone-else')}"}
    assert httpx.get(status_url, headers=other, timeout=30).status_code == 404
