"""``meshgate new service``: what it writes, what it refuses, and that the result passes
``policy check`` next to the project's policies."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from infra.cli.main import run
from infra.local.workers import WorkerSpec, service_workers
from infra.policy import access_map, check_files
from infra.scaffold.service import ScaffoldError, grant_edge, plan_service
from infra.settings import ROOT


# The project's policies (with whatever services were added to them) plus one more, named
# so that no user's service clashes with it.
@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    return tmp_path


@pytest.mark.parametrize(
    "name", ["", "x", "Catalog", "my-svc", "my_svc", "1abc", "gateway", "a" * 40])
def test_unusable_names_are_refused(name: str) -> None:
    with pytest.raises(ScaffoldError):
        plan_service(name)


def test_bad_operations_and_routes_are_refused() -> None:
    for operations in ([], ["get", "get"], ["Get"]):
        with pytest.raises(ScaffoldError):
            plan_service("catalog", operations)
    with pytest.raises(ScaffoldError):
        plan_service("catalog", route="FETCH /v1/catalog")


def test_the_plan_is_python_and_names_the_route_parameter() -> None:
    plan = plan_service("catalog", ["get", "list"], route="GET /v1/catalog/{sku}")
    assert set(plan.files) == {
        "functions/catalog/__init__.py", "functions/catalog/service.py",
        "functions/catalog/worker.py", "functions/catalog/lambda_handler.py",
        "tests/unit/test_catalog_service.py", "policies/catalog.yaml",
        "policies/schemas/catalog-item.json"}
    for path, text in plan.files.items():
        if path.endswith(".py"):
            compile(text, path, "exec")  # valid Python
    service = plan.files["functions/catalog/service.py"]
    assert '@catalog.operation("catalog.get")' in service
    assert '@catalog.operation("catalog.list")' in service
    assert "    sku: str" in service  # the path parameter is the payload field
    assert "not_found" in service  # the code -> status note
    assert "404" in service


def test_grant_edge_adds_the_service_once() -> None:
    text = "access:\n  orders:\n    call: [x.*]\n  gateway:\n    call: [orders.*]\n"
    granted = grant_edge(text, "catalog")
    assert granted == ("access:\n  orders:\n    call: [x.*]\n  gateway:\n"
                       "    call: [orders.*, catalog.*]\n")
    assert grant_edge(granted, "catalog") == granted
    assert grant_edge("access:\n  orders:\n    call: [x.*]\n", "catalog") is None


def test_new_service_passes_policy_check_and_gets_a_worker(project: Path) -> None:
    assert run(["new", "service", "probesvc", "--route", "GET /v1/probesvc/{sku}",
                "--root", str(project)]) == 0
    report = check_files([project / "policies"])
    assert [str(p) for p in report.problems] == []
    assert report.policy is not None
    assert report.policy.services["probesvc"].operations == ("probesvc.get",)
    [route] = [r for r in report.policy.routes if r.path == "/v1/probesvc/{sku}"]
    assert (route.method, route.operation, route.caller) == ("GET", "probesvc.get", "gateway")
    access = access_map(report.policy)
    assert "probesvc.requests" in access["produce"]["gateway"]  # the edge may call it
    assert access["consume"]["probesvc"] == ["probesvc.requests"]
    assert service_workers(project, report.policy.services) == (
        WorkerSpec("probesvc", "functions.probesvc.worker"),)


def test_new_service_refuses_to_overwrite(project: Path) -> None:
    (project / "functions" / "probesvc").mkdir(parents=True)
    mesh = (project / "policies" / "mesh.yaml").read_text()
    with pytest.raises(ScaffoldError, match="refusing to overwrite"):
        run(["new", "service", "probesvc", "--root", str(project)])
    assert not (project / "policies" / "probesvc.yaml").exists()  # nothing written
    assert (project / "policies" / "mesh.yaml").read_text() == mesh
    with pytest.raises(ScaffoldError, match="already in the policies"):
        run(["new", "service", "orders", "--root", str(project)])
