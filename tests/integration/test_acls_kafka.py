"""Broker ACLs from the policy on the real broker (StandardAuthorizer, SASL_SSL + SCRAM): a
scratch mesh under its own prefix (proof.attack.broker_acl.Scene), its users, topics and
ACLs removed afterwards."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bus.config import BusSettings
from bus.delivery.idempotency import MemoryIdempotencyStore
from bus.delivery.retry_topics import RetryTopicPolicy
from bus.envelope import Envelope
from bus.errors import HandlerError
from bus.runtime.client import MeshClient
from bus.runtime.subscriber import EventSubscriber
from bus.runtime.worker import ServiceWorker
from bus.service import Payload, Service
from bus.transport.connection import KafkaSecurity
from bus.transport.kafka import KafkaTransport
from infra.kafka import acl_admin
from infra.policy.acls import AclBinding, derive_acls, managed_principals, stack_marker
from infra.settings import Settings
from proof.attack import broker_acl
from proof.attack.accounting import CONTROL

pytestmark = pytest.mark.integration
ADMIN = KafkaSecurity()  # the operator's door: PLAINTEXT, ANONYMOUS is a super user


@pytest.fixture
async def scene(infra_settings: Settings, bootstrap: str) -> AsyncIterator[broker_acl.Scene]:
    scene = broker_acl.scene_for(infra_settings)
    try:
        yield scene
    finally:
        await broker_acl.close_scene(scene)


async def _acls(scene: broker_acl.Scene) -> set[AclBinding]:
    async with acl_admin.AclAdmin(scene.admin, security=ADMIN) as admin:
        return set(await admin.acls())


async def _create(scene: broker_acl.Scene, *bindings: AclBinding) -> None:
    """Create ``bindings`` and return once the broker's authorizer lists them (it learns
    them from the metadata log a moment after CreateAcls answers)."""
    async with acl_admin.AclAdmin(scene.admin, security=ADMIN) as admin:
        await admin.create(bindings)
        async with asyncio.timeout(15):
            while not set(bindings) <= set(await admin.acls()):  # noqa: ASYNC110 - the broker's
                await asyncio.sleep(0.1)


async def test_apply_then_plan_changes_nothing_and_leaves_other_principals_alone(
        scene: broker_acl.Scene) -> None:
    rules = derive_acls(scene.policy)
    managed = managed_principals(scene.policy)
    # The scene before: a too-wide ACL a person once gave the rogue, and another team's ACL.
    stale = AclBinding(f"User:{scene.rogue}", "TOPIC", scene.requests, "LITERAL", "WRITE")
    other = AclBinding(f"User:{scene.prefix}other", "TOPIC", scene.requests, "LITERAL", "READ")
    await _create(scene, stale, other)

    plan = await acl_admin.plan_live(scene.admin, rules, managed, security=ADMIN)
    assert set(plan.add) == {rule.binding for rule in rules}
    assert plan.remove == (stale,)
    # a note, never a change (the stack's services, on the mesh topics the scene shares,
    # are others too)
    assert plan.others[other.principal] == 1
    done = await acl_admin.apply_live(scene.admin, plan, rules, managed, security=ADMIN)
    assert len(done) == len(rules) + 1
    assert not any(line.startswith("!") for line in done)

    again = await acl_admin.plan_live(scene.admin, rules, managed, security=ADMIN)
    assert again.empty, again.changes()
    live = await _acls(scene)
    assert other in live  # not the policy's principal: never touched
    assert stale not in live
    assert {rule.binding for rule in rules} <= live


async def test_a_service_writing_where_the_policy_does_not_let_it_is_refused_twice(
        scene: broker_acl.Scene) -> None:
    await broker_acl.open_scene(scene)
    first, second, control = await broker_acl.attempts(scene)
    # by the broker: its own SCRAM identity may not write the server's request topic
    assert first.refused, first
    assert first.reason == "TopicAuthorizationFailed; 0 landed"
    # by the receiver: the same signed record, let past the broker, fails the access check
    assert second.refused, second
    assert second.reason == "not_allowed"
    # the same identity, the topic the policy lets it write: taken and admitted
    assert control.category == CONTROL
    assert (control.refused, control.reached_handler, control.reason) == (False, 1, "admitted")


async def test_a_broker_without_the_acls_lets_the_write_land(scene: broker_acl.Scene) -> None:
    """What the ACLs change: the same write with a hand-made prefix-wide ACL instead of the
    policy's (the service may write every topic of the mesh) lands on the topic."""
    await broker_acl.open_scene(scene)
    wide = AclBinding(f"User:{scene.rogue}", "TOPIC", scene.prefix, "PREFIXED", "WRITE")
    await _create(scene, wide)
    first, second, _ = await broker_acl.attempts(scene)
    assert not first.refused
    assert first.reason == "the broker took it; 1 landed"
    assert second.reason == "not_allowed"  # only the signature check stood in the way


async def test_the_derived_acls_are_enough_for_a_worker_and_a_caller(
        scene: broker_acl.Scene) -> None:
    """The ACLs are not only narrow but sufficient: a worker (group join, fetch, commit, reply)
    and a caller (request, its reply partition) each on its own SCRAM identity over SASL_SSL,
    a call answered end to end."""
    await broker_acl.open_scene(scene)
    service = Service(scene.server)

    @service.operation(f"{scene.server}.add")
    async def add(payload: Payload, message: Envelope) -> Payload:
        return {"sum": payload["a"] + payload["b"], "from": message.source}

    def settings_of(name: str) -> BusSettings:
        return BusSettings.resolve(bootstrap_servers=scene.secure, service_name=name,
                                   kafka=scene.security(name))

    worker_settings = settings_of(scene.server)
    worker_transport = KafkaTransport(worker_settings)
    worker = ServiceWorker(service, worker_transport, worker_settings,
                           scene.identity(scene.server), store=MemoryIdempotencyStore())
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    client_settings = settings_of(scene.client)
    client = MeshClient(KafkaTransport(client_settings), client_settings,
                        scene.identity(scene.client))
    try:
        answer = await client.request(f"{scene.server}.add", {"a": 2, "b": 3}, timeout_s=20)
    finally:
        await client.close()
        stop.set()
        await asyncio.wait_for(task, 15)
        await worker_transport.close()
    assert answer == {"sum": 5, "from": scene.client}
    assert worker.quarantined == 0


