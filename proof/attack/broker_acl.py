"""A service writing where the policy does not let it is refused twice: by the broker's ACLs
and by the receiver's signature check.

A scratch mesh on the real broker (its own prefix): ``<p>srv`` serves ``<p>srv.add`` on
``<p>srv.requests``, answers on ``mesh.replies`` and publishes ``<p>srv.events``, which
``<p>aud`` subscribes to (one retry stage, dead letters); ``<p>cli`` may call
``<p>srv.add``; ``<p>rogue`` may produce only to ``<p>rogue.out``. Each gets a SCRAM
user and the ACLs ``infra.policy.acls`` derives from that policy, applied as
``meshgate policy apply`` applies them. Then, as a compromised ``rogue`` would:

1. its own SCRAM identity, over SASL_SSL, writes a request it signed with its own key to
   ``<p>srv.requests``: the broker answers TopicAuthorizationFailed and the topic's end
   offset does not move (the first refusal);
2. the same record, written through the operator's door (as if the broker had let it in),
   is read back from the broker and offered to the server's guard, the checks every record
   passes before a handler: it is refused as ``not_allowed`` (the second refusal).

The control: the same identity publishes a signed event on the topic it may write; the broker
takes it and the receiver's guard admits it.

What the broker cannot refuse (``operation_not_allowed``): ``<p>cli`` may call only
``<p>srv.add``, yet may write ``<p>srv.requests``, where every operation of the server
arrives; its request for ``<p>srv.admin`` is refused by the receiver alone (the access map's
``call``; before it, such a request reached the handler).

Before the ACLs (no ACL for the service on a broker without an authorizer, or a grant that
let every service write every topic of the mesh) the first write landed and only the
signature check stood in the way.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    KafkaError,
    TopicAuthorizationFailedError,
)
from pydantic import SecretStr

from bus.config import BusSettings
from bus.envelope import KIND_EVENT, Envelope, ReplyTo, new_id, new_request, now_ms, to_headers
from bus.errors import MeshError
from bus.policy.model import Policy
from bus.security.access import AccessPolicy
from bus.security.identity import Identity
from bus.security.inbound import guard_for
from bus.security.keys import KeyRing, SigningKey, generate_ed25519
from bus.security.quarantine import QUARANTINE_TOPIC
from bus.security.signing import sign
from bus.topics import REPLY_TOPIC
from bus.transport import Record
from bus.transport.connection import KafkaSecurity, aiokafka_kwargs
from infra.kafka import acl_admin, scram_users
from infra.policy.acls import AclPlan, AclRule, derive_acls, managed_principals
from infra.policy.derive import access_map
from infra.settings import Settings
from proof.attack.accounting import CONTROL, Outcome

CATEGORY = "broker_acl"
OPERATION = "operation_not_allowed"
DEPARTED = "acl_departed_principal"
SCENE_PRINCIPAL = re.compile(r"^User:acl[0-9a-f]{8}(srv|rogue|cli|aud|other)$")
WAIT_S = 20.0


@dataclass
class Scene:
    """The scratch mesh: its policy, SCRAM passwords, signing keys and broker addresses."""

    prefix: str
    admin: str  # the operator's door (PLAINTEXT, ANONYMOUS is a super user)
    secure: str  # SASL_SSL
    ca_file: Path
    passwords: dict[str, str] = field(default_factory=dict)
    keys: dict[str, SigningKey] = field(default_factory=dict)
    policy: Policy = field(default_factory=Policy)
    made: list[str] = field(default_factory=list)  # "topics", then each user made

    @property
    def server(self) -> str:
        return f"{self.prefix}srv"

    @property
    def rogue(self) -> str:
        return f"{self.prefix}rogue"

    @property
    def client(self) -> str:
        return f"{self.prefix}cli"

    @property
    def auditor(self) -> str:
        """Subscribes to the server's events (retry stage and dead letters)."""
        return f"{self.prefix}aud"

    @property
    def events(self) -> str:
        return f"{self.server}.events"

    @property
    def own_topics(self) -> list[str]:
        """The scene's own topics (the mesh's shared ones it declares are the stack's)."""
        return [name for name in self.policy.topics if name.startswith(self.prefix)]

    @property
    def requests(self) -> str:
        return f"{self.server}.requests"

    @property
    def allowed(self) -> str:
        return f"{self.rogue}.out"

    def security(self, user: str) -> KafkaSecurity:
        return KafkaSecurity(protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                             sasl_username=user, sasl_password=SecretStr(self.passwords[user]),
                             ssl_cafile=str(self.ca_file))

    def identity(self, service: str) -> Identity:
        """``service`` as the mesh sees it: every key, the access map from the same policy."""
        ring = KeyRing(key.verify_key(name) for name, key in self.keys.items())
        raw = access_map(self.policy)
        access = AccessPolicy.from_dict(raw["produce"], raw["consume"], raw["replay"],
                                        edges=raw["edges"], calls=raw["call"])
        return Identity(service, self.keys[service], ring, access)


