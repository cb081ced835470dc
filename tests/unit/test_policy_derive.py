"""What infra derives from the project's policies: exactly what it consumed before."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bus.traffic.table import parse_rules
from infra.kafka.topics import TopicSpec
from infra.policy import (
    access_map,
    check_files,
    load_policy,
    services_of,
    topic_specs,
    traffic_document,
)
from infra.settings import ROOT

POLICIES = ROOT / "policies"


def test_the_project_policies_pass_the_check() -> None:
    report = check_files([POLICIES])
    assert [str(p) for p in report.problems] == []
    assert report.ok


def test_access_map_of_the_project() -> None:
    expected = {
        "produce": {"gateway": ["orders.requests", "inventory.requests"],
                    "orders": ["mesh.replies", "mesh.async.replies", "orders.events",
                               "inventory.requests"],
                    "inventory": ["mesh.replies", "mesh.async.replies"]},
        "consume": {"gateway": ["mesh.replies", "mesh.async.replies"],
                    "orders": ["mesh.replies", "orders.requests"],
                    "inventory": ["inventory.requests"]},
        "replay": {"meshgate-operator": ["orders.events"]},  # dead letters (bus.delivery.dlq)
        "edges": ["gateway"],  # only the gateway may name a principal (bus.security.principals)
    }
    assert access_map(POLICIES) == expected
    assert access_map(load_policy(POLICIES)) == expected
    assert access_map(POLICIES / "mesh.yaml") == expected


def test_services_of_the_project() -> None:
    assert services_of(POLICIES) == ["gateway", "inventory", "orders"]


def test_topic_specs_of_the_project() -> None:
    assert topic_specs(POLICIES) == [
        TopicSpec(name="orders.requests", partitions=6, config={"retention.ms": "86400000"}),
        TopicSpec(name="inventory.requests", partitions=3, config={"retention.ms": "86400000"}),
        TopicSpec(name="mesh.replies", partitions=16, config={"retention.ms": "3600000"}),
        TopicSpec(name="mesh.async.replies", partitions=3,
                  config={"retention.ms": "86400000"}),
        TopicSpec(name="mesh.quarantine", partitions=3, config={"retention.ms": "604800000"}),
        TopicSpec(name="orders.events", partitions=3, config={"retention.ms": "604800000"}),
    ]


def test_the_project_routes() -> None:
    routes = load_policy(POLICIES).routes
    route = routes[0]
    assert (route.method, route.path, route.operation, route.auth, route.caller) == (
        "POST", "/v1/orders", "orders.create", "none", "gateway")
    assert all(route.timeout_ms <= 29_000 for route in routes if route.mode == "sync")
    # schema references are resolved into the merged policy
    assert route.request_schema is not None
    assert route.request_schema["title"] == "CreateOrder"


def test_traffic_document_is_what_the_traffic_table_reads(tmp_path: Path) -> None:
    project = (POLICIES / "mesh.yaml").read_text()
    shutil.copytree(POLICIES / "schemas", tmp_path / "schemas")
    (tmp_path / "mesh.yaml").write_text(
        project[:project.index("\ntraffic:")].replace(
            'subsets: [""]', 'subsets: ["", canary]').replace(
            "topics:\n", "topics:\n  orders.canary.requests: {partitions: 2}\n")
        + "\ntraffic:\n  orders.create:\n    split: [{weight: 90}, {subset: canary, weight: 10}]\n"
          "    sticky_header: x-user\n    retry: {max_attempts: 2}\n"
    )
    document = traffic_document(tmp_path)
    assert document == {"orders.create": {
        "split": [{"weight": 90}, {"subset": "canary", "weight": 10}],
        "sticky_header": "x-user", "retry": {"max_attempts": 2},
    }}
    assert parse_rules(json.loads(json.dumps(document))) == load_policy(tmp_path).traffic
    assert traffic_document(POLICIES) == {"orders.create": {
        "timeout_ms": 10000, "retry": {"cap_ms": 1000},  # defaults are left out
        "circuit_breaker": {"consecutive_failures": 20, "open_ms": 5000}}}
