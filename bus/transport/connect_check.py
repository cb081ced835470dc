"""One clear line when a Kafka client cannot connect.

aiokafka's ``start()`` only says "Unable to bootstrap from [...]" (the reason goes to its
log), and a plaintext client on a TLS listener may wait for its request timeout. So every
client start goes through ``start_client``: bounded in time, and on a failure one diagnosing
connection to each bootstrap address (``aiokafka.conn.create_conn``, the same handshake and
authentication the client made) whose exception ``classify`` names:

- ``KafkaAuthFailed``: SASL refused (wrong password, unknown user, a mechanism the user has
  no credentials for, a mechanism the listener does not enable);
- ``KafkaTlsUntrusted``: the broker's certificate is not trusted (or names another host);
- ``KafkaTlsClientRefused``: the broker refused the client certificate (or its absence);
- ``KafkaTlsExpected``: a plaintext client on a TLS listener (proved by a TLS handshake);
- ``KafkaTlsUnexpected``: a TLS client on a plaintext listener (proved by a plaintext one);
- ``KafkaConnectRefused``: a SASL client on a listener without SASL;
- ``KafkaAuthFailed`` too: a client without SASL on a SASL listener (closed after ApiVersions);
- ``KafkaUnreachable`` (retriable): nothing answers at the address.

The happy path pays nothing: the diagnosis runs only after a failed start.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiokafka.conn import create_conn
from aiokafka.errors import (
    IllegalSaslStateError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.protocol.metadata import MetadataRequest

from bus.errors import (
    BrokerRefused,
    KafkaAuthFailed,
    KafkaConnectRefused,
    KafkaTlsClientRefused,
    KafkaTlsExpected,
    KafkaTlsUnexpected,
    KafkaTlsUntrusted,
    KafkaUnreachable,
    MeshError,
    TransportError,
)
from bus.transport.connection import KafkaSecurity, aiokafka_kwargs

T = TypeVar("T")
START_TIMEOUT_S = 15.0
PROBE_TIMEOUT_S = 5.0
_CONN_ARGS = ("security_protocol", "ssl_context", "sasl_mechanism", "sasl_plain_username",
              "sasl_plain_password", "sasl_oauth_token_provider")


def addresses(bootstrap: str) -> list[tuple[str, int]]:
    """``host:port`` pairs of a bootstrap list (IPv6 hosts in brackets)."""
    found: list[tuple[str, int]] = []
    for item in bootstrap.split(","):
        host, _, port = item.strip().rpartition(":")
        if host and port.isdigit():
            found.append((host.strip("[]"), int(port)))
    return found


def classify(exc: BaseException, address: str, security: KafkaSecurity) -> MeshError | None:
    """The error a failed diagnosing connection means, when it is certain from ``exc`` alone
    (pure); None when it needs another probe (closed or silent connection) or is unknown."""
    who = f"user '{security.sasl_username}'" if security.sasl_username else "the client"
    mechanism = security.sasl_mechanism or "SASL"
    if isinstance(exc, MeshError):
        return exc  # e.g. the MSK IAM token provider's KafkaAuthFailed
    if isinstance(exc, SaslAuthenticationFailed):
        return KafkaAuthFailed(f"SASL authentication failed for {who} on {address} "
                               f"({mechanism})")
    if isinstance(exc, UnsupportedSaslMechanismError):
        enabled = str(exc).partition("Enabled mechanisms are:")[2].strip()
        return KafkaAuthFailed(f"the listener at {address} does not enable SASL mechanism "
                               f"{mechanism}" + (f" (it enables {enabled})" if enabled else ""))
    if isinstance(exc, IllegalSaslStateError):
        return KafkaConnectRefused(f"the listener at {address} takes no SASL but the client "
                                   f"speaks {security.protocol}: use the broker's SASL port or "
                                   f"protocol {'SSL' if security.tls else 'PLAINTEXT'}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or _text(exc)
        return KafkaTlsUntrusted(f"the broker certificate at {address} is not trusted: {reason} "
                                 f"(CA: {_ca(security)})")
    tls_cause = exc.__context__ if isinstance(exc, KafkaConnectionError) else exc
    if isinstance(tls_cause, ssl.SSLError) and not isinstance(tls_cause, ssl.SSLZeroReturnError):
        reason = getattr(tls_cause, "reason", None) or _text(tls_cause)
        if "CERTIFICATE" in str(reason).upper():
            have = ("the client certificate " + security.ssl_certfile
                    if security.ssl_certfile else "no client certificate")
            return KafkaTlsClientRefused(f"the broker at {address} refused the TLS client "
                                         f"({have}): {reason}")
    # (TimeoutError is an OSError: a silent listener may be TLS waiting for a handshake.)
    if isinstance(exc, OSError) and not isinstance(
            exc, ConnectionResetError | ssl.SSLError | TimeoutError):
        return KafkaUnreachable(f"cannot connect to the broker at {address}: {_text(exc)}")
    return None


def _text(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


def _ca(security: KafkaSecurity) -> str:
    if security.ssl_cafile:
        return security.ssl_cafile
    return "ssl_ca_pem" if security.ssl_ca_pem else "the system's CAs"


async def _speaks_tls(host: str, port: int, probe_s: float) -> bool:
    """Whether ``host:port`` completes a TLS handshake (nothing verified, nothing sent)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        async with asyncio.timeout(probe_s):
            _, writer = await asyncio.open_connection(host, port, ssl=context)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(probe_s):
            await writer.wait_closed()
    return True