def scene_policy(scene: Scene, *, without: str | None = None) -> Policy:
    """The scene's policy; ``without`` a service: as it reads once that service left it
    (its topics stay declared)."""
    server, rogue, client, auditor = scene.server, scene.rogue, scene.client, scene.auditor
    events = scene.events
    one = {"partitions": 1}
    services: dict[str, object] = {server: {"operations": [f"{server}.add", f"{server}.admin"]},
                                   rogue: {}, client: {}, auditor: {}}
    access: dict[str, object] = {rogue: {"produce": [scene.allowed]},
                                 server: {"produce": [REPLY_TOPIC, events]},
                                 client: {"call": [f"{server}.add"], "consume": [REPLY_TOPIC]},
                                 auditor: {"consume": [events, f"{events}.retry.*"]}}
    if without is not None:
        services.pop(without)
        access.pop(without, None)
    return Policy.from_json(json.dumps({
        "services": services,
        "topics": {scene.requests: one, scene.allowed: one, events: one,
                   f"{events}.retry.1": one, f"{events}.dlt": one,
                   REPLY_TOPIC: {"partitions": 16}, QUARANTINE_TOPIC: {"partitions": 3}},
        "access": access,
    }))


async def apply_policy(scene: Scene, policy: Policy, stack: str | None) -> list[str]:
    """``policy``'s ACLs applied as ``meshgate policy apply`` applies them: with ``stack``,
    its principals carry that stack's marker and one that left the policy loses its ACLs."""
    plan, rules, managed = await plan_policy(scene, policy, stack)
    return await acl_admin.apply_live(scene.admin, plan, rules, managed,
                                      security=KafkaSecurity(), stack=stack)


async def plan_policy(scene: Scene, policy: Policy, stack: str | None
                      ) -> tuple[AclPlan, list[AclRule], frozenset[str]]:
    """What ``meshgate policy plan`` would change on the broker for ``policy``, with the rules
    and principals it was planned from (what ``apply_live`` takes with the plan)."""
    rules, managed = derive_acls(policy, stack=stack), managed_principals(policy)
    plan = await acl_admin.plan_live(scene.admin, rules, managed, security=KafkaSecurity(),
                                     stack=stack)
    return plan, rules, managed


def scene_for(settings: Settings) -> Scene:
    prefix = f"acl{uuid.uuid4().hex[:8]}"
    scene = Scene(prefix, settings.kafka_bootstrap, settings.secure_bootstrap,
                  settings.local_dir / "kafka" / "tls" / "ca.pem")
    scene.policy = scene_policy(scene)
    for service in scene.policy.services:
        scene.passwords[service] = secrets.token_hex(16)
        scene.keys[service] = generate_ed25519(service)[0]
    return scene


async def open_scene(scene: Scene) -> list[str]:
    """Topics, SCRAM users and the derived ACLs on the broker; the ACL apply's lines."""
    admin = AIOKafkaAdminClient(bootstrap_servers=scene.admin)
    await asyncio.wait_for(admin.start(), WAIT_S)
    try:
        await asyncio.wait_for(admin.create_topics(
            [NewTopic(name, 1, 1) for name in scene.own_topics]), WAIT_S)
        scene.made.append("topics")
        for user, password in scene.passwords.items():
            await asyncio.wait_for(scram_users.upsert_user(admin, user, password), WAIT_S)
            scene.made.append(user)
    finally:
        await admin.close()
    return await apply_policy(scene, scene.policy, scene.prefix)  # the scene is its own stack


async def close_scene(scene: Scene) -> None:
    """Everything the scene made, removed (its principals' ACLs, users, topics)."""
    managed = managed_principals(scene.policy)
    try:
        async with acl_admin.AclAdmin(scene.admin, security=KafkaSecurity()) as acls:
            # this scene's, and any an interrupted earlier run left on the shared topics
            await acls.delete([b for b in await acls.acls()
                               if b.principal in managed or SCENE_PRINCIPAL.match(b.principal)])
    except acl_admin.NoAuthorizer:
        pass  # no ACLs were made
    admin = AIOKafkaAdminClient(bootstrap_servers=scene.admin)
    await asyncio.wait_for(admin.start(), WAIT_S)
    try:
        for user in scene.made:
            if user in scene.passwords:
                await asyncio.wait_for(scram_users.retire_user(admin, user), WAIT_S)
        if "topics" in scene.made:
            await asyncio.wait_for(admin.delete_topics(scene.own_topics), WAIT_S)
    finally:
        await admin.close()


