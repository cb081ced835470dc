"""Traffic rules change on the running gateway without a restart: an operator writes the
SSM parameter, the deployed Lambda picks it up, and HTTP calls follow the new rules."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from infra.deploy import aws as deploy
from infra.local.smoke import DEMO_ORDER
from infra.settings import Settings
from infra.stack import function_env

pytestmark = pytest.mark.e2e
WITHIN_S = 30.0


@pytest.fixture
def traffic(settings: Settings, endpoint: str) -> Iterator[tuple[Any, str, str]]:
    ssm = deploy.client(settings, "ssm")
    name = function_env.traffic_parameter(settings)
    published = ssm.get_parameter(Name=name)["Parameter"]["Value"]
    try:
        yield ssm, name, published
    finally:
        ssm.put_parameter(Name=name, Value=published, Type="String", Overwrite=True)


def until(endpoint: str, status: int) -> int:
    """POST the demo order until the answer has ``status``; how many calls that took."""
    deadline = time.monotonic() + WITHIN_S
    calls = 0
    while time.monotonic() < deadline:
        calls += 1
        response = httpx.post(f"{endpoint}/v1/orders", json=DEMO_ORDER, timeout=30)
        if response.status_code == status:
            return calls
        time.sleep(0.5)
    raise AssertionError(f"no {status} within {WITHIN_S}s (last: {response.status_code})")


def test_an_injected_abort_rule_takes_effect_and_goes_away_without_a_restart(
    traffic: tuple[Any, str, str], endpoint: str
) -> None:
    ssm, name, published = traffic
    until(endpoint, 201)
    rules = json.loads(published)
    rules["orders.create"] = {**rules.get("orders.create", {}),
                              "faults": {"abort_percent": 100, "abort_code": "chaos_drill",
                                         "abort_retriable": False}}
    ssm.put_parameter(Name=name, Value=json.dumps(rules), Type="String", Overwrite=True)
    until(endpoint, 503)
    answer = httpx.post(f"{endpoint}/v1/orders", json=DEMO_ORDER, timeout=30)
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/problem+json"
    ssm.put_parameter(Name=name, Value=published, Type="String", Overwrite=True)
    until(endpoint, 201)
