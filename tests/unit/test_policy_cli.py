"""`meshgate policy check` and `meshgate policy schema`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.cli.main import run
from infra.policy.editor_schema import policy_schema
from infra.policy.load import load_policy
from infra.settings import ROOT

BROKEN = """\
services:
  orders:
    operations: [orders.create]
topics:
  orders.requests: {partitions: 6}
routes:
  - method: GET
    path: /v1/orders/{id}
    operation: orders.get
    auth: none
  - method: GET
    path: /v1/orders/new
    operation: orders.create
    auth: none
traffic:
  orders.create:
    split:
      - {subset: canary, weight: 100}
"""


def test_check_of_the_project_policies(capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert run(["policy", "check"]) == 0
    out = capsys.readouterr()
    policy = load_policy(ROOT / "policies")  # the demo's 3, 6 and 4, plus any service added
    assert out.out == (f"policies are valid: {len(policy.services)} services, "
                       f"{len(policy.topics)} topics, {len(policy.routes)} routes\n")
    assert {"gateway", "orders", "inventory"} <= set(policy.services)
    assert out.err == ""
    assert run(["policy", "check", "policies/"]) == 0


def test_check_lists_every_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mesh.yaml").write_text(BROKEN)
    assert run(["policy", "check", "mesh.yaml"]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.splitlines() == [
        "mesh.yaml:3: service orders serves operations but may not produce to mesh.replies, "
        "where it answers; add mesh.replies to access.orders.produce",
        "mesh.yaml:7: route GET /v1/orders/{id} is served by service gateway, which is not "
        "declared; declare services.gateway or set caller to the edge service",
        "mesh.yaml:9: route GET /v1/orders/{id} targets operation orders.get that no service "
        "owns; add it to services.orders.operations or fix the route",
        "mesh.yaml:11: route GET /v1/orders/new is served by service gateway, which is not "
        "declared; declare services.gateway or set caller to the edge service",
        "mesh.yaml:12: route GET /v1/orders/new overlaps route GET /v1/orders/{id} "
        "(mesh.yaml:7): both match GET /v1/orders/new; make the paths (or methods) distinct, "
        "or remove one of the routes",
        "mesh.yaml:18: traffic rules for orders.create send to subset canary, which service "
        "orders does not run; add canary to services.orders.subsets or fix the subset",
        "policy check: 6 errors in 1 file",
    ]


def test_check_says_when_the_reference_checks_wait(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "mesh.yaml").write_text("topics:\n  t: [partitions\n")  # not YAML
    assert run(["policy", "check", str(tmp_path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    assert err[1] == ("policy check: 1 error in 1 file (the cross-reference checks wait for the "
                      "files that are not readable YAML mappings)")


def test_schema_writes_policies_schema_json(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHGATE_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert run(["policy", "schema"]) == 0
    assert capsys.readouterr().out == "wrote policies/schema.json\n"
    assert json.loads((tmp_path / "policies" / "schema.json").read_text()) == policy_schema()
