"""Kafka ACLs from the policy (pure): what each principal the policy manages may do on the
broker, derived from the same access map the signatures enforce, and the plan that brings
the broker's ACLs to it.

One principal per identity: ``User:<service>`` for every service (the edge ``gateway``
included) and ``User:<operator>`` for every operator; each ACL is an ALLOW from any host.
Each rule says why (``AclRule.reason``). A service gets:

- WRITE + DESCRIBE on each topic it may produce to (``Policy.produce_topics``: its
  ``produce`` list, so its replies and events, and the request topics of every operation it
  may call), exactly the topics ``bus.security.access`` admits from it;
- READ + DESCRIBE on each topic it may consume (``Policy.consume_topics``: its ``consume``
  list, its own request topics when it serves operations);
- WRITE + DESCRIBE on ``mesh.quarantine`` when it consumes anything: its intake and its
  reply reader park what they refuse there (``bus.security.quarantine``);
- on a declared retry topic of a topic it consumes (``<topic>.retry.N``) READ and WRITE (its
  subscriber republishes a failing event there and consumes it again), on a declared
  dead-letter topic (``<topic>.dlt``) WRITE (it parks what fails for good);
- READ on its consumer groups, named as the runtime names them (``GROUP_NAMES``): a worker's
  group per subset it runs (``<service>``, ``<service>.<subset>``) and its Lambda's event
  source mapping group (the same with ``-lambda``, which authenticates as the service); the event
  subscriber's groups by the prefix ``<service>:`` when it consumes a topic that is not a
  request or reply topic; the async results recorder's group for the edge that reads
  ``mesh.async.replies``;
- IDEMPOTENT_WRITE on the cluster when it produces at all: ``bus.transport.kafka``'s producer
  is idempotent (brokers from 3.0 also accept WRITE on any topic, KIP-679; older ones and
  some managed clusters still ask for this).

An operator gets READ + DESCRIBE on the dead-letter topic of each topic it may replay onto
(``meshgate dlq list``, no group), WRITE + DESCRIBE on the topic itself (``dlq replay``) and
IDEMPOTENT_WRITE.

What the broker cannot express (the signatures do): which operation a request on a shared
request topic carries, which partition of ``mesh.replies`` a reader may read, and that a
reply comes from the owner of the operation called.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from bus.delivery.retry_topics import DLT_SUFFIX, RETRY_INFIX, dlt_topic_name
from bus.policy.model import Policy
from bus.runtime.client import ASYNC_REPLY_TOPIC
from bus.security.inbound import base_topic
from bus.security.quarantine import QUARANTINE_TOPIC
from bus.topics import REPLY_TOPIC
from infra.errors import InfraError

ResourceType = Literal["TOPIC", "GROUP", "CLUSTER"]
PatternType = Literal["LITERAL", "PREFIXED"]
CLUSTER_NAME: Final = "kafka-cluster"
"""The one name a CLUSTER resource has in Kafka's ACLs."""
PRINCIPAL_TYPE: Final = "User"
STACK_MARKER_PREFIX: Final = "meshgate.stack."
"""A principal of stack S holds DESCRIBE on the topic ``meshgate.stack.S`` (which never
exists): the broker's own record that this stack manages it, so its ACLs go with it when it
leaves the policy, while another stack's principals on a shared broker are left alone."""
REPLY_TOPICS: Final = frozenset({REPLY_TOPIC, ASYNC_REPLY_TOPIC})


class AclConflict(InfraError):
    """The policy would grant one consumer group to two principals."""


@dataclass(frozen=True)
class GroupNames:
    """How the runtime names consumer groups (a unit test holds these to the code)."""

    subscriber_separator: str = ":"
    """``bus.runtime.subscriber.EventSubscriber.group_of``: ``<service>:<topic>``."""
    lambda_suffix: str = "-lambda"
    """``infra.stack.kafka_access.consumer_group``: a Lambda's event source mapping reads in
    the worker's group name with ``-lambda`` added."""
    async_recorder: str = "gateway-async-recorder"
    """``functions.async_results.runner.GROUP_ID``."""

    def worker(self, service: str, subset: str) -> str:
        """``bus.runtime.worker.ServiceWorker``: ``<service>`` or ``<service>.<subset>``."""
        return f"{service}.{subset}" if subset else service

    def event_source(self, service: str, subset: str) -> str:
        return f"{self.worker(service, subset)}{self.lambda_suffix}"