def signed_event(scene: Scene, sender: str, topic: str) -> Record:
    """An event ``sender`` publishes on ``topic``, signed as the mesh client signs it."""
    envelope = Envelope(id=new_id(), source=sender, type=f"{sender}.happened",
                        kind=KIND_EVENT, value=b"{}", time_ms=now_ms())
    event = sign(envelope, topic, scene.keys[sender])
    return Record(topic, 0, -1, event.value, headers=tuple(to_headers(event)))


def signed(scene: Scene, sender: str, topic: str, verb: str = "add") -> Record:
    """A request for ``<server>.<verb>`` that ``sender`` signs for ``topic`` (offset unknown
    until written)."""
    envelope = new_request(source=sender, operation=f"{scene.server}.{verb}", value=b"{}",
                           reply_to=ReplyTo(scene.allowed, 0), deadline_ms=now_ms() + 30_000)
    record = sign(envelope, topic, scene.keys[sender])
    return Record(topic, 0, -1, record.value, headers=tuple(to_headers(record)))


async def produce(bootstrap: str, security: KafkaSecurity, record: Record) -> None:
    """Write ``record`` as the mesh's producer does (idempotent, acks all)."""
    producer = AIOKafkaProducer(**aiokafka_kwargs(bootstrap, security),
                                enable_idempotence=True, acks="all", request_timeout_ms=10_000)
    try:
        await asyncio.wait_for(producer.start(), WAIT_S)
        await asyncio.wait_for(producer.send_and_wait(
            record.topic, record.value, partition=0, headers=list(record.headers)), WAIT_S)
    finally:
        await producer.stop()


async def end_offset(scene: Scene, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=scene.admin, enable_auto_commit=False)
    await asyncio.wait_for(consumer.start(), WAIT_S)
    try:
        tp = TopicPartition(topic, 0)
        offsets = await asyncio.wait_for(consumer.end_offsets([tp]), WAIT_S)
        return int(offsets[tp])
    finally:
        await consumer.stop()


async def read_at(scene: Scene, topic: str, offset: int) -> Record:
    """The record at ``offset`` of partition 0 of ``topic``, as the broker holds it."""
    consumer = AIOKafkaConsumer(bootstrap_servers=scene.admin, enable_auto_commit=False)
    await asyncio.wait_for(consumer.start(), WAIT_S)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        message = await asyncio.wait_for(consumer.getone(), WAIT_S)
        return Record(message.topic, message.partition, message.offset, message.value,
                      message.key, tuple(message.headers or ()))
    finally:
        await consumer.stop()


def guard_verdict(scene: Scene, record: Record) -> str | None:
    """The server's guard on ``record``: None if admitted, else the refusal's code."""
    guard = guard_for(scene.identity(scene.server), BusSettings(service_name=scene.server))
    try:
        guard.admit(record, now_ms())
    except MeshError as exc:
        return exc.code
    return None


TOOK_IT = "the broker took it"


async def write_as(scene: Scene, user: str, record: Record,
                   refusals: tuple[type[KafkaError], ...]) -> tuple[str, int, int]:
    """``user``'s SCRAM identity writes ``record``: what the broker said (``TOOK_IT``, or the
    name of one of ``refusals``, without ``Error``), how many records landed on its topic,
    and the topic's end offset after it."""
    before = await end_offset(scene, record.topic)
    try:
        await produce(scene.secure, scene.security(user), record)
        reason = TOOK_IT
    except refusals as exc:
        reason = type(exc).__name__.removesuffix("Error")
    end = await end_offset(scene, record.topic)
    return reason, end - before, end


