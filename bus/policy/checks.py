"""Consistency checks of a whole (merged) policy: the mistakes a schema cannot see.

Each finding names the place in the policy it is about (a path such as
``("routes", 0, "operation")``), what is wrong and the fix. ``infra.policy`` turns the path
into a file and a line; the mesh client can refuse an inconsistent policy with the same text.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import re
from collections.abc import Callable, Iterable
from typing import NamedTuple

from bus.policy.model import (
    Loc,
    Policy,
    Route,
    glob_matches,
    is_glob,
    route_segments,
    subset_request_topic,
    topic_name_collisions,
)
from bus.topics import REPLY_TOPIC


def dotted(path: Loc) -> str:
    """``("traffic", "orders.create", "split", 1)`` -> ``traffic["orders.create"].split[1]``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part)}]"
    return text


class Finding(NamedTuple):
    path: Loc
    what: str
    fix: str
    other: Loc | None = None  # the other place involved (a duplicate, an overlap)
    detail: str = ""

    def render(self, locate: Callable[[Loc], str] = dotted) -> str:
        other = f" ({locate(self.other)})" if self.other is not None else ""
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.what}{other}{detail}; {self.fix}"


CUTOFF = 0.6  # difflib's ratio a suggestion needs: a typo or two in a name, not a new name
GLOB_CHAR = re.compile(r"[*?\[]")


def suggest(name: str, candidates: Iterable[str]) -> str:
    """`` (did you mean X?)`` for the declared name closest to ``name``, or ``""``. When
    names share ``name``'s prefix (``orders.`` of ``orders.creat``), only the rest is compared
    among them; a glob ``name`` is mended on its literal prefix (see ``mend_pattern``)."""
    names = sorted(set(candidates))
    if GLOB_CHAR.search(name):
        mended = mend_pattern(name, names)
        return f" (did you mean {mended}?)" if mended else ""
    head, dot, tail = name.partition(".")
    siblings = {n.partition(".")[2]: n for n in names if dot and n.startswith(head + ".")}
    if siblings:  # orders.creat: compare the part after the known prefix (not orders.get)
        near = difflib.get_close_matches(tail, list(siblings), n=1, cutoff=CUTOFF)
        return f" (did you mean {siblings[near[0]]}?)" if near else ""
    close = difflib.get_close_matches(name, names, n=1, cutoff=CUTOFF)
    return f" (did you mean {close[0]}?)" if close else ""


def mend_pattern(pattern: str, names: Iterable[str]) -> str | None:
    """``order.*`` -> ``orders.*``, ``inventory.stok*`` -> ``inventory.stock*``: the pattern
    with its literal prefix (the text before the first glob character) replaced by the closest
    prefix of a declared name, when the mended pattern matches something. Pure."""
    found = GLOB_CHAR.search(pattern)
    if found is None:
        return None
    literal, rest = pattern[: found.start()], pattern[found.start():]
    best: tuple[float, str] | None = None
    for name in sorted(set(names)):
        for size in range(max(1, len(literal) - 2), min(len(name), len(literal) + 2) + 1):
            prefix = name[:size]
            if prefix == literal:
                continue
            score = difflib.SequenceMatcher(None, literal, prefix).ratio()
            if score >= CUTOFF and (best is None or score > best[0]):
                best = (score, prefix)
    if best is None:
        return None
    mended = best[1] + rest
    return mended if any(fnmatch.fnmatchcase(name, mended) for name in names) else None


def check_policy(policy: Policy) -> list[Finding]:
    """Every inconsistency of ``policy``, in the order of its sections."""
    return [
        *_services(policy),
        *_topics(policy),
        *_access(policy),
        *_routes(policy),
        *_traffic(policy),
        *_operators(policy),
    ]


def _operators(policy: Policy) -> Iterable[Finding]:
    """An operator is not a service (its key must never pass for one), and replays only onto
    declared topics."""
    for operator, spec in policy.operators.items():
        if operator in policy.services:
            yield Finding(("operators", operator),
                          f"operator {operator} is also a service: its key would sign as both",
                          "give the operator its own name")
        for i, pattern in enumerate(spec.replay):
            if glob_matches(pattern, policy.topics):
                continue
            what = (f"pattern {pattern} matches no declared topic" if is_glob(pattern)
                    else f"topic {pattern} is not declared")
            yield Finding(("operators", operator, "replay", i),
                          f"operators.{operator}.replay: {what}",
                          "declare it under topics or fix the name"
                          + suggest(pattern, policy.topics))


def _prefix(operation: str) -> str:
    return operation.partition(".")[0]


def _subset(subset: str) -> str:
    return '""' if subset == "" else subset