async def test_what_the_broker_cannot_refuse_the_receiver_does(scene: broker_acl.Scene) -> None:
    """The client may call only ``<p>srv.add``; its ACL lets it write the server's request
    topic, which carries every operation, so its request for ``<p>srv.admin`` lands; the
    server's guard refuses it by the access map's ``call``."""
    await broker_acl.open_scene(scene)
    other, control = await broker_acl.operation_attempts(scene)
    assert other.category == broker_acl.OPERATION
    assert (other.refused, other.reason) == (True, "the broker took it; not_allowed")
    assert (control.refused, control.reached_handler) == (False, 1)


async def test_the_derived_acls_are_enough_for_an_event_subscriber(
        scene: broker_acl.Scene) -> None:
    """A subscriber on its own SCRAM identity with only the derived ACLs: its groups (the
    ``<service>:`` prefix), a retry through the declared retry topic (read and write) and a
    dead letter (write); the publisher on its own identity."""
    await broker_acl.open_scene(scene)
    applied: list[str] = []
    attempts: dict[str, int] = {}
    subscriber_service = Service(scene.auditor)

    @subscriber_service.on_event(scene.events, "thing.happened")
    async def on_thing(payload: Payload, event: Envelope) -> None:
        name = str(payload["name"])
        attempts[name] = attempts.get(name, 0) + 1
        if name == "fatal":
            raise HandlerError("invalid_thing", "never")
        if name == "busy" and attempts[name] == 1:
            raise HandlerError("busy", "not yet", retriable=True)
        applied.append(name)

    def settings_of(name: str) -> BusSettings:
        return BusSettings.resolve(bootstrap_servers=scene.secure, service_name=name,
                                   kafka=scene.security(name))

    sub_settings = settings_of(scene.auditor)
    transport = KafkaTransport(sub_settings)
    subscriber = EventSubscriber(subscriber_service, scene.events, transport, sub_settings,
                                 scene.identity(scene.auditor),
                                 policy=RetryTopicPolicy.of_seconds(0.5),
                                 store=MemoryIdempotencyStore())
    pub_settings = settings_of(scene.server)
    publisher = MeshClient(KafkaTransport(pub_settings), pub_settings,
                           scene.identity(scene.server))
    stop = asyncio.Event()
    task = asyncio.create_task(subscriber.run(stop))
    try:
        for name in ("good", "busy", "fatal"):
            await publisher.publish(scene.events, "thing.happened", {"name": name})
        async with asyncio.timeout(30):
            while not (len(applied) == 2 and subscriber.counts.dead_lettered == 1):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        await publisher.close()
        await transport.close()
    assert sorted(applied) == ["busy", "good"]
    assert attempts == {"good": 1, "busy": 2, "fatal": 1}
    assert subscriber.counts.retried == 1
    assert subscriber.quarantined == 0


async def test_a_service_that_left_the_policy_loses_its_acls_and_another_stacks_stay(
        scene: broker_acl.Scene) -> None:
    """The stack's marker: once the rogue leaves the policy, ``policy apply`` removes every
    ACL it had (its identity still logs in: it is refused by the broker), while a principal
    marked as another stack's, on the same topics, keeps its own."""
    await broker_acl.open_scene(scene)
    marker = stack_marker(scene.prefix)
    assert AclBinding(f"User:{scene.rogue}", "TOPIC", marker, "LITERAL", "DESCRIBE") \
        in await _acls(scene)
    neighbour = f"User:{scene.prefix}other"
    theirs = {AclBinding(neighbour, "TOPIC", scene.allowed, "LITERAL", "WRITE"),
              AclBinding(neighbour, "TOPIC", stack_marker(f"{scene.prefix}x"), "LITERAL",
                         "DESCRIBE")}
    await _create(scene, *theirs)

    departed, control = await broker_acl.departed_attempts(scene, scene.prefix)
    assert departed.refused, departed
    assert departed.reason in ("ClusterAuthorizationFailed; 0 landed",  # the producer's id
                               "TopicAuthorizationFailed; 0 landed")
    assert (control.category, control.refused, control.reached_handler) == (CONTROL, False, 1)
    live = await _acls(scene)
    assert not [b for b in live if b.principal == f"User:{scene.rogue}"]
    assert theirs <= live
    # applied again: nothing left to do
    rules = derive_acls(broker_acl.scene_policy(scene, without=scene.rogue), stack=scene.prefix)
    again = await acl_admin.plan_live(scene.admin, rules, managed_principals(scene.policy),
                                      security=ADMIN, stack=scene.prefix)
    assert again.empty, again.changes()


async def test_without_the_marker_a_service_that_left_keeps_its_rights(
        scene: broker_acl.Scene) -> None:
    """What the marker changes: the same departure applied as before it existed (no stack),
    and the departed service's write lands."""
    await broker_acl.open_scene(scene)
    departed, _ = await broker_acl.departed_attempts(scene, None)
    assert not departed.refused
    assert departed.reason == "the broker took it; 1 landed"
