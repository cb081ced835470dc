"""infra.local.workers: ``meshgate up`` runs the inventory worker too, and gives every worker what a
handler's nested calls need (a reply topic the policies let it consume)."""

from __future__ import annotations

from bus.config import BusSettings
from bus.security.access import AccessPolicy
from infra.local import workers as local
from infra.policy import access_map
from infra.settings import ROOT, Settings


def test_orders_and_inventory_workers_are_started() -> None:
    modules = {spec.name: spec.module for spec in local.WORKERS}
    assert modules["orders"] == "functions.orders.worker"
    assert modules["inventory"] == "functions.inventory.worker"


def test_the_orders_worker_may_make_its_nested_calls() -> None:
    [orders] = [spec for spec in local.WORKERS if spec.name == "orders"]
    env = local.worker_environment(Settings.resolve(env={}), orders)
    settings = BusSettings.resolve(env=env)
    assert settings.service_name == "orders"
    assert settings.reply_topic == "mesh.replies"
    raw = access_map(ROOT / "policies")
    access = AccessPolicy.from_dict(raw["produce"], raw["consume"])
    access.check_consume("orders", settings.reply_topic)
    access.check_produce("orders", "inventory.requests")  # orders.quote -> inventory.stock
    access.check_produce("inventory", settings.reply_topic)
