"""Foreign Kafka clients at the broker's secure listeners: refused at connect, nothing written.

Each case is a raw aiokafka producer (what an attacker on the machine would run) made with
``bus.transport.connection.aiokafka_kwargs`` and started through
``bus.transport.connect_check.start_client``, trying to write one record to a scratch topic:

- no credentials at all (plaintext on the SASL_SSL listener), TLS without SASL;
- an unknown SCRAM user, a service's SCRAM name (``orders``) and the super user ``admin``
  with guessed passwords, and ``admin``'s real password over SCRAM-SHA-256 (a mechanism the
  listener does not enable);
- no client certificate, and one from another CA, on the mutual-TLS listener.

A case is refused when its start fails with a ``KafkaConnectRefused`` (the reason is its
``code``) and the topic's end offset (read through the operator's door) has not moved; what
landed is what "reached the handler". The control: ``admin`` with the right password writes
the same record over SASL_SSL and it lands. Before issue 13 the broker had one listener,
PLAINTEXT, where every one of these clients wrote its record.
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bus.errors import KafkaConnectRefused, MeshError
from bus.transport.connect_check import start_client
from bus.transport.connection import KafkaSecurity, aiokafka_kwargs
from infra.errors import InfraError
from infra.kafka.acl_admin import AclAdmin
from infra.kafka.local_listeners import LocalListeners, local_listeners
from infra.kafka.scram_users import upsert_user
from infra.local import secure_mesh
from infra.policy.acls import AclBinding
from infra.settings import Settings
from localstack.kafka import tls
from proof.attack.accounting import CONTROL, Outcome

CATEGORY = "kafka_connect"
WAIT_S = 20.0


def _foreign_certificate(folder: Path) -> tuple[str, str]:
    """A well-formed client certificate for the super user's name (CN=admin), made as the
    local broker's own are (``localstack.kafka.tls``) but signed by a CA of its own, which the
    broker does not trust."""
    mallory = folder / "mallory-ca"
    mallory.mkdir(parents=True, exist_ok=True)
    tls.make_ca(mallory)
    tls.make_client(mallory)
    return str(mallory / "client.pem"), str(mallory / "client.key")


def foreign_clients(listeners: LocalListeners, folder: Path
                    ) -> list[tuple[str, str, KafkaSecurity]]:
    """(case, bootstrap, security) of every foreign client."""
    secure, mtls = listeners.secure, listeners.mtls
    admin = listeners.scram("admin")
    cert, key = _foreign_certificate(folder)
    return [
        ("no credentials (plaintext)", secure, KafkaSecurity()),
        ("TLS without SASL", secure, KafkaSecurity(protocol="SSL",
                                                   ssl_cafile=str(listeners.ca_file))),
        ("unknown SCRAM user", secure, listeners.scram("mallory", password="guess")),
        ("a service's SCRAM name, wrong password", secure,
         listeners.scram("orders", password="guess")),
        ("the super user's name, wrong password", secure,
         listeners.scram("admin", password="guess")),
        ("the super user's password over SCRAM-SHA-256", secure,
         admin.model_copy(update={"sasl_mechanism": "SCRAM-SHA-256"})),
        ("mutual TLS without a client certificate", mtls,
         listeners.mutual_tls(with_certificate=False)),
        ("mutual TLS with a certificate of another CA", mtls,
         listeners.mutual_tls().model_copy(update={"ssl_certfile": cert, "ssl_keyfile": key})),
    ]


async def _end_offset(door: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=door, enable_auto_commit=False)
    await start_client("read the end offset", consumer.start, door, KafkaSecurity(), WAIT_S)
    try:
        tp = TopicPartition(topic, 0)
        return int((await consumer.end_offsets([tp]))[tp])
    finally:
        await consumer.stop()


async def try_write(bootstrap: str, security: KafkaSecurity, topic: str) -> str | None:
    """Write one record as this client; None when it was written, else why it was not."""
    try:
        producer = AIOKafkaProducer(**aiokafka_kwargs(bootstrap, security), acks="all",
                                    request_timeout_ms=int(WAIT_S * 1000))
    except MeshError as exc:
        return exc.code
    try:
        await start_client("start producer", producer.start, bootstrap, security, WAIT_S)
        await producer.send_and_wait(topic, b"foreign", key=b"k", partition=0)
    except KafkaConnectRefused as exc:
        return exc.code
    except MeshError as exc:  # not refused at connect: said, and counted as not refused
        return f"unclassified {exc.code}: {exc}"
    finally:
        await producer.stop()
    return None


def _grants(user: str, topic: str) -> list[AclBinding]:
    return [AclBinding(f"User:{user}", "TOPIC", topic, "LITERAL", op)
            for op in ("WRITE", "DESCRIBE")]


async def _retired_principal(settings: Settings, admin: AIOKafkaAdminClient,
                             listeners: LocalListeners, topic: str
                             ) -> tuple[str, str, KafkaSecurity]:
    """A principal that wrote to ``topic`` with its own password and ACLs, then left the
    policy: retired as ``meshgate up`` retires one (``secure_mesh.retire_users``), its ACLs
    left in place (as they are). The case is its old password: only the retirement stands
    between it and the topic."""
    user, password = f"attack{uuid.uuid4().hex[:8]}gone", secrets.token_hex(16)
    security = listeners.scram(user, password=password)
    await asyncio.wait_for(upsert_user(admin, user, password), WAIT_S)
    async with AclAdmin(settings.kafka_bootstrap, security=KafkaSecurity()) as acls:
        await acls.create(_grants(user, topic))
    async with asyncio.timeout(WAIT_S):  # the credential and the ACLs arrive a moment later
        while await try_write(listeners.secure, security, topic) is not None:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
    await secure_mesh.retire_users(settings, [user])
    return ("a principal retired when it left the policy, its old password", listeners.secure,
            security)


async def run_kafka_connect(settings: Settings) -> tuple[list[Outcome], list[str]]:
    try:
        listeners = local_listeners(settings)
        listeners.password("admin")
    except InfraError as exc:
        return [Outcome(CATEGORY, "secure listener", False, 0, "no secure listener")], [
            f"{CATEGORY}: {exc}"]
    door = settings.kafka_bootstrap  # the operator's PLAINTEXT door (127.0.0.1)
    topic = f"attack{uuid.uuid4().hex[:8]}.connect"
    admin = AIOKafkaAdminClient(bootstrap_servers=door)
    await start_client("start the admin client", admin.start, door, KafkaSecurity(), WAIT_S)
    outcomes: list[Outcome] = []
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
        gone = await _retired_principal(settings, admin, listeners, topic)
        with tempfile.TemporaryDirectory(prefix="meshgate-attack-") as folder:
            for case, bootstrap, security in [*foreign_clients(listeners, Path(folder)), gone]:
                before = await _end_offset(door, topic)
                reason = await try_write(bootstrap, security, topic)
                landed = await _end_offset(door, topic) - before
                refused = reason is not None and not reason.startswith("unclassified")
                outcomes.append(Outcome(CATEGORY, f"{case} at {bootstrap}",
                                        refused and landed == 0, landed, reason or "written"))
        before = await _end_offset(door, topic)
        reason = await try_write(listeners.secure, listeners.scram("admin"), topic)
        landed = await _end_offset(door, topic) - before
        outcomes.append(Outcome(CONTROL, "kafka_connect: admin, right password, SASL_SSL",
                                True, landed, reason or "written"))
    finally:
        try:
            async with AclAdmin(door, security=KafkaSecurity()) as acls:
                await acls.delete([b for b in await acls.acls()
                                   if b.resource_type == "TOPIC" and b.resource_name == topic])
        finally:
            await admin.delete_topics([topic])
            await admin.close()
    return outcomes, []
