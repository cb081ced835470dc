"""Broker ACLs derived from the policy (infra.policy.acls): exactly the access map the
signatures enforce, the consumer groups the runtime uses, and a plan that never touches a
principal the policy does not manage."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from bus.policy.model import Policy
from bus.runtime.client import ASYNC_REPLY_TOPIC
from bus.security.quarantine import QUARANTINE_TOPIC
from bus.topics import REPLY_TOPIC
from infra.kafka import acl_admin
from infra.policy import access_map, load_policy
from infra.policy.acls import (
    GROUP_NAMES,
    AclBinding,
    AclConflict,
    AclPlan,
    AclRule,
    derive_acls,
    managed_principals,
    no_authorizer_sentence,
    plan_acls,
    plan_sentence,
    stack_marker,
)
from infra.policy.commands import acl_command
from infra.settings import ROOT, Settings


def _policy(data: dict[str, object]) -> Policy:
    return Policy.from_json(json.dumps(data))


def _acls(rules: list[AclRule]) -> set[tuple[str, str, str, str, str]]:
    return {(b.principal, b.resource_type, b.resource_name, b.pattern_type, b.operation)
            for b in (rule.binding for rule in rules)}


SMALL = {
    "services": {
        "edge": {"edge": True},
        "shop": {"operations": ["shop.buy"], "subsets": ["", "canary"]},
        "audit": {"operations": []},
    },
    "topics": {
        "shop.requests": {"partitions": 1}, "shop.canary.requests": {"partitions": 1},
        REPLY_TOPIC: {"partitions": 1}, ASYNC_REPLY_TOPIC: {"partitions": 1},
        QUARANTINE_TOPIC: {"partitions": 1},
        "shop.events": {"partitions": 1},
        "shop.events.retry.1": {"partitions": 1}, "shop.events.dlt": {"partitions": 1},
    },
    "access": {
        "edge": {"call": ["shop.*"], "consume": [REPLY_TOPIC, ASYNC_REPLY_TOPIC]},
        "shop": {"produce": [REPLY_TOPIC, "shop.events"]},
        "audit": {"consume": ["shop.events", "shop.events.retry.*"]},
    },
    "operators": {"ops": {"replay": ["shop.events"]}},
}


def test_a_small_policy_gives_exactly_these_acls() -> None:
    rules = derive_acls(_policy(SMALL))
    rw = ("WRITE", "DESCRIBE")
    ro = ("READ", "DESCRIBE")

    def on(who: str, topic: str, ops: tuple[str, ...]) -> set[tuple[str, str, str, str, str]]:
        return {(f"User:{who}", "TOPIC", topic, "LITERAL", op) for op in ops}

    def group(who: str, name: str, pattern: str = "LITERAL"
              ) -> set[tuple[str, str, str, str, str]]:
        return {(f"User:{who}", "GROUP", name, pattern, "READ")}

    def idempotent(who: str) -> set[tuple[str, str, str, str, str]]:
        return {(f"User:{who}", "CLUSTER", "kafka-cluster", "LITERAL", "IDEMPOTENT_WRITE")}

    expected = (
        # the edge: requests of what it may call (both subsets), replies it reads, the
        # recorder's group, refusals it parks
        on("edge", "shop.requests", rw) | on("edge", "shop.canary.requests", rw)
        | on("edge", REPLY_TOPIC, ro) | on("edge", ASYNC_REPLY_TOPIC, ro)
        | on("edge", QUARANTINE_TOPIC, rw) | group("edge", "gateway-async-recorder")
        | idempotent("edge")
        # the service: its replies and events, its two request topics, a worker group and
        # a Lambda group per subset
        | on("shop", REPLY_TOPIC, rw) | on("shop", "shop.events", rw)
        | on("shop", "shop.requests", ro) | on("shop", "shop.canary.requests", ro)
        | on("shop", QUARANTINE_TOPIC, rw)
        | group("shop", "shop") | group("shop", "shop.canary")
        | group("shop", "shop-lambda") | group("shop", "shop.canary-lambda")
        | idempotent("shop")
        # an event subscriber: the event topic, its retry stage (read and write), its dead
        # letters (write), its subscribers' groups by prefix
        | on("audit", "shop.events", ro) | on("audit", "shop.events.retry.1", (*rw, "READ"))
        | on("audit", "shop.events.dlt", rw) | on("audit", QUARANTINE_TOPIC, rw)
        | group("audit", "audit:", "PREFIXED") | idempotent("audit")
        # the operator: reads the dead letters, writes their replays
        | on("ops", "shop.events.dlt", ro) | on("ops", "shop.events", rw) | idempotent("ops")
    )
    assert _acls(rules) == expected
    assert all(rule.reason for rule in rules)
    assert all(r.binding.permission == "ALLOW" and r.binding.host == "*" for r in rules)


def test_topic_acls_of_the_project_are_the_signature_access_map() -> None:
    # Computed from the loaded policy: a service added by `meshgate new service` keeps it green.
    policy = load_policy(ROOT / "policies")
    rules = derive_acls(policy)
    access = access_map(policy)
    derived = {t for t in policy.topics if t != QUARANTINE_TOPIC and ".retry." not in t
               and not t.endswith(".dlt")}
    for service in policy.services:
        writes = {b.resource_name for b in (r.binding for r in rules)
                  if b.principal == f"User:{service}" and b.operation == "WRITE"
                  and b.resource_name in derived}
        reads = {b.resource_name for b in (r.binding for r in rules)
                 if b.principal == f"User:{service}" and b.operation == "READ"
                 and b.resource_type == "TOPIC" and b.resource_name in derived}
        assert writes == set(access["produce"][service]), service
        assert reads == set(access["consume"][service]), service
    # the demo's point: inventory may not write orders' requests, the broker agrees
    assert ("User:inventory", "TOPIC", "orders.requests", "LITERAL", "WRITE") not in _acls(rules)
    assert ("User:gateway", "TOPIC", "orders.requests", "LITERAL", "WRITE") in _acls(rules)


def test_group_names_are_the_runtimes() -> None:
    from bus.runtime.subscriber import EventSubscriber
    from functions.async_results.runner import GROUP_ID

    assert GROUP_NAMES.async_recorder == GROUP_ID
    assert GROUP_NAMES.worker("orders", "") == "orders"
    assert GROUP_NAMES.worker("orders", "canary") == "orders.canary"
    assert GROUP_NAMES.event_source("orders", "") == "orders-lambda"
    fake = SimpleNamespace(service=SimpleNamespace(name="audit"))
    group = EventSubscriber.group_of(fake, "t")  # type: ignore[arg-type]
    assert group == f"audit{GROUP_NAMES.subscriber_separator}t"


def test_two_principals_never_share_a_group() -> None:
    clash = {"services": {"orders": {"operations": ["orders.create"]},
                          "orders-lambda": {"operations": ["orders-lambda.x"]}},
             "topics": {"orders.requests": {"partitions": 1},
                        "orders-lambda.requests": {"partitions": 1}}}
    with pytest.raises(AclConflict, match=r"orders-lambda \(User:orders, User:orders-lambda\)"):
        derive_acls(_policy(clash))


def test_a_service_with_nothing_to_do_gets_nothing() -> None:
    rules = derive_acls(_policy({"services": {"idle": {}}}))
    assert rules == []
    assert managed_principals(_policy({"services": {"idle": {}}})) == {"User:idle"}


def _b(who: str, topic: str, op: str = "WRITE") -> AclBinding:
    return AclBinding(f"User:{who}", "TOPIC", topic, "LITERAL", op)


def test_the_plan_adds_removes_and_leaves_others_alone() -> None:
    rules = [AclRule(_b("a", "t1"), "x"), AclRule(_b("a", "t2"), "y")]
    live = [_b("a", "t1"), _b("a", "stale"), _b("admin", "t9"), _b("stranger", "t1"),
            AclBinding("User:ANONYMOUS", "CLUSTER", "kafka-cluster", "LITERAL", "ALL")]
    plan = plan_acls(rules, live, {"User:a", "User:b"})
    assert plan.add == (_b("a", "t2"),)
    assert plan.remove == (_b("a", "stale"),)
    assert plan.changes() == ["+ acl User:a ALLOW WRITE on TOPIC t2 (y)",
                              "- acl User:a ALLOW WRITE on TOPIC stale"]
    assert plan_sentence(plan) == "ACLs: 1 to add, 1 to remove."
    # another principal's ACL on one of the policy's topics is a note, never a change
    assert plan.others == {"User:stranger": 1}
    assert plan.notes() == ["? User:stranger holds 1 ACL on the policy's topics and is not one "
                            "of its principals (left alone: another stack's, or marked by none; "
                            "if it was a service removed from the policy, remove them with "
                            "kafka-acls.sh --remove)"]
    # a managed principal with no rule left loses every ACL it has
    gone = plan_acls(rules, [*live, _b("b", "t3")], {"User:a", "User:b"})
    assert _b("b", "t3") in gone.remove
    # once applied, the plan is empty
    after = plan_acls(rules, [_b("a", "t1"), _b("a", "t2"), _b("admin", "t9")], {"User:a"})
    assert after.empty
    assert after.changes() == []
    assert plan_sentence(after) == "ACLs: the broker matches the policy (2 ACLs for 1 principal)."


def test_a_deny_or_host_acl_of_a_managed_principal_is_not_the_allow_it_wants() -> None:
    wanted = _b("a", "t1")
    deny = AclBinding("User:a", "TOPIC", "t1", "LITERAL", "WRITE", permission="DENY")
    one_host = AclBinding("User:a", "TOPIC", "t1", "LITERAL", "WRITE", host="10.0.0.1")
    plan = plan_acls([AclRule(wanted, "x")], [deny, one_host], {"User:a"})
    assert plan.add == (wanted,)
    assert set(plan.remove) == {deny, one_host}
    assert deny.describe() == "User:a DENY WRITE on TOPIC t1"
    assert one_host.describe() == "User:a ALLOW WRITE on TOPIC t1 from 10.0.0.1"


def test_sentences() -> None:
    assert no_authorizer_sentence(43, "127.0.0.1:9092").startswith(
        "ACLs: not in force: the broker at 127.0.0.1:9092 has no authorizer, so the 43 ACLs")
    prefixed = AclBinding("User:a", "GROUP", "a:", "PREFIXED", "READ")
    assert prefixed.describe() == "User:a ALLOW READ on GROUP prefix a:"


def _root(tmp_path: Path, text: str) -> Settings:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "mesh.yaml").write_text(text)
    return Settings(root=tmp_path)


def test_the_plan_command_says_nothing_of_acls_for_a_policy_without_principals(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def unreachable(*_: object, **__: object) -> AclPlan:
        raise AssertionError("no broker call without a principal")

    monkeypatch.setattr(acl_admin, "plan_live", unreachable)
    assert acl_command(_root(tmp_path, "topics:\n  t: {partitions: 1}\n"), apply=True) == []


def test_the_plan_command_on_a_broker_without_authorizer_is_one_sentence(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_authorizer(*_: object, **__: object) -> AclPlan:
        raise acl_admin.NoAuthorizer("Kafka at b has no authorizer", "turn it on")

    monkeypatch.setattr(acl_admin, "plan_live", no_authorizer)
    settings = _root(tmp_path, "services:\n  a: {operations: [a.x]}\n"
                               "topics:\n  a.requests: {partitions: 1}\n"
                               "  mesh.replies: {partitions: 1}\n"
                               "access:\n  a: {produce: [mesh.replies]}\n")
    assert acl_command(settings, apply=True) == [
        no_authorizer_sentence(len(derive_acls(load_policy(tmp_path / "policies"),
                                               stack=settings.stack_name)),
                               settings.kafka_bootstrap)]


def test_every_principal_carries_its_stacks_marker() -> None:
    policy = _policy(SMALL)
    plain, marked = derive_acls(policy), derive_acls(policy, stack="s1")
    markers = _acls(marked) - _acls(plain)
    assert markers == {(f"User:{who}", "TOPIC", "meshgate.stack.s1", "LITERAL", "DESCRIBE")
                       for who in ("edge", "shop", "audit", "ops")}  # "ops": an operator
    assert stack_marker("s1") == "meshgate.stack.s1"


def test_a_principal_that_left_the_policy_loses_its_acls_with_its_stacks_marker() -> None:
    rules = [AclRule(_b("a", "t1"), "x"), AclRule(_marker("a", "s1"), "m")]
    live = [_b("a", "t1"), _marker("a", "s1"),
            _b("gone", "t1"), _b("gone", "t2"), _marker("gone", "s1"),  # left the policy
            _b("neighbour", "t1"), _marker("neighbour", "s2"),  # another stack's service
            _b("unmarked", "t1")]  # granted before markers, or by hand
    plan = plan_acls(rules, live, {"User:a"}, stack="s1")
    assert set(plan.remove) == {_b("gone", "t1"), _b("gone", "t2"), _marker("gone", "s1")}
    assert plan.add == ()
    assert plan.departed == ("User:gone",)
    assert plan.others == {"User:neighbour": 1, "User:unmarked": 1}
    assert plan.notes()[0] == "! User:gone left the policy: its 3 ACLs are removed with it"
    # without the stack (the plan as it was), the departed principal's rights stay
    assert plan_acls(rules, live, {"User:a"}).remove == ()
    # only a plain ALLOW DESCRIBE on the literal marker topic marks a principal
    lookalikes = [_b("x", "meshgate.stack.s1"),
                  AclBinding("User:y", "TOPIC", "meshgate.stack.s1", "PREFIXED", "DESCRIBE"),
                  AclBinding("User:z", "TOPIC", "meshgate.stack.s1", "LITERAL", "DESCRIBE",
                             permission="DENY")]
    assert plan_acls(rules, [_b("a", "t1"), _marker("a", "s1"), *lookalikes], {"User:a"},
                     stack="s1").departed == ()


def _marker(who: str, stack: str) -> AclBinding:
    return AclBinding(f"User:{who}", "TOPIC", stack_marker(stack), "LITERAL", "DESCRIBE")