async def attempts(scene: Scene) -> list[Outcome]:
    rogue = scene.security(scene.rogue)
    forged = signed(scene, scene.rogue, scene.requests)
    outcomes: list[Outcome] = []

    reason, landed, end = await write_as(scene, scene.rogue, forged,
                                         (TopicAuthorizationFailedError,))
    outcomes.append(Outcome(CATEGORY, f"{scene.rogue} (SCRAM) writes {scene.requests}",
                            reason == "TopicAuthorizationFailed" and landed == 0, 0,
                            f"{reason}; {landed} landed"))

    await produce(scene.admin, KafkaSecurity(), forged)  # as if the broker had let it in
    code = guard_verdict(scene, await read_at(scene, scene.requests, end))
    outcomes.append(Outcome(CATEGORY, f"the same record past the broker, at {scene.server}",
                            code is not None, 0 if code else 1, code or "admitted"))

    genuine = signed_event(scene, scene.rogue, scene.allowed)
    at = await end_offset(scene, scene.allowed)
    try:
        await produce(scene.secure, rogue, genuine)
    except KafkaError as exc:
        outcomes.append(Outcome(CONTROL, "broker_acl: the allowed topic", True, 0,
                                f"refused: {type(exc).__name__}"))
        return outcomes
    code = guard_verdict(scene, await read_at(scene, scene.allowed, at))
    outcomes.append(Outcome(CONTROL, "broker_acl: the allowed topic, same identity",
                            code is not None, 0 if code else 1, code or "admitted"))
    return outcomes


async def operation_attempts(scene: Scene) -> list[Outcome]:
    """What the broker cannot refuse: ``<p>cli`` may call ``<p>srv.add`` only, but every
    operation of the server shares its request topic, which cli may write. Its own signed
    request for ``<p>srv.admin`` is taken by the broker; the server's guard refuses it
    (``not_allowed``). Control: its ``<p>srv.add`` request, taken and admitted."""
    client = scene.security(scene.client)
    outcomes: list[Outcome] = []
    for category, verb in ((OPERATION, "admin"), (CONTROL, "add")):
        at = await end_offset(scene, scene.requests)
        await produce(scene.secure, client, signed(scene, scene.client, scene.requests, verb))
        code = guard_verdict(scene, await read_at(scene, scene.requests, at))
        label = f"{scene.client} (SCRAM) calls {scene.server}.{verb}"
        outcomes.append(Outcome(category, f"broker_acl: {label}" if category == CONTROL
                                else label, code is not None, 0 if code else 1,
                                f"the broker took it; {code or 'admitted'}"))
    return outcomes


async def departed_attempts(scene: Scene, stack: str | None) -> list[Outcome]:
    """A service that left the policy, its identity living on (a cluster whose users or
    client certificates are not the stack's to retire), writes the topic it used to be
    allowed after ``meshgate policy apply`` (with ``stack``: its marker says it was this
    stack's, so its ACLs went with it). Control: a service still in the policy writes its
    own topic, taken and admitted. Leaves the rogue out of the scene's ACLs."""
    await apply_policy(scene, scene_policy(scene, without=scene.rogue), stack)
    # its idempotent producer asks the cluster first: that right went with the others
    reason, landed, _ = await write_as(
        scene, scene.rogue, signed_event(scene, scene.rogue, scene.allowed),
        (TopicAuthorizationFailedError, ClusterAuthorizationFailedError))
    outcomes = [Outcome(DEPARTED, f"{scene.rogue}, gone from the policy, writes {scene.allowed}",
                        reason != TOOK_IT and landed == 0, 0, f"{reason}; {landed} landed")]
    at = await end_offset(scene, scene.events)
    await produce(scene.secure, scene.security(scene.server),
                  signed_event(scene, scene.server, scene.events))
    code = guard_verdict(scene, await read_at(scene, scene.events, at))
    outcomes.append(Outcome(CONTROL, "broker_acl: a service still in the policy, after the "
                            "apply", code is not None, 0 if code else 1, code or "admitted"))
    return outcomes


async def run_broker_acl(settings: Settings, timeout_s: float) -> tuple[list[Outcome], list[str]]:
    """The two refusals and the control on a scratch mesh, removed afterwards."""
    scene = scene_for(settings)
    try:
        async with asyncio.timeout(timeout_s):
            try:
                await open_scene(scene)
            except acl_admin.NoAuthorizer as exc:  # nothing stops the first write
                return ([Outcome(CATEGORY, "broker ACLs", False, 0, "no authorizer")],
                        [f"broker_acl: {exc}"])
            live, _, _ = await plan_policy(scene, scene.policy, scene.prefix)
            notes = [] if live.empty else [f"broker_acl: ACLs not in place: {live.changes()}"]
            return [*await attempts(scene), *await operation_attempts(scene),
                    *await departed_attempts(scene, scene.prefix)], notes  # the last: it
            # takes the rogue out of the policy
    finally:
        await close_scene(scene)
