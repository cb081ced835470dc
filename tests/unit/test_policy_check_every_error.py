"""`meshgate policy check` reports every error it can (issue 12): the cross-reference checks
run over the entries that parsed even when a file has schema errors, never reporting a name as
unknown when its own entry is the broken one; names and operation patterns get a "did you
mean"; plan and apply end with one plain sentence."""

from __future__ import annotations

from pathlib import Path

import pytest

from bus.policy.checks import mend_pattern, suggest
from infra.cli.main import run
from infra.kafka.topics import ConfigChange, TopicPlan, TopicSpec
from infra.policy import check_files
from infra.policy.plan_text import apply_summary, plan_summary

SERVICES = """\
services:
  gateway: {edge: true}
  orders:
    operations: [orders.create, orders.quote]
  inventory:
    operations: [inventory.stock, inventory.reserve]
topics:
  orders.requests: {partitions: 6}
  inventory.requests: {partitions: 3}
  mesh.replies: {partitions: 16}
"""

ACCESS = """\
access:
  gateway:
    call: [orders.*]
    consume: [mesh.replies]
  orders:
    produce: [mesh.replies]
  inventory:
    produce: [mesh.replies]
"""


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path, **files: str) -> None:
    for name, text in files.items():
        (tmp_path / f"{name}.yaml").write_text(text)


def problems(tmp_path: Path, **files: str) -> list[str]:
    write(tmp_path, **files)
    return [str(p) for p in check_files([tmp_path]).problems]