def _may(patterns: Iterable[str], name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def _services(policy: Policy) -> Iterable[Finding]:
    first_owner: dict[str, str] = {}
    key_owner: dict[str, str] = {}
    for service, spec in policy.services.items():
        for i, operation in enumerate(spec.operations):
            where = ("services", service, "operations", i)
            prefix, _, verb = operation.partition(".")
            if prefix != service:
                yield Finding(
                    where,
                    f"service {service} owns operation {operation}, but the mesh sends "
                    f"{prefix}.* calls to the request topics of service {prefix}",
                    f"rename it {service}.{verb} or move it to services.{prefix}.operations",
                )
            owner = first_owner.setdefault(operation, service)
            if owner != service:
                yield Finding(
                    where, f"operation {operation} is owned by both {owner} and {service}",
                    "keep it in one service", other=("services", owner),
                )
        if spec.operations:
            for i, subset in enumerate(spec.subsets):
                topic = subset_request_topic(service, subset)
                if topic not in policy.topics:
                    label = "its operations" if subset == "" else f"subset {subset}"
                    yield Finding(
                        ("services", service, "subsets", i),
                        f"service {service} serves {label} on topic {topic}, "
                        "which is not declared",
                        f"add {topic} under topics" + (" or remove the subset" if subset else ""),
                    )
            produce = policy.access.get(service)
            if produce is None or not _may(produce.produce, REPLY_TOPIC):
                yield Finding(
                    ("services", service, "operations"),
                    f"service {service} serves operations but may not produce to "
                    f"{REPLY_TOPIC}, where it answers",
                    f"add {REPLY_TOPIC} to access.{service}.produce",
                )
        for i, key in enumerate(spec.keys):
            owner = key_owner.setdefault(key.key_id, service)
            if owner != service:
                yield Finding(
                    ("services", service, "keys", i),
                    f"key id {key.key_id} belongs to both services {owner} and {service}",
                    "each key belongs to one service: give one of them a new key id",
                    other=("services", owner),
                )


def _topics(policy: Policy) -> Iterable[Finding]:
    for first, second in topic_name_collisions(policy.topics):
        yield Finding(
            ("topics", second),
            f"topics {first} and {second} collide: Kafka treats '.' and '_' alike in "
            "metric names and refuses the second",
            "rename one of them", other=("topics", first),
        )


def _access(policy: Policy) -> Iterable[Finding]:
    owners = policy.owners()
    for service, access in policy.access.items():
        if service not in policy.services:
            yield Finding(
                ("access", service), f"access names service {service}, which is not declared",
                f"declare services.{service} or fix the name{suggest(service, policy.services)}",
            )
        for kind, patterns in (("produce", access.produce), ("consume", access.consume)):
            for i, pattern in enumerate(patterns):
                if glob_matches(pattern, policy.topics):
                    continue
                what = (f"pattern {pattern} matches no declared topic" if is_glob(pattern)
                        else f"topic {pattern} is not declared")
                yield Finding(
                    ("access", service, kind, i), f"access.{service}.{kind}: {what}",
                    f"declare it under topics or fix the name{suggest(pattern, policy.topics)}",
                )
        for i, pattern in enumerate(access.call):
            if glob_matches(pattern, owners):
                continue
            prefix = _prefix(pattern)
            if is_glob(pattern):
                what = f"pattern {pattern} matches no operation any service owns"
                fix = ("fix the pattern or add the operations to the services that serve them"
                       + suggest(pattern, owners))
            else:
                what = f"operation {pattern} is owned by no service"
                fix = (f"add it to services.{prefix}.operations or fix the name"
                       if prefix in policy.services else "declare the service that serves it "
                       "or fix the name") + suggest(pattern, owners)
            yield Finding(("access", service, "call", i), f"access.{service}.call: {what}", fix)
        if policy.callable_operations(service) and not _may(access.consume, REPLY_TOPIC):
            yield Finding(
                ("access", service, "call"),
                f"service {service} may call operations but may not consume {REPLY_TOPIC}, "
                "where their answers arrive",
                f"add {REPLY_TOPIC} to access.{service}.consume",
            )


def _routes(policy: Policy) -> Iterable[Finding]:
    owners = policy.owners()
    for i, route in enumerate(policy.routes):
        if route.caller not in policy.services:
            yield Finding(
                ("routes", i, "caller"),
                f"route {route.name} is served by service {route.caller}, which is not declared",
                f"declare services.{route.caller} or set caller to the edge service"
                f"{suggest(route.caller, policy.services)}",
            )
        elif route.auth != "none" and not policy.services[route.caller].edge:
            yield Finding(
                ("routes", i, "caller"),
                f"route {route.name} authenticates its callers ({route.auth}) but is served by "
                f"service {route.caller}, which is not an edge: every receiver would refuse "
                "the caller's principal it sends",
                f"mark it an edge (services.{route.caller}.edge: true) or set caller to one",
            )
        for where, operation in _route_calls(route):
            yield from _route_call(policy, owners, i, route, where, operation)
        if route.auth == "jwt" and (policy.edge is None or policy.edge.jwt is None):
            yield Finding(("routes", i, "auth"),
                          f"route {route.name} takes JWTs but the edge has no jwt settings",
                          "add edge.jwt (issuer, audience, jwks_url or jwks)")
        for j, earlier in enumerate(policy.routes[:i]):
            yield from _overlap(i, route, j, earlier)


def _route_calls(route: Route) -> Iterable[tuple[Loc, str]]:
    if route.aggregate is None:
        assert route.operation is not None
        yield ("operation",), route.operation
        return
    for name, part in route.aggregate.items():
        yield ("aggregate", name, "operation"), part.operation


def _route_call(policy: Policy, owners: dict[str, str], i: int, route: Route, where: Loc,
                operation: str) -> Iterable[Finding]:
    prefix = _prefix(operation)
    if operation not in owners:
        yield Finding(
            ("routes", i, *where),
            f"route {route.name} targets operation {operation} that no service owns",
            (f"add it to services.{prefix}.operations or fix the route"
             if prefix in policy.services
             else "declare the service that serves it or fix the route")
            + suggest(operation, owners),
        )
    elif route.caller in policy.services and not policy.may_call(route.caller, operation):
        yield Finding(
            ("routes", i, *where),
            f"route {route.name} makes service {route.caller} call {operation}, which it may not",
            f"add {operation} (or {prefix}.*) to access.{route.caller}.call or fix the route",
        )


def _overlap(i: int, route: Route, j: int, earlier: Route) -> Iterable[Finding]:
    if route.method != earlier.method and "ANY" not in (route.method, earlier.method):
        return
    example = overlap_example(route_segments(route.path), route_segments(earlier.path))
    if example is None:
        return
    if route.method == earlier.method and route.path == earlier.path:
        yield Finding(("routes", i), f"route {route.name} is defined twice",
                      "remove one of them", other=("routes", j))
        return
    method = earlier.method if route.method == "ANY" else route.method
    yield Finding(
        ("routes", i, "path"), f"route {route.name} overlaps route {earlier.name}",
        "make the paths (or methods) distinct, or remove one of the routes",
        other=("routes", j), detail=f"both match {method} /{'/'.join(example)}",
    )


def overlap_example(a: list[str], b: list[str]) -> list[str] | None:
    """Segments of a request path both segment patterns match, or None if there is none.
    ``{x}`` matches one segment, a last ``{x+}`` one or more."""

    def concrete(segments: list[str]) -> list[str]:
        return ["x" if segment.startswith("{") else segment for segment in segments]

    if not a or not b:
        return [] if not a and not b else None
    head_a, head_b = a[0], b[0]
    if head_a.endswith("+}"):
        return concrete(b)
    if head_b.endswith("+}"):
        return concrete(a)
    if not head_a.startswith("{") and not head_b.startswith("{") and head_a != head_b:
        return None
    rest = overlap_example(a[1:], b[1:])
    if rest is None:
        return None
    head = head_b if head_a.startswith("{") else head_a
    return [*concrete([head]), *rest]


def _traffic(policy: Policy) -> Iterable[Finding]:
    owners = policy.owners()
    for operation, rules in policy.traffic.items():
        where = ("traffic", operation)
        owner = owners.get(operation)
        if owner is None:
            prefix = _prefix(operation)
            yield Finding(
                where, f"traffic rules for operation {operation}, which no service owns",
                (f"add it to services.{prefix}.operations or fix the name"
                 + suggest(operation, owners)) if prefix in policy.services else
                f"fix the name{suggest(operation, owners) or ' or declare the service'}",
            )
            continue
        runs = policy.services[owner].subsets
        destinations: list[tuple[Loc, str]] = [
            *(((*where, "match", i, "subset"), m.subset) for i, m in enumerate(rules.match)),
            *(((*where, "split", i, "subset"), s.subset) for i, s in enumerate(rules.split)),
        ]
        if rules.mirror is not None:
            destinations.append(((*where, "mirror", "subset"), rules.mirror.subset))
        for path, subset in destinations:
            if subset not in runs:
                yield Finding(
                    path,
                    f"traffic rules for {operation} send to subset {_subset(subset)}, "
                    f"which service {owner} does not run",
                    f"add {_subset(subset)} to services.{owner}.subsets or fix the subset"
                    + suggest(subset, [run for run in runs if run]),
                )
        if rules.sticky_header is not None and not rules.split:
            yield Finding((*where, "sticky_header"),
                          f"traffic rules for {operation} set sticky_header without a split",
                          "add a split or remove sticky_header")
