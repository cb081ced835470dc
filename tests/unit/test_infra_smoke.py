"""infra.local.smoke: the printed curl line and the demo order."""

from __future__ import annotations

import json
import shlex
from decimal import Decimal

import pytest

from functions.orders.service import price
from functions.shared.orders_contract import CreateOrder
from infra.local.smoke import DEMO_ORDER, curl_line


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://127.0.0.1:4566/_aws/execute-api/abc123",
        "https://abc123.execute-api.us-east-1.amazonaws.com",
        "http://host/it's here; rm -rf $HOME",
    ],
)
def test_curl_line_is_a_valid_shell_line(endpoint: str) -> None:
    argv = shlex.split(curl_line(endpoint))
    assert argv[0] == "curl"
    assert argv[argv.index("-X") + 1] == "POST"
    assert endpoint + "/v1/orders" in argv
    assert argv[argv.index("-H") + 1] == "content-type: application/json"
    assert json.loads(argv[argv.index("-d") + 1]) == DEMO_ORDER
    assert len(argv) == 9


def test_demo_order_is_a_valid_order() -> None:
    order = CreateOrder.model_validate(DEMO_ORDER)
    assert price(order, "demo").total == Decimal("24.98")