async def _speaks_plaintext_kafka(host: str, port: int, probe_s: float) -> bool:
    """Whether ``host:port`` answers a plaintext Kafka ApiVersions request."""
    try:
        async with asyncio.timeout(probe_s):
            conn = await create_conn(host, port, request_timeout_ms=int(probe_s * 1000))
    except (OSError, KafkaError, TimeoutError):
        return False
    conn.close()
    return True


async def diagnose_address(host: str, port: int, security: KafkaSecurity,
                           kwargs: dict[str, Any], probe_s: float = PROBE_TIMEOUT_S
                           ) -> MeshError | None:
    """Connect to one address as the client would; the error that names why it fails, or
    None when it connects (the failure was elsewhere)."""
    address = f"{host}:{port}"
    conn_args = {name: kwargs[name] for name in _CONN_ARGS if name in kwargs}
    try:
        async with asyncio.timeout(probe_s):
            conn = await create_conn(host, port, client_id="meshgate-diagnose",
                                     request_timeout_ms=int(probe_s * 1000),
                                     **conn_args)
    except (OSError, KafkaError, TimeoutError, MeshError) as exc:
        found = classify(exc, address, security)
        if found is not None:
            return found
        if not security.tls and await _speaks_tls(host, port, probe_s):
            return KafkaTlsExpected(f"the listener at {address} expects TLS but the client "
                                    f"speaks {security.protocol}: set the protocol to "
                                    f"{'SASL_SSL' if security.sasl else 'SSL'}")
        if security.tls and await _speaks_plaintext_kafka(host, port, probe_s):
            return KafkaTlsUnexpected(f"the listener at {address} is plaintext but the client "
                                      f"speaks {security.protocol}: set the protocol to "
                                      f"{'SASL_PLAINTEXT' if security.sasl else 'PLAINTEXT'} "
                                      "or use the broker's TLS port")
        if isinstance(exc, TimeoutError):
            return KafkaUnreachable(f"the broker at {address} did not complete a "
                                    f"{security.protocol} handshake in {probe_s:g}s")
        return None
    try:  # what the client asks next: a listener that wants SASL closes on it
        async with asyncio.timeout(probe_s):
            await conn.send(MetadataRequest([]))
    except (KafkaError, OSError, TimeoutError):
        if not security.sasl:
            return KafkaAuthFailed(f"the listener at {address} closed the connection before "
                                   f"any request: it expects SASL authentication, the client "
                                   f"speaks {security.protocol} (set the protocol to "
                                   f"{'SASL_SSL' if security.tls else 'SASL_PLAINTEXT'})")
        return None
    finally:
        conn.close()
    return None


async def diagnose(bootstrap: str, security: KafkaSecurity,
                   probe_s: float = PROBE_TIMEOUT_S) -> MeshError | None:
    """Why a client of ``security`` cannot connect to ``bootstrap``: the first address's
    certain answer (a refusal beats unreachable: one address down is not the story)."""
    kwargs = aiokafka_kwargs(bootstrap, security)
    unreachable: MeshError | None = None
    for host, port in addresses(bootstrap):
        found = await diagnose_address(host, port, security, kwargs, probe_s)
        if isinstance(found, KafkaUnreachable):
            unreachable = unreachable or found
        elif found is not None:
            return found
    return unreachable


async def start_client(what: str, start: Callable[[], Awaitable[T]], bootstrap: str,
                       security: KafkaSecurity, timeout_s: float = START_TIMEOUT_S,
                       probe_s: float = PROBE_TIMEOUT_S) -> T:
    """``await start()`` bounded by ``timeout_s``; a failure becomes the one-line error
    ``diagnose`` finds, else ``TransportError`` / ``BrokerRefused`` as before."""
    try:
        async with asyncio.timeout(timeout_s):
            return await start()
    except (TimeoutError, KafkaError) as exc:
        found = await diagnose(bootstrap, security, probe_s)
        if found is not None:
            raise found from None
        if isinstance(exc, TimeoutError):
            raise TransportError(f"{what}: no answer from the broker in {timeout_s:g}s") from exc
        error = TransportError if getattr(exc, "retriable", False) else BrokerRefused
        raise error(f"{what}: {exc!r}") from exc
