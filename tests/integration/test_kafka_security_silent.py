"""A plaintext client on a TLS listener that does not close but waits (aiokafka then waits
for its request timeout and says only "Unable to bootstrap"): the start is bounded and the
failure named ``kafka_tls_expected``. The listener is a local stand-in that completes a TLS
handshake when a client starts one and otherwise holds the connection in silence, as a TLS
listener waiting for a ClientHello does; a fully silent one gives ``kafka_unreachable``.
Loopback sockets only; no duration is asserted (the bounds only keep a regression from
hanging the run)."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bus.errors import KafkaTlsExpected, KafkaUnreachable, is_retriable
from bus.transport.connect_check import start_client
from bus.transport.connection import KafkaSecurity, aiokafka_kwargs

pytestmark = pytest.mark.integration
TLS_HANDSHAKE = 0x16


def _server_context(folder: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return context


class Listener:
    """Accepts on 127.0.0.1; speaks TLS to a client that starts a handshake (when
    ``tls``), holds every other connection open and unanswered until closed."""

    def __init__(self, context: ssl.SSLContext | None) -> None:
        self._context = context
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.port = int(self._server.getsockname()[1])
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            try:
                first = conn.recv(1, socket.MSG_PEEK)
                if self._context is not None and first and first[0] == TLS_HANDSHAKE:
                    conn = self._context.wrap_socket(conn, server_side=True)
            except (OSError, ssl.SSLError):
                pass
            self._held.append(conn)  # never answered

    def __enter__(self) -> Listener:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self._held:
            conn.close()
        self._server.close()


@pytest.fixture
def tls_listener(tmp_path: Path) -> Iterator[Listener]:
    with Listener(_server_context(tmp_path)) as listener:
        yield listener


@pytest.fixture
def silent_listener() -> Iterator[Listener]:
    with Listener(None) as listener:
        yield listener


async def _start(bootstrap: str, security: KafkaSecurity) -> None:
    producer = AIOKafkaProducer(**aiokafka_kwargs(bootstrap, security), request_timeout_ms=30_000)
    try:
        async with asyncio.timeout(30):  # a bound against hanging, not an expectation
            await start_client("start producer", producer.start, bootstrap, security,
                               timeout_s=1.0, probe_s=1.0)
    finally:
        await producer.stop()


async def test_a_plaintext_client_on_a_waiting_tls_listener_is_named(
        tls_listener: Listener) -> None:
    address = f"127.0.0.1:{tls_listener.port}"
    with pytest.raises(KafkaTlsExpected) as failed:
        await _start(address, KafkaSecurity())
    assert str(failed.value) == (f"the listener at {address} expects TLS but the client speaks "
                                 "PLAINTEXT: set the protocol to SSL")
    assert not is_retriable(failed.value)


async def test_a_listener_that_answers_nothing_is_unreachable(silent_listener: Listener) -> None:
    address = f"127.0.0.1:{silent_listener.port}"
    with pytest.raises(KafkaUnreachable, match=f"the broker at {address} did not complete a "
                                               "PLAINTEXT handshake in 1s") as failed:
        await _start(address, KafkaSecurity())
    assert is_retriable(failed.value)
