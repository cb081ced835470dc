"""Traffic rules reloaded from a real SSM parameter on the emulator, without a restart."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from bus.traffic.table import TrafficReloader, TrafficTable
from functions.shared.ssm_traffic import SsmTrafficSource
from infra.deploy import aws as deploy
from infra.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def parameter(infra_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("AWS_ENDPOINT_URL", str(infra_settings.endpoint_url))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    name = f"/itest/traffic/{uuid.uuid4().hex[:8]}"
    yield name
    ssm: Any = deploy.client(infra_settings, "ssm")
    ssm.delete_parameter(Name=name)


async def test_rules_change_when_the_parameter_changes(
    parameter: str, infra_settings: Settings
) -> None:
    ssm: Any = deploy.client(infra_settings, "ssm")
    ssm.put_parameter(Name=parameter, Type="String", Value=json.dumps(
        {"orders.create": {"timeout_ms": 1000}}))
    table = TrafficTable()
    reloader = TrafficReloader(table, SsmTrafficSource(parameter, infra_settings.region), 60)
    assert await reloader.reload_once() is True
    first = table.rules_for("orders.create")
    assert first is not None
    assert first.timeout_ms == 1000
    ssm.put_parameter(Name=parameter, Type="String", Overwrite=True, Value=json.dumps(
        {"orders.create": {"timeout_ms": 2500, "faults": {"abort_percent": 5}}}))
    assert await reloader.reload_once() is True
    second = table.rules_for("orders.create")
    assert second is not None
    assert second.timeout_ms == 2500
    ssm.put_parameter(Name=parameter, Type="String", Overwrite=True, Value="not json")
    assert await reloader.reload_once() is False  # the rules in force stay
    assert table.rules_for("orders.create") == second