GROUP_NAMES: Final = GroupNames()


@dataclass(frozen=True, order=True)
class AclBinding:
    """One ACL as Kafka stores it (ALLOW or DENY, from a host, an operation on a resource)."""

    principal: str
    resource_type: str
    resource_name: str
    pattern_type: str
    operation: str
    permission: str = "ALLOW"
    host: str = "*"

    def describe(self) -> str:
        """``User:orders ALLOW WRITE on TOPIC orders.events`` (``prefix`` for PREFIXED)."""
        where = f"{self.resource_type} {self.resource_name}"
        if self.pattern_type == "PREFIXED":
            where = f"{self.resource_type} prefix {self.resource_name}"
        elif self.pattern_type != "LITERAL":
            where += f" ({self.pattern_type})"
        host = "" if self.host == "*" else f" from {self.host}"
        return f"{self.principal} {self.permission} {self.operation} on {where}{host}"


@dataclass(frozen=True)
class AclRule:
    binding: AclBinding
    reason: str


def principal(name: str) -> str:
    return f"{PRINCIPAL_TYPE}:{name}"


def managed_principals(policy: Policy) -> frozenset[str]:
    """The principals whose ACLs the policy owns: every service and every operator."""
    return frozenset(principal(n) for n in (*policy.services, *policy.operators))


def stack_marker(stack: str) -> str:
    """The (never created) topic whose DESCRIBE ACL marks a principal of ``stack``."""
    return f"{STACK_MARKER_PREFIX}{stack}"


def is_marker_of(binding: AclBinding, stack: str) -> bool:
    return (binding.resource_type == "TOPIC" and binding.pattern_type == "LITERAL"
            and binding.resource_name == stack_marker(stack) and binding.operation == "DESCRIBE"
            and binding.permission == "ALLOW")


class _Rules:
    def __init__(self) -> None:
        self.rules: dict[AclBinding, str] = {}

    def add(self, who: str, kind: ResourceType, name: str, operations: Iterable[str],
            reason: str, pattern: PatternType = "LITERAL") -> None:
        for operation in operations:
            binding = AclBinding(principal(who), kind, name, pattern, operation)
            self.rules.setdefault(binding, reason)  # the first reason found is kept


