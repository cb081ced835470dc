"""Reading policy files with lines, and combining several of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.policy import PolicyError, access_map, check_files, load_policy, policy_files
from infra.policy.source import read_source

SERVICES = """\
services:
  gateway: {edge: true}
  orders:
    operations: [orders.create]
access:
  gateway:
    call: [orders.*]
    consume: [mesh.replies]
  orders:
    produce: [mesh.replies]
"""

TOPICS = """\
topics:
  orders.requests: {partitions: 6}
  mesh.replies: {partitions: 16}
"""

ROUTES = """\
# yaml-language-server: $schema=./schema.json
routes:
  - method: POST
    path: /v1/orders
    operation: orders.create
    auth: api_key
    rate_limit: {per_second: 10, burst: 20}
traffic:
  orders.create:
    timeout_ms: 5000
    retry: {max_attempts: 2}
"""


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path, **files: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)


def test_lines_of_every_place(tmp_path: Path) -> None:
    write(tmp_path, **{"a.yaml": ROUTES})
    source = read_source(tmp_path / "a.yaml", "a.yaml")
    assert source.problems == []
    assert source.line_of(("routes",)) == 2
    assert source.line_of(("routes", 0)) == 3
    assert source.line_of(("routes", 0, "auth")) == 6
    assert source.line_of(("routes", 0, "rate_limit", "burst")) == 7
    assert source.line_of(("traffic", "orders.create", "retry", "max_attempts")) == 11
    # A missing place is reported where its nearest existing parent is.
    assert source.line_of(("routes", 0, "timeout_ms")) == 3
    assert source.data["routes"][0]["rate_limit"] == {"per_second": 10, "burst": 20}


def test_scalars_keep_their_yaml_types_but_never_become_dates(tmp_path: Path) -> None:
    write(tmp_path, **{"a.yaml": "a: 1\nb: '1'\nc: 1.5\nd: true\ne: null\nf: 2024-01-02\n"
                                 "on: yes\n"})
    assert read_source(tmp_path / "a.yaml").data == {
        "a": 1, "b": "1", "c": 1.5, "d": True, "e": None, "f": "2024-01-02", "on": True,
    }


def test_several_files_make_one_policy(tmp_path: Path) -> None:
    write(tmp_path, **{"services.yaml": SERVICES, "topics.yml": TOPICS, "routes.yaml": ROUTES,
                       "schema.json": "{}", "notes.txt": "ignored"})
    assert [p.name for p in policy_files([tmp_path])] == ["routes.yaml", "services.yaml",
                                                          "topics.yml"]
    report = check_files([tmp_path])
    assert report.problems == []
    assert report.ok
    assert report.policy is not None
    assert list(report.policy.services) == ["gateway", "orders"]
    assert list(report.policy.topics) == ["orders.requests", "mesh.replies"]
    assert report.policy.routes[0].auth == "api_key"
    assert report.policy.traffic["orders.create"].timeout_ms == 5000
    assert access_map(tmp_path)["produce"] == {"gateway": ["orders.requests"],
                                               "orders": ["mesh.replies"]}


def test_files_can_be_named_one_by_one(tmp_path: Path) -> None:
    write(tmp_path, **{"services.yaml": SERVICES, "topics.yaml": TOPICS})
    policy = load_policy([tmp_path / "services.yaml", tmp_path / "topics.yaml"])
    assert set(policy.topics) == {"orders.requests", "mesh.replies"}


def test_a_finding_points_into_the_file_that_defines_the_place(tmp_path: Path) -> None:
    write(tmp_path, **{"services.yaml": SERVICES, "topics.yaml": TOPICS,
                       "routes.yaml": ROUTES.replace("operation: orders.create",
                                                     "operation: orders.cancel")})
    assert [str(p) for p in check_files([tmp_path]).problems] == [
        "routes.yaml:5: route POST /v1/orders targets operation orders.cancel that no service "
        "owns; add it to services.orders.operations or fix the route",
    ]


def test_each_thing_is_defined_in_one_file(tmp_path: Path) -> None:
    write(tmp_path, **{
        "a.yaml": SERVICES + TOPICS,
        "b.yaml": "topics:\n  audit: {partitions: 1}\n  mesh.replies: {partitions: 8}\n"
                  "services:\n  orders: {}\naccess:\n  gateway: {}\ntraffic:\n"
                  "  orders.create: {timeout_ms: 1}\n",
        "c.yaml": "traffic:\n  orders.create: {timeout_ms: 2}\n",
    })
    assert [str(p) for p in check_files([tmp_path]).problems] == [
        "b.yaml:3: topic mesh.replies is already defined in a.yaml:13; keep one definition "
        "(each topic is defined in exactly one file)",
        "b.yaml:5: service orders is already defined in a.yaml:3; keep one definition (each "
        "service is defined in exactly one file)",
        "b.yaml:7: access for service gateway is already defined in a.yaml:6; keep one "
        "definition (each access for service is defined in exactly one file)",
        "c.yaml:2: traffic rules for operation orders.create is already defined in b.yaml:9; "
        "keep one definition (each traffic rules for operation is defined in exactly one file)",
    ]


def test_errors_in_several_files_are_all_listed(tmp_path: Path) -> None:
    write(tmp_path, **{"a.yaml": "services:\n  orders: {operations: [x]}\n",
                       "b.yaml": "topics: [\n", "c.yaml": "routes: {}\n"})
    report = check_files([tmp_path])
    assert [(p.file, p.line) for p in report.problems] == [("a.yaml", 2), ("b.yaml", 2),
                                                           ("c.yaml", 1)]
    assert report.policy is None
    assert not report.checked_references


def test_load_policy_raises_with_every_problem(tmp_path: Path) -> None:
    write(tmp_path, **{"a.yaml": SERVICES})
    with pytest.raises(PolicyError) as raised:
        load_policy(tmp_path)
    assert len(raised.value.problems) == 3  # and two unknown topics mesh.replies
    assert "a.yaml:3: service orders serves its operations on topic orders.requests" in str(
        raised.value)
    assert "meshgate policy check" in raised.value.fix


def test_no_files(tmp_path: Path) -> None:
    report = check_files([tmp_path])
    assert [str(p) for p in report.problems] == [
        "policies: no policy files found; write one, such as policies/mesh.yaml"]


def test_an_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_bytes(b"\xff\xfe")
    assert "a.yaml:1: cannot read the file" in str(check_files([tmp_path]).problems[0])
