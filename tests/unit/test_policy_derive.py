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
    # The demo's entries, exactly; a service added to policies/ (meshgate new service) adds
    # its own, and the edge's right to call it, so those are derived from the policy.
    policy = load_policy(POLICIES)
    added = sorted(set(policy.services) - {"gateway", "orders", "inventory"})
    demo = {
        "produce": {"gateway": ["orders.requests", "inventory.requests"],
                    "orders": ["mesh.replies", "mesh.async.replies", "orders.events",
                               "inventory.requests"],
                    "inventory": ["mesh.replies", "mesh.async.replies"]},
        "consume": {"gateway": ["mesh.replies", "mesh.async.replies"],
                    "orders": ["mesh.replies", "orders.requests"],
                    "inventory": ["inventory.requests"]},
    }
    found = access_map(POLICIES)
    assert access_map(load_policy(POLICIES)) == found
    for kind, entries in demo.items():
        for service, topics in entries.items():
            if service == "gateway" and kind == "produce":  # plus the added services' topics
                assert set(topics) <= set(found[kind][service])
                continue
            assert found[kind][service] == topics
    for service in added:
        for topic in policy.request_topics(service):
            assert topic in found["consume"][service]  # serves its operations
        assert "mesh.replies" in found["produce"][service]  # answers them
    assert found["replay"] == {"meshgate-operator": ["orders.events"]}  # bus.delivery.dlq
    assert found["edges"] == ["gateway"]  # only the gateway names a principal


def test_services_of_the_project() -> None:
    services = services_of(POLICIES)
    assert services == sorted(load_policy(POLICIES).services)
    assert {"gateway", "inventory", "orders"} <= set(services)


def test_topic_specs_of_the_project() -> None:
    specs = topic_specs(POLICIES)
    policy = load_policy(POLICIES)
    assert [spec.name for spec in specs] == list(policy.topics)  # every one, in order
    demo = [
        TopicSpec(name="orders.requests", partitions=6, config={"retention.ms": "86400000"}),
        TopicSpec(name="inventory.requests", partitions=3, config={"retention.ms": "86400000"}),
        TopicSpec(name="mesh.replies", partitions=16, config={"retention.ms": "3600000"}),
        TopicSpec(name="mesh.async.replies", partitions=3,
                  config={"retention.ms": "86400000"}),
        TopicSpec(name="mesh.quarantine", partitions=3, config={"retention.ms": "604800000"}),
        TopicSpec(name="orders.events", partitions=3, config={"retention.ms": "604800000"}),
    ]
    assert [spec for spec in specs if spec.name in {d.name for d in demo}] == demo


def test_the_project_routes() -> None:
    routes = load_policy(POLICIES).routes
    [route] = [r for r in routes if (r.method, r.path) == ("POST", "/v1/orders")]
    assert (route.method, route.path, route.operation, route.auth, route.caller) == (
        "POST", "/v1/orders", "orders.create", "none", "gateway")
    assert all(route.timeout_ms <= 29_000 for route in routes if route.mode == "sync")
    # schema references are resolved into the merged policy
    assert route.request_schema is not None
    assert route.request_schema["title"] == "CreateOrder"


def test_traffic_document_is_what_the_traffic_table_reads(tmp_path: Path) -> None:
    project = (POLICIES / "mesh.yaml").read_text()
    shutil.copytree(POLICIES, tmp_path, dirs_exist_ok=True)  # with any services added
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