def derive_acls(policy: Policy, names: GroupNames = GROUP_NAMES, *,
                stack: str | None = None) -> list[AclRule]:
    """Every ACL the policy asks for, sorted, each with its reason; with ``stack``, each
    principal's marker of that stack too (``STACK_MARKER_PREFIX``). Raises ``AclConflict``
    when two principals would be granted the same consumer group."""
    rules = _Rules()
    if stack is not None:
        for who in sorted((*policy.services, *policy.operators)):
            rules.add(who, "TOPIC", stack_marker(stack), ("DESCRIBE",),
                      f"marks it as a principal of stack {stack}: its ACLs go when it "
                      "leaves the policy")
    request_topics = {t for s in policy.services for t in policy.request_topics(s)}
    for service, spec in policy.services.items():
        produce = policy.produce_topics(service)
        consume = policy.consume_topics(service)
        own = set(policy.request_topics(service))
        for topic in produce:
            why = ("calls an operation served on it" if topic in request_topics
                   else "its produce list")
            rules.add(service, "TOPIC", topic, ("WRITE", "DESCRIBE"), f"produces: {why}")
        for topic in consume:
            why = "serves its operations from it" if topic in own else "its consume list"
            rules.add(service, "TOPIC", topic, ("READ", "DESCRIBE"), f"consumes: {why}")
        if consume and QUARANTINE_TOPIC in policy.topics:
            rules.add(service, "TOPIC", QUARANTINE_TOPIC, ("WRITE", "DESCRIBE"),
                      "parks the records it refuses (bus.security.quarantine)")
        for topic in _derived(policy, consume):
            if topic.endswith(DLT_SUFFIX):
                rules.add(service, "TOPIC", topic, ("WRITE", "DESCRIBE"),
                          f"dead-letters what fails for good on {base_topic(topic)}")
            else:
                rules.add(service, "TOPIC", topic, ("READ", "WRITE", "DESCRIBE"),
                          f"retries failing events of {base_topic(topic)} through it")
        if spec.operations:
            for subset in spec.subsets:
                rules.add(service, "GROUP", names.worker(service, subset), ("READ",),
                          "its worker's consumer group (bus.runtime.worker)")
                rules.add(service, "GROUP", names.event_source(service, subset), ("READ",),
                          "its Lambda's event source mapping group (infra.stack.kafka_access)")
        events = [t for t in consume if t not in own and t not in request_topics
                  and t not in REPLY_TOPICS and base_topic(t) == t]
        if events:
            rules.add(service, "GROUP", f"{service}{names.subscriber_separator}", ("READ",),
                      f"its event subscribers' groups ({', '.join(events)})", "PREFIXED")
        if spec.edge and ASYNC_REPLY_TOPIC in consume:
            rules.add(service, "GROUP", names.async_recorder, ("READ",),
                      "the async results recorder's group (functions.async_results)")
        if produce or consume:  # a consumer parks refusals: it produces too
            rules.add(service, "CLUSTER", CLUSTER_NAME, ("IDEMPOTENT_WRITE",),
                      "its producer is idempotent (bus.transport.kafka)")
    for operator, topics in policy.replay_map().items():
        for topic in topics:
            rules.add(operator, "TOPIC", dlt_topic_name(topic), ("READ", "DESCRIBE"),
                      "lists the dead letters it may replay (meshgate dlq)")
            rules.add(operator, "TOPIC", topic, ("WRITE", "DESCRIBE"),
                      "replays dead letters onto it (meshgate dlq replay)")
        if topics:
            rules.add(operator, "CLUSTER", CLUSTER_NAME, ("IDEMPOTENT_WRITE",),
                      "its replay producer is idempotent (bus.transport.kafka)")
    found = [AclRule(binding, reason) for binding, reason in sorted(rules.rules.items())]
    _check_groups(found)
    return found


def _derived(policy: Policy, consumed: Sequence[str]) -> list[str]:
    """The declared retry and dead-letter topics of the topics in ``consumed``."""
    bases = set(consumed)  # a retry topic may be consumed too: it is still written to
    return [name for name in policy.topics
            if base_topic(name) != name and base_topic(name) in bases
            and (RETRY_INFIX in name or name.endswith(DLT_SUFFIX))]


def _check_groups(rules: Sequence[AclRule]) -> None:
    """A consumer group is one principal's: a name two principals would share (a service
    named ``orders-lambda`` next to ``orders``) would let one join the other's group."""
    groups = [r.binding for r in rules if r.binding.resource_type == "GROUP"]
    shared: set[str] = set()
    for one in groups:
        for other in groups:
            if one.principal < other.principal and _overlap(one, other):
                shared.add(f"{one.resource_name} ({one.principal}, {other.principal})")
    if shared:
        raise AclConflict(f"consumer groups granted to more than one principal: "
                          f"{'; '.join(sorted(shared))}", "rename one of the services")


def _overlap(one: AclBinding, other: AclBinding) -> bool:
    """Whether some group name is covered by both (literal or prefixed) resources."""
    a, b = one.resource_name, other.resource_name
    if one.pattern_type == other.pattern_type == "LITERAL":
        return a == b
    if one.pattern_type == "PREFIXED" and other.pattern_type == "PREFIXED":
        return a.startswith(b) or b.startswith(a)
    prefix, name = (a, b) if one.pattern_type == "PREFIXED" else (b, a)
    return name.startswith(prefix)


