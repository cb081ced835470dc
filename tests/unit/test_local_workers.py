"""infra.local.workers: ``meshgate up`` runs the inventory worker too, and gives every worker what a
handler's nested calls need (a reply topic the policies let it consume)."""

from __future__ import annotations

from pathlib import Path

from bus.config import BusSettings
from bus.security.access import AccessPolicy
from infra.local import workers as local
from infra.policy import access_map, services_of
from infra.settings import ROOT, Settings


def test_every_policy_service_with_a_worker_module_is_started() -> None:
    settings = Settings.resolve(env={})
    modules = {spec.name: spec.module for spec in local.workers(settings)}
    with_worker = {name for name in services_of(ROOT / "policies")
                   if (ROOT / "functions" / name / "worker.py").is_file()}
    assert with_worker >= {"orders", "inventory"}  # the demo's services have one
    for name in with_worker:
        assert modules[name] == f"functions.{name}.worker"
    # the recorder (as the gateway) and the collector always run; the collector stops last
    assert modules["gateway"] == "functions.async_results.worker"
    assert list(modules)[-1] == "collector"


def test_workers_come_from_the_policy_not_a_list(tmp_path: Path) -> None:
    for name in ("catalog", "nofile"):
        (tmp_path / "functions" / name).mkdir(parents=True)
    (tmp_path / "functions" / "catalog" / "worker.py").write_text("")
    specs = local.service_workers(tmp_path, ["nofile", "catalog", "undeclared-elsewhere"])
    assert specs == (local.WorkerSpec("catalog", "functions.catalog.worker"),)


def test_the_orders_worker_may_make_its_nested_calls() -> None:
    [orders] = [spec for spec in local.workers(Settings.resolve(env={})) if spec.name == "orders"]
    env = local.worker_environment(Settings.resolve(env={}), orders)
    settings = BusSettings.resolve(env=env)
    assert settings.service_name == "orders"
    assert settings.reply_topic == "mesh.replies"
    raw = access_map(ROOT / "policies")
    access = AccessPolicy.from_dict(raw["produce"], raw["consume"])
    access.check_consume("orders", settings.reply_topic)
    access.check_produce("orders", "inventory.requests")  # orders.quote -> inventory.stock
    access.check_produce("inventory", settings.reply_topic)
