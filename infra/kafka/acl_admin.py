"""The Kafka ACL adapter of ``infra.policy.acls``: the broker's ACLs in, ACL changes out.

aiokafka 0.14's admin client has no ACL methods, but its protocol module has the
DescribeAcls, CreateAcls and DeleteAcls structs (v1: with resource pattern types, the oldest
version Kafka 4 still answers). They are sent through the admin client's connection, so the
ACLs are read and changed with the same connection settings (TLS, SASL) as every other admin
call (``bus.transport.connection.aiokafka_kwargs``); confluent-kafka's admin client would
have needed a second translation of them into librdkafka's settings.

Every call is bounded (``timeout_s``) and every refusal leaves as one ``InfraError`` line;
a broker without an authorizer answers ``NoAuthorizer``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from typing import Any, Final

from aiokafka.errors import for_code
from aiokafka.protocol.admin import (
    CreateAclsRequest_v1,
    DeleteAclsRequest_v1,
    DescribeAclsRequest_v1,
)
from aiokafka.protocol.api import Request

from bus.transport.connection import KafkaSecurity
from infra.errors import KafkaAdminFailed
from infra.kafka.admin_connection import AdminConnection
from infra.policy.acls import AclBinding, AclPlan, AclRule, plan_acls
from infra.settings import Settings

# Kafka's enums (org.apache.kafka.common.resource / acl), as the wire carries them.
RESOURCE_TYPES: Final = {"ANY": 1, "TOPIC": 2, "GROUP": 3, "CLUSTER": 4,
                         "TRANSACTIONAL_ID": 5, "DELEGATION_TOKEN": 6, "USER": 7}
PATTERN_TYPES: Final = {"ANY": 1, "MATCH": 2, "LITERAL": 3, "PREFIXED": 4}
OPERATIONS: Final = {"ANY": 1, "ALL": 2, "READ": 3, "WRITE": 4, "CREATE": 5, "DELETE": 6,
                     "ALTER": 7, "DESCRIBE": 8, "CLUSTER_ACTION": 9, "DESCRIBE_CONFIGS": 10,
                     "ALTER_CONFIGS": 11, "IDEMPOTENT_WRITE": 12, "CREATE_TOKENS": 13,
                     "DESCRIBE_TOKENS": 14}
PERMISSIONS: Final = {"ANY": 1, "DENY": 2, "ALLOW": 3}
SECURITY_DISABLED: Final = 54  # SecurityDisabledException: no authorizer is configured
CLUSTER_AUTHORIZATION_FAILED: Final = 31


class NoAuthorizer(KafkaAdminFailed):
    """The broker has no authorizer: it neither keeps nor checks ACLs."""

    code = "no_authorizer"


def _name(table: Mapping[str, int], code: int) -> str:
    for name, value in table.items():
        if value == code:
            return name
    return f"UNKNOWN({code})"


def _code(table: Mapping[str, int], name: str) -> int:
    if name not in table:
        raise ValueError(f"Kafka knows no {name!r} here (one of {', '.join(table)})")
    return table[name]


def _wire(b: AclBinding) -> tuple[int, str, int, str, str, int, int]:
    return (_code(RESOURCE_TYPES, b.resource_type), b.resource_name,
            _code(PATTERN_TYPES, b.pattern_type), b.principal, b.host,
            _code(OPERATIONS, b.operation), _code(PERMISSIONS, b.permission))


def bindings_from_describe(response: Mapping[str, Any]) -> list[AclBinding]:
    """The ACLs of a DescribeAcls v1 answer (``Response.to_object()``)."""
    return [
        AclBinding(
            principal=acl["principal"],
            resource_type=_name(RESOURCE_TYPES, resource["resource_type"]),
            resource_name=resource["resource_name"],
            pattern_type=_name(PATTERN_TYPES, resource["resource_pattern_type"]),
            operation=_name(OPERATIONS, acl["operation"]),
            permission=_name(PERMISSIONS, acl["permission_type"]),
            host=acl["host"],
        )
        for resource in response["resources"]
        for acl in resource["acls"]
    ]


class _Describe(Request[DescribeAclsRequest_v1]):  # type: ignore[misc]  # aiokafka is untyped
    API_KEY = 29

    def build(self, struct: type[Any]) -> Any:
        any_ = OPERATIONS["ANY"]  # every resource, pattern, principal, host and operation
        return struct(RESOURCE_TYPES["ANY"], None, PATTERN_TYPES["ANY"], None, None, any_,
                      PERMISSIONS["ANY"])


class _Create(Request[CreateAclsRequest_v1]):  # type: ignore[misc]
    API_KEY = 30

    def __init__(self, bindings: Sequence[AclBinding]) -> None:
        self._bindings = bindings

    def build(self, struct: type[Any]) -> Any:
        return struct([_wire(b) for b in self._bindings])


class _Delete(Request[DeleteAclsRequest_v1]):  # type: ignore[misc]
    API_KEY = 31

    def __init__(self, bindings: Sequence[AclBinding]) -> None:
        self._bindings = bindings

    def build(self, struct: type[Any]) -> Any:
        return struct([_wire(b) for b in self._bindings])  # exact filters: one ACL each


def _refusal(what: str, code: int, message: str | None, bootstrap: str) -> KafkaAdminFailed:
    cls = for_code(code)
    reason = f"{cls.__name__}: {message or getattr(cls, 'description', '') or 'no reason'}"
    if code == SECURITY_DISABLED:
        return NoAuthorizer(f"Kafka at {bootstrap} has no authorizer ({reason})",
                            "turn on StandardAuthorizer (authorizer.class.name)")
    if code == CLUSTER_AUTHORIZATION_FAILED:
        return KafkaAdminFailed(f"Kafka refused to {what}: {reason}",
                                "connect as a super user or a principal with ALTER and "
                                "DESCRIBE on the cluster")
    return KafkaAdminFailed(f"Kafka refused to {what}: {reason}", "check the broker log",
                            retriable=bool(cls.retriable))


class AclAdmin(AdminConnection):
    """``async with AclAdmin(bootstrap) as admin:`` one admin connection, closed on exit
    (``infra.kafka.admin_connection``: how it connects and fails)."""

    client_id = "meshgate-acls"
    start_what = "start the ACL admin client"

    async def _send(self, what: str, request: Request) -> dict[str, Any]:
        return await self._call(what, self._client._send_request(request))

    async def _call(self, what: str, call: Awaitable[Any]) -> dict[str, Any]:
        response = await self._bounded(what, "check the broker log", call)
        answer: dict[str, Any] = response.to_object()
        return answer

    async def acls(self) -> list[AclBinding]:
        """Every ACL on the broker (``NoAuthorizer`` when it keeps none)."""
        answer = await self._send("describe ACLs", _Describe())
        if answer["error_code"]:
            raise _refusal("describe ACLs", answer["error_code"], answer["error_message"],
                           self.bootstrap)
        return bindings_from_describe(answer)

    async def create(self, bindings: Sequence[AclBinding]) -> None:
        if not bindings:
            return
        answer = await self._send("create ACLs", _Create(bindings))
        self._refused("create", bindings, ((r["error_code"], r["error_message"])
                                           for r in answer["creation_responses"]))

    async def delete(self, bindings: Sequence[AclBinding]) -> None:
        if not bindings:
            return
        answer = await self._send("delete ACLs", _Delete(bindings))
        self._refused("delete", bindings, ((r["error_code"], r["error_message"])
                                           for r in answer["filter_responses"]))

    def _refused(self, verb: str, bindings: Sequence[AclBinding],
                 results: Iterable[tuple[int, str | None]]) -> None:
        for binding, (code, message) in zip(bindings, results, strict=True):
            if code:
                raise _refusal(f"{verb} the ACL {binding.describe()}", code, message,
                               self.bootstrap)


# -- against the live broker -------------------------------------------------------------

SETTLE_TIMEOUT_S = 15.0
SETTLE_POLL_S = 0.2


async def plan_live(bootstrap: str, rules: Sequence[AclRule], managed: Iterable[str], *,
                    security: KafkaSecurity | None = None,
                    settings: Settings | None = None, stack: str | None = None) -> AclPlan:
    """``plan_acls`` against the broker at ``bootstrap`` (``NoAuthorizer`` without one)."""
    async with AclAdmin(bootstrap, security=security, settings=settings) as admin:
        return plan_acls(rules, await admin.acls(), managed, stack=stack)


async def apply_live(bootstrap: str, plan: AclPlan, rules: Sequence[AclRule],
                     managed: Iterable[str], *, security: KafkaSecurity | None = None,
                     settings: Settings | None = None, stack: str | None = None) -> list[str]:
    """Add, then remove (a changed rule never leaves a moment with neither), then wait
    (bounded) until the broker shows the result. One line per change; a last ``!`` line
    if the broker does not show them all in time."""
    if plan.empty:
        return []
    owned = frozenset(managed)
    async with AclAdmin(bootstrap, security=security, settings=settings) as admin:
        await admin.create(plan.add)
        done = [f"+ added acl {b.describe()}" for b in plan.add]
        try:
            await admin.delete(plan.remove)
        except KafkaAdminFailed as exc:
            raise type(exc)(f"{exc.what} (already added: {len(plan.add)} ACLs)", exc.fix,
                            retriable=exc.retriable) from exc
        done += [f"- removed acl {b.describe()}" for b in plan.remove]
        loop = asyncio.get_running_loop()
        give_up = loop.time() + SETTLE_TIMEOUT_S
        # Whoever departed is in ``owned`` now: its marker may be gone before its ACLs are.
        owned |= frozenset(plan.departed)
        while not (left := plan_acls(rules, await admin.acls(), owned, stack=stack)).empty:
            if loop.time() >= give_up:
                done.append(f"! after {SETTLE_TIMEOUT_S:g}s the broker does not show "
                            f"{len(left.add) + len(left.remove)} of the ACL changes yet "
                            "(run the plan again in a moment)")
                break
            await asyncio.sleep(SETTLE_POLL_S)
    return done