# -- the plan (pure) ---------------------------------------------------------------------


@dataclass(frozen=True)
class AclPlan:
    """What to change so that the broker's ACLs of the managed principals are the wanted
    ones. ACLs of any other principal are never added or removed; ``others`` counts, for a
    note, those another principal holds on the policy's topics (one without this stack's
    marker: another stack's, or granted by hand or before markers existed; the broker cannot
    tell a service removed from such a policy from another team's reader)."""

    add: tuple[AclBinding, ...]
    remove: tuple[AclBinding, ...]
    wanted: int
    principals: int
    reasons: Mapping[AclBinding, str]
    others: Mapping[str, int] = field(default_factory=dict)
    # Principals marked as this stack's that the policy no longer names: all their ACLs go.
    departed: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.add or self.remove)

    def changes(self) -> list[str]:
        """``+ acl ...`` to add (with its reason), ``- acl ...`` to remove."""
        return [*(f"+ acl {b.describe()} ({self.reasons[b]})" for b in self.add),
                *(f"- acl {b.describe()}" for b in self.remove)]

    def notes(self) -> list[str]:
        """``!`` one line per principal that left the policy (its ACLs are removed), ``?``
        one line per other principal with ACLs on the policy's topics."""
        gone = [f"! {who} left the policy: its "
                f"{_count(sum(1 for b in self.remove if b.principal == who), 'ACL')} "
                "are removed with it" for who in self.departed]
        return [*gone, *(f"? {who} holds {_count(n, 'ACL')} on the policy's topics and is not "
                         "one of its principals (left alone: another stack's, or marked by "
                         "none; if it was a service removed from the policy, remove them with "
                         "kafka-acls.sh --remove)" for who, n in sorted(self.others.items()))]


def plan_acls(rules: Sequence[AclRule], live: Iterable[AclBinding],
              managed: Iterable[str], *, stack: str | None = None) -> AclPlan:
    """Compare the derived ``rules`` with the broker's ACLs (``live``): add what is missing,
    remove the ACLs of ``managed`` principals that no rule asks for, and, with ``stack``, of
    every principal the broker shows marked as that stack's (one that left the policy)."""
    wanted = {rule.binding: rule.reason for rule in rules}
    live = list(live)
    current = frozenset(managed) | {b.principal for b in wanted}
    marked = ({b.principal for b in live if is_marker_of(b, stack)} if stack is not None
              else set())
    owned = current | marked
    have = {b for b in live if b.principal in owned}
    topics = {b.resource_name for b in wanted if b.resource_type == "TOPIC"}
    others = Counter(b.principal for b in live if b.principal not in owned
                     and b.resource_type == "TOPIC" and b.resource_name in topics)
    return AclPlan(
        add=tuple(sorted(set(wanted) - have)),
        remove=tuple(sorted(have - set(wanted))),
        wanted=len(wanted),
        principals=len({b.principal for b in wanted}),
        reasons=wanted,
        others=dict(others),
        departed=tuple(sorted(marked - current)),
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def plan_sentence(plan: AclPlan) -> str:
    """The ACL half of a plan's last words."""
    if plan.empty:
        return (f"ACLs: the broker matches the policy ({_count(plan.wanted, 'ACL')} for "
                f"{_count(plan.principals, 'principal')}).")
    return f"ACLs: {len(plan.add)} to add, {len(plan.remove)} to remove."


def apply_sentence(plan: AclPlan) -> str:
    if plan.empty:
        return plan_sentence(plan)
    return (f"ACLs applied: {len(plan.add)} added, {len(plan.remove)} removed "
            f"({_count(plan.wanted, 'ACL')} for {_count(plan.principals, 'principal')}).")


def no_authorizer_sentence(wanted: int, bootstrap: str) -> str:
    return (f"ACLs: not in force: the broker at {bootstrap} has no authorizer, so the "
            f"{_count(wanted, 'ACL')} the policy derives are neither checked nor applied "
            "(turn on StandardAuthorizer).")
