"""Connection security on the REAL local broker (issue 13): the mesh over its SASL_SSL
listener (SCRAM-SHA-512, the local CA) and its mutual-TLS listener, and each way a connection
fails giving its one-line error, from the mesh's producer and consumer, the operator's admin,
the ``meshgate`` CLI and a worker process (one line on stderr, exit 1, no stack trace).

Every failure is bounded (``asyncio.timeout``) only so a regression cannot hang the run;
no duration is asserted."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bus.config import BusSettings
from bus.delivery.idempotency import MemoryIdempotencyStore
from bus.envelope import Envelope, from_record
from bus.errors import (
    KafkaAuthFailed,
    KafkaConfigError,
    KafkaConnectRefused,
    KafkaTlsClientRefused,
    KafkaTlsExpected,
    KafkaTlsUnexpected,
    KafkaTlsUntrusted,
    KafkaUnreachable,
    MeshError,
    is_retriable,
)
from bus.runtime.client import MeshClient
from bus.runtime.worker import ServiceWorker
from bus.service import Payload, Service
from bus.transport.connection import KafkaSecurity
from bus.transport.kafka import KafkaTransport
from functions.shared.secrets import SecretsManagerSource
from infra.deploy.aws import client
from infra.kafka.local_listeners import LocalListeners, local_listeners
from infra.kafka.topic_admin import TopicAdmin
from infra.settings import ROOT, Settings
from tests.support import MESHGATE, identities

pytestmark = pytest.mark.integration
CALLER = "itest-secure-caller"
BOUND_S = 60.0  # a bound against hanging, not an expectation


@pytest.fixture(scope="module")
def listeners() -> LocalListeners:
    found = local_listeners(Settings.resolve())
    host, _, port = found.secure.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
        listening = True
    except OSError:
        listening = False
    if not listening or not found.ca_file.is_file():
        pytest.fail(f"no SASL_SSL listener at {found.secure} (CA {found.ca_file}): run "
                    "'make test' or '.venv/bin/meshgate up' first")
    return found


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA the broker's certificate was not signed by."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not the broker's CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path = tmp_path_factory.mktemp("other-ca") / "ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def secure_settings(listeners: LocalListeners, service: str) -> BusSettings:
    """The mesh over SASL_SSL as the broker's super user (the service principals' ACLs are
    tests/integration of the ACL work; here it is the connection that is proved)."""
    return BusSettings.resolve(bootstrap_servers=listeners.secure, service_name=service,
                               kafka=listeners.scram("admin"))


def adder(name: str) -> Service:
    service = Service(name)

    @service.operation(f"{name}.add")
    async def add(payload: Payload, message: Envelope) -> Payload:
        return {"sum": payload["a"] + payload["b"], "from": message.source}

    return service


async def test_request_reply_over_sasl_ssl(listeners: LocalListeners, service_name: str) -> None:
    mesh = identities({CALLER: [f"{service_name}.requests"], service_name: ["mesh.replies"]})
    worker_settings = secure_settings(listeners, service_name)
    worker_transport = KafkaTransport(worker_settings)
    worker = ServiceWorker(adder(service_name), worker_transport, worker_settings,
                           mesh[service_name], store=MemoryIdempotencyStore())
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    caller_settings = secure_settings(listeners, CALLER)
    client = MeshClient(KafkaTransport(caller_settings), caller_settings, mesh[CALLER])
    try:
        async with asyncio.timeout(BOUND_S):
            reply = await client.request(f"{service_name}.add", {"a": 2, "b": 40},
                                         timeout_s=30)
        assert reply == {"sum": 42, "from": CALLER}
    finally:
        await client.close()
        stop.set()
        await asyncio.wait_for(task, 15)
        await worker_transport.close()


async def test_publish_over_sasl_ssl_and_read_it_back_over_mutual_tls(
        listeners: LocalListeners, service_name: str) -> None:
    topic = f"{service_name}.requests"
    mesh = identities({CALLER: [topic]})
    settings = secure_settings(listeners, CALLER)
    client = MeshClient(KafkaTransport(settings), settings, mesh[CALLER])
    reader_transport = KafkaTransport(BusSettings.resolve(
        bootstrap_servers=listeners.mtls, service_name="itest-mtls-reader",
        kafka=listeners.mutual_tls()))
    readers = [reader_transport.assigned_reader(topic, p, from_beginning=True)
               for p in range(await reader_transport.partition_count(topic))]
    try:
        async with asyncio.timeout(BOUND_S):
            event_id = await client.publish(topic, "itest.secure.published", {"n": 1},
                                            key=b"k")
            for reader in readers:
                await reader.start()
            seen: list[str] = []
            while event_id not in seen:
                for reader in readers:
                    seen += [from_record(r.headers, r.value).id
                             for r in await reader.read(0.2)]
    finally:
        await client.close()
        for reader in readers:
            await reader.stop()
        await reader_transport.close()


@pytest.fixture
def admin_secret(listeners: LocalListeners, infra_settings: Settings) -> Iterator[str]:
    """The super user's password in the emulator's Secrets Manager, in MSK's JSON form, as
    the deploy stores a service's (a name of this test's own, deleted afterwards)."""
    secrets = client(infra_settings, "secretsmanager")
    name = f"/itest/kafka/scram/{uuid.uuid4().hex[:8]}"
    secrets.create_secret(Name=name, SecretString=json.dumps(
        {"username": "admin", "password": listeners.password("admin")}))
    try:
        yield name
    finally:
        secrets.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)


async def test_the_password_comes_from_secrets_manager(listeners: LocalListeners,
                                                       infra_settings: Settings,
                                                       admin_secret: str) -> None:
    """A worker's and a tool's way: MESH_KAFKA_SASL_PASSWORD_SECRET / MESHGATE_..., read from
    the real emulator once, then SASL_SSL to the real broker."""
    named = KafkaSecurity(protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                          sasl_username="admin", sasl_password_secret=admin_secret,
                          ssl_cafile=str(listeners.ca_file))
    source = SecretsManagerSource(client=client(infra_settings, "secretsmanager"))
    transport = KafkaTransport(BusSettings(bootstrap_servers=listeners.secure,
                                           service_name="itest", kafka=named), secrets=source)
    try:
        async with asyncio.timeout(BOUND_S):
            assert await transport.partition_count("mesh.replies") >= 1
    finally:
        await transport.close()
    operator = infra_settings.model_copy(update={"kafka_security": named})
    async with asyncio.timeout(BOUND_S), TopicAdmin(listeners.secure,
                                                    settings=operator) as admin:
        assert "mesh.replies" in await admin.topics()
    unread = KafkaTransport(BusSettings(bootstrap_servers=listeners.secure, service_name="itest",
                                        kafka=named))  # no secret source
    try:
        with pytest.raises(KafkaConfigError, match=f"name the secret {admin_secret} but this "
                                                   "process has no secret source"):
            await unread.partition_count("mesh.replies")
    finally:
        await unread.close()


def _failures(listeners: LocalListeners, other_ca: Path
              ) -> dict[str, tuple[str, KafkaSecurity, type[MeshError], str]]:
    """case -> (bootstrap, security, error class, the one line it must say exactly)."""
    secure, plain = listeners.secure, listeners.plaintext
    wrong = listeners.scram("orders", password="not-the-password")
    return {
        "wrong password": (secure, wrong, KafkaAuthFailed,
                           f"SASL authentication failed for user 'orders' on {secure} "
                           "(SCRAM-SHA-512)"),
        "super user, wrong password": (
            secure, listeners.scram("admin", password="guess"), KafkaAuthFailed,
            f"SASL authentication failed for user 'admin' on {secure} (SCRAM-SHA-512)"),
        "SCRAM-SHA-256 against a SHA-512 listener": (
            secure, listeners.scram("admin").model_copy(
                update={"sasl_mechanism": "SCRAM-SHA-256"}), KafkaAuthFailed,
            f"the listener at {secure} does not enable SASL mechanism SCRAM-SHA-256"),
        "untrusted CA": (
            secure, listeners.scram("admin").model_copy(update={"ssl_cafile": str(other_ca)}),
            KafkaTlsUntrusted, f"the broker certificate at {secure} is not trusted: "
            f"self-signed certificate in certificate chain (CA: {other_ca})"),
        "plaintext client on the TLS listener": (
            secure, KafkaSecurity(), KafkaTlsExpected,
            f"the listener at {secure} expects TLS but the client speaks PLAINTEXT: set the "
            "protocol to SSL"),
        "TLS client on the plaintext listener": (
            plain, listeners.scram("admin"), KafkaTlsUnexpected,
            f"the listener at {plain} is plaintext but the client speaks SASL_SSL: set the "
            "protocol to SASL_PLAINTEXT or use the broker's TLS port"),
        "no client certificate on the mutual-TLS listener": (
            listeners.mtls, listeners.mutual_tls(with_certificate=False),
            KafkaTlsClientRefused, f"the broker at {listeners.mtls} refused the TLS client "
            "(no client certificate): SSLV3_ALERT_BAD_CERTIFICATE"),
    }


CASES = ["wrong password", "super user, wrong password",
         "SCRAM-SHA-256 against a SHA-512 listener", "untrusted CA",
         "plaintext client on the TLS listener", "TLS client on the plaintext listener",
         "no client certificate on the mutual-TLS listener"]


@pytest.mark.parametrize("case", CASES)
async def test_each_failure_is_one_line_from_producer_and_consumer(
        listeners: LocalListeners, other_ca: Path, case: str) -> None:
    bootstrap, security, error, line = _failures(listeners, other_ca)[case]
    transport = KafkaTransport(BusSettings(bootstrap_servers=bootstrap, service_name="itest",
                                           kafka=security))
    try:
        async with asyncio.timeout(BOUND_S):
            with pytest.raises(error) as producer_failed:
                await transport.send("mesh.replies", b"{}", headers=[])
            reader = transport.assigned_reader("mesh.replies", 0)
            with pytest.raises(error) as consumer_failed:
                await reader.start()
    finally:
        await transport.close()
    for failed in (producer_failed, consumer_failed):
        assert str(failed.value) == line
        assert isinstance(failed.value, KafkaConnectRefused)
        assert not is_retriable(failed.value)
        assert "not-the-password" not in str(failed.value)


async def test_the_operators_admin_gives_the_same_line(listeners: LocalListeners,
                                                       other_ca: Path) -> None:
    bootstrap, security, error, line = _failures(listeners, other_ca)["wrong password"]
    async with asyncio.timeout(BOUND_S):
        with pytest.raises(error, match="^" + line.replace("(", r"\(").replace(")", r"\)")):
            async with TopicAdmin(bootstrap, security=security):
                pass
        async with TopicAdmin(listeners.secure, security=listeners.scram("admin")) as admin:
            assert "mesh.replies" in await admin.topics()


async def test_nothing_listening_is_retriable_unreachable(listeners: LocalListeners) -> None:
    closed = f"127.0.0.1:{_free_port()}"
    transport = KafkaTransport(BusSettings(bootstrap_servers=closed, service_name="itest",
                                           kafka=listeners.scram("admin")))
    try:
        async with asyncio.timeout(BOUND_S):
            with pytest.raises(KafkaUnreachable, match=f"cannot connect to the broker at {closed}"
                               ) as failed:
                await transport.send("mesh.replies", b"{}", headers=[])
    finally:
        await transport.close()
    assert is_retriable(failed.value)  # a restarting broker comes back


async def test_mutual_tls_with_the_local_client_certificate(listeners: LocalListeners) -> None:
    transport = KafkaTransport(BusSettings(bootstrap_servers=listeners.mtls,
                                           service_name="itest", kafka=listeners.mutual_tls()))
    try:
        async with asyncio.timeout(BOUND_S):
            assert await transport.partition_count("mesh.replies") >= 1
    finally:
        await transport.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _operator_env(listeners: LocalListeners, password: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MESHGATE_KAFKA_",
                                                                     "MESH_KAFKA_"))}
    env.update(MESHGATE_KAFKA_BOOTSTRAP=listeners.secure, MESHGATE_KAFKA_PROTOCOL="SASL_SSL",
               MESHGATE_KAFKA_SASL_MECHANISM="SCRAM-SHA-512", MESHGATE_KAFKA_SASL_USERNAME="admin",
               MESHGATE_KAFKA_SASL_PASSWORD=password, MESHGATE_KAFKA_SSL_CAFILE=str(
                   listeners.ca_file))
    return env


@pytest.fixture
async def dead_letter_topic(bootstrap: str) -> AsyncIterator[str]:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    name = f"itest{uuid.uuid4().hex[:8]}.dlt"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 1, 1)])
        yield name
        await admin.delete_topics([name])
    finally:
        await admin.close()


def test_the_cli_says_one_line_and_exits_1(listeners: LocalListeners,
                                           dead_letter_topic: str) -> None:
    meshgate = [str(MESHGATE)]
    good = subprocess.run([*meshgate, "dlq", "list", dead_letter_topic], cwd=ROOT,
                          env=_operator_env(listeners, listeners.password("admin")),
                          capture_output=True, text=True, timeout=120, check=False)
    assert good.returncode == 0, good.stderr
    assert f"0 dead letter(s) on {dead_letter_topic}" in good.stdout
    bad = subprocess.run([*meshgate, "dlq", "list", dead_letter_topic], cwd=ROOT,
                         env=_operator_env(listeners, "wrong"), capture_output=True, text=True,
                         timeout=120, check=False)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [
        f"meshgate: error: kafka_auth_failed: SASL authentication failed for user 'admin' on "
        f"{listeners.secure} (SCRAM-SHA-512)"]


def test_a_worker_says_one_line_and_exits_1(listeners: LocalListeners) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESH_")}
    env.update(MESH_INSECURE="1", MESH_BOOTSTRAP_SERVERS=listeners.secure,
               MESH_KAFKA_PROTOCOL="SASL_SSL", MESH_KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
               MESH_KAFKA_SASL_USERNAME="orders", MESH_KAFKA_SASL_PASSWORD="wrong",
               MESH_KAFKA_SSL_CAFILE=str(listeners.ca_file), MESH_LOG_FORMAT="text",
               OTEL_SDK_DISABLED="true")
    worker = subprocess.run([sys.executable, "-m", "functions.orders.worker"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert worker.returncode == 1
    assert "Traceback" not in worker.stderr
    assert worker.stderr.strip().splitlines()[-1] == (
        f"orders: error: kafka_auth_failed: SASL authentication failed for user 'orders' on "
        f"{listeners.secure} (SCRAM-SHA-512)")
