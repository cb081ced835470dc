"""Traffic rules reloaded from the policy files when they change."""

from __future__ import annotations

import shutil
from pathlib import Path

from bus.traffic.table import TrafficReloader, TrafficTable
from infra.policy.traffic_source import PolicyTrafficSource

ROOT = Path(__file__).resolve().parent.parent.parent


async def test_editing_the_policy_changes_the_rules_in_force(tmp_path: Path) -> None:
    # every policy file: mesh.yaml grants the edge the services other files add
    shutil.copytree(ROOT / "policies", tmp_path, dirs_exist_ok=True)
    table = TrafficTable()
    reloader = TrafficReloader(table, PolicyTrafficSource(tmp_path), interval_s=60)
    assert await reloader.reload_once() is True
    before = table.rules_for("orders.create")
    assert before is not None
    text = (tmp_path / "mesh.yaml").read_text()
    (tmp_path / "mesh.yaml").write_text(text.replace("timeout_ms: 10000", "timeout_ms: 2500"))
    assert await reloader.reload_once() is True
    after = table.rules_for("orders.create")
    assert after is not None
    assert after.timeout_ms == 2500
    # A broken edit keeps the rules in force.
    (tmp_path / "mesh.yaml").write_text(text.replace("timeout_ms: 10000", "timeout_ms: -1"))
    assert await reloader.reload_once() is False
    assert table.rules_for("orders.create") == after