def test_a_schema_error_in_one_file_and_an_unknown_service_in_another_are_both_reported(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = SERVICES.replace("inventory.requests: {partitions: 3}",
                              "inventory.requests: {partitions: three}")
    write(tmp_path, a_mesh=broken, b_access=ACCESS.replace("  inventory:\n",
                                                           "  inventroy:\n"))
    assert run(["policy", "check", "."]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "a_mesh.yaml:6: service inventory serves operations but may not produce to "
        "mesh.replies, where it answers; add mesh.replies to access.inventory.produce",
        "a_mesh.yaml:9: topics[\"inventory.requests\"].partitions is the text 'three'; "
        "write a whole number, without quotes",
        "b_access.yaml:7: access names service inventroy, which is not declared; "
        "declare services.inventroy or fix the name (did you mean inventory?)",
        "policy check: 3 errors in 2 files (1 cross-reference finding about entries with "
        "schema errors held back until those are fixed)",
    ]


def test_a_name_whose_entry_is_broken_is_never_called_unknown(tmp_path: Path) -> None:
    # services.orders breaks the schema: access.orders and the call to orders.* refer to it,
    # and must not be reported as "not declared"; the unknown topic still is.
    broken = SERVICES.replace("operations: [orders.create, orders.quote]",
                              "operations: orders.create")
    found = problems(tmp_path, a_mesh=broken,
                     b_access=ACCESS.replace("consume: [mesh.replies]",
                                             "consume: [mesh.replies, mesh.replys]"))
    assert len(found) == 2, found
    assert found[0].startswith("a_mesh.yaml:4: services.orders.operations is the text")
    assert found[1] == ("b_access.yaml:4: access.gateway.consume: topic mesh.replys is not "
                        "declared; declare it under topics or fix the name (did you mean "
                        "mesh.replies?)")
    assert check_files([tmp_path]).held_back >= 2  # orders.* and access.orders wait


def test_a_broken_route_keeps_the_lines_of_the_routes_after_it(tmp_path: Path) -> None:
    routes = """\
routes:
  - method: FETCH
    path: /v1/orders
    operation: orders.create
    auth: none
  - method: POST
    path: /v1/orders
    operation: orders.creat
    auth: none
"""
    found = problems(tmp_path, a_mesh=SERVICES, b_access=ACCESS, c_routes=routes)
    assert [p.split(":")[1] for p in found] == ["2", "8"], found
    assert found[1] == ("c_routes.yaml:8: route POST /v1/orders targets operation orders.creat "
                        "that no service owns; add it to services.orders.operations or fix the "
                        "route (did you mean orders.create?)")


def test_did_you_mean_for_every_kind_of_name(tmp_path: Path) -> None:
    access = ACCESS.replace("call: [orders.*]", "call: [order.*, inventory.stok*, orders.qoute]")
    access = access.replace("consume: [mesh.replies]", "consume: [mesh.reply]")
    routes = """\
routes:
  - method: POST
    path: /v1/orders
    operation: orders.create
    caller: gatewy
    auth: none
traffic:
  orders.creat:
    split: [{subset: "", weight: 100}]
"""
    found = problems(tmp_path, a_mesh=SERVICES, b_access=access, c_routes=routes)
    hints = [p[p.index("(did you mean"):] for p in found if "(did you mean" in p]
    assert hints == [
        "(did you mean orders.*?)",  # an operation pattern: its literal prefix mended
        "(did you mean inventory.stock*?)",
        "(did you mean orders.quote?)",  # an operation
        "(did you mean mesh.replies?)",  # a topic
        "(did you mean gateway?)",  # a service
        "(did you mean orders.create?)",  # a traffic rule's operation
    ], found


def test_suggestions_stay_quiet_when_nothing_is_close() -> None:
    operations = ["orders.create", "orders.quote", "inventory.stock"]
    assert suggest("orders.get", operations) == ""  # a new operation, not a typo
    assert suggest("billing.charge", operations) == ""
    assert mend_pattern("xyz.*", operations) is None
    assert mend_pattern("orders.create", operations) is None  # not a pattern
    assert mend_pattern("invetory.*", operations) == "inventory.*"


def _plan(**changes: object) -> TopicPlan:
    fields: dict[str, object] = {"create": (), "grow": (), "cannot_shrink": ()}
    fields.update(changes)
    return TopicPlan(**fields)  # type: ignore[arg-type]


def test_plan_and_apply_summaries() -> None:
    spec = TopicSpec(name="t.a", partitions=1)
    assert plan_summary(_plan(), 6) == "No changes. The broker matches the policy (6 topics)."
    assert plan_summary(_plan(), 1) == "No changes. The broker matches the policy (1 topic)."
    two = _plan(create=(spec, spec), grow=(("t.b", 1, 3),))
    assert plan_summary(two, 3) == "Plan: 2 to create, 1 to grow, 0 to delete."
    assert apply_summary(two, 3, ["+ created t.a"]) == (
        "Apply complete: 2 created, 1 grown, 0 deleted. The broker matches the policy "
        "(3 topics).")
    assert apply_summary(two, 3, ["! after 10s the broker does not show yet: create t.a"]) == (
        "Apply complete: 2 created, 1 grown, 0 deleted. The broker does not show every change "
        "yet (marked !): plan again soon.")
    configs = _plan(reconfigure=(ConfigChange("t.a", "retention.ms", None, "1000"),))
    assert plan_summary(configs, 1) == ("Plan: 0 to create, 0 to grow, 1 to reconfigure, "
                                        "0 to delete.")
    shrink = _plan(cannot_shrink=(("t.a", 6, 3),))
    assert plan_summary(shrink, 1) == (
        "No changes to apply. 1 declared change Kafka cannot make (marked !): the broker will "
        "not match the policy until you resolve it.")


def test_an_empty_or_misspelt_section_still_lets_the_rest_be_checked(tmp_path: Path) -> None:
    # "routes:" with nothing under it, and a misspelt "servics" whose entries are unknown:
    # the gateway's unknown topic is still reported, and nothing calls gateway undeclared.
    text = SERVICES.replace("services:", "servics:") + "routes:\n"
    found = problems(tmp_path, a_mesh=text, b_access=ACCESS.replace(
        "consume: [mesh.replies]", "consume: [mesh.replies, mesh.replys]"))
    assert any("servics" in p for p in found), found
    assert any(p.startswith("b_access.yaml:4: access.gateway.consume: topic mesh.replys") for
               p in found), found
    assert not any("access names service" in p for p in found), found


def test_did_you_mean_for_a_subset(tmp_path: Path) -> None:
    text = SERVICES.replace("operations: [orders.create, orders.quote]",
                            "operations: [orders.create, orders.quote]\n    subsets: ['', canary]")
    text += "  orders.canary.requests: {partitions: 1}\n"
    traffic = "traffic:\n  orders.create:\n    split: [{subset: canry, weight: 100}]\n"
    assert problems(tmp_path, a_mesh=text, b_access=ACCESS, c_traffic=traffic) == [
        "c_traffic.yaml:3: traffic rules for orders.create send to subset canry, which service "
        "orders does not run; add canry to services.orders.subsets or fix the subset (did you "
        "mean canary?)"]
