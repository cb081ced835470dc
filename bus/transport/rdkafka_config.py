"""librdkafka configuration of the ``rdkafka`` transport (pure): the connection's security
(``KafkaSecurity``) as librdkafka properties, and the producer and consumer properties that
give the same guarantees as ``bus.transport.kafka`` (acks=all, idempotent producer,
read_committed, no auto-commit, Java's partitioner for keyed records).

Secrets must be resolved first (``resolve_kafka_secrets``); an OAUTHBEARER ``oauth_cb`` is
given by the caller (``bus.transport.rdkafka``), so this module imports no AWS code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bus.config import BusSettings
from bus.errors import KafkaConfigError
from bus.transport.connection import PASSWORD_MECHANISMS, KafkaSecurity

# librdkafka's oauth_cb: (sasl.oauthbearer.config) -> (token, absolute expiry in seconds).
OAuthCallback = Callable[[str | None], tuple[str, float]]
START_TIMEOUT_S = 15.0
# Prefetch bound per consumer (librdkafka's default is 64 MiB and 100k records a partition).
QUEUED_MAX_KBYTES = 16 * 1024
QUEUED_MIN_MESSAGES = 10_000


def security_config(security: KafkaSecurity,
                    oauth_cb: OAuthCallback | None = None) -> dict[str, Any]:
    """``security`` as librdkafka properties (``security.protocol``, ``sasl.*``, ``ssl.*``).
    Its secrets must be read already; an OAUTHBEARER connection needs ``oauth_cb``."""
    config: dict[str, Any] = {"security.protocol": security.protocol.lower()}
    if security.tls:
        if security.ssl_cafile is not None:
            config["ssl.ca.location"] = security.ssl_cafile
        elif security.ssl_ca_pem is not None:
            config["ssl.ca.pem"] = security.ssl_ca_pem
        else:
            config["ssl.ca.location"] = "probe"  # the system's CAs, as ssl's default context
        config["ssl.endpoint.identification.algorithm"] = (
            "https" if security.ssl_check_hostname else "none")
        if security.ssl_key_secret is not None and security.ssl_keyfile is None:
            raise KafkaConfigError(f"the client key is in the secret {security.ssl_key_secret}, "
                                   "not read yet: resolve it first (resolve_kafka_secrets)")
        if security.ssl_certfile is not None:
            config["ssl.certificate.location"] = security.ssl_certfile
            config["ssl.key.location"] = security.ssl_keyfile or security.ssl_certfile
    if security.sasl:
        config["sasl.mechanisms"] = security.sasl_mechanism
        if security.sasl_mechanism in PASSWORD_MECHANISMS:
            if security.sasl_password is None:
                raise KafkaConfigError(
                    f"the SASL password of user '{security.sasl_username}' is in the secret "
                    f"{security.sasl_password_secret}, not read yet: resolve it first "
                    "(resolve_kafka_secrets)")
            config["sasl.username"] = security.sasl_username
            config["sasl.password"] = security.sasl_password.get_secret_value()
        elif security.sasl_mechanism == "OAUTHBEARER":
            if oauth_cb is None:
                raise KafkaConfigError("sasl_mechanism OAUTHBEARER needs a token callback "
                                       f"(oauth_provider {security.oauth_provider})")
            config["oauth_cb"] = oauth_cb
    return config


def _common(settings: BusSettings, security: KafkaSecurity, role: str,
            oauth_cb: OAuthCallback | None) -> dict[str, Any]:
    return {
        "bootstrap.servers": settings.bootstrap_servers,
        "client.id": f"{settings.service_name}-{role}",
        # Errors reach error_cb and the callers; librdkafka's own log stays at warnings.
        "log_level": 4,
        # Nagle off, as asyncio's (so aiokafka's) sockets: small pipelined requests would
        # wait for the previous one's ACK.
        "socket.nagle.disable": True,
        **security_config(security, oauth_cb),
    }


def producer_config(settings: BusSettings, security: KafkaSecurity,
                    oauth_cb: OAuthCallback | None = None) -> dict[str, Any]:
    """The producer: what ``KafkaTransport``'s AIOKafkaProducer is made with."""
    return {
        **_common(settings, security, "producer", oauth_cb),
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": settings.linger_ms,
        "batch.size": settings.max_batch_bytes,
        "message.max.bytes": settings.max_message_bytes + 64 * 1024,
        # A send is answered (delivered or failed) within this, as aiokafka's request timeout.
        "message.timeout.ms": int(START_TIMEOUT_S * 1000),
        "request.timeout.ms": int(START_TIMEOUT_S * 1000),
        # Java's (and aiokafka's) murmur2 for keyed records: a key lands on the same partition
        # whichever transport sent it.
        "partitioner": "murmur2_random",
        # A missing topic is refused, never created by a metadata lookup.
        "allow.auto.create.topics": False,
    }


def consumer_config(settings: BusSettings, security: KafkaSecurity, group_id: str, *,
                    grouped: bool, oauth_cb: OAuthCallback | None = None) -> dict[str, Any]:
    """A consumer: a group member (``grouped``) or a reader of assigned partitions (librdkafka
    wants a group id either way; an assigned reader never joins or commits to it)."""
    return {
        **_common(settings, security, "consumer", oauth_cb),
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest" if grouped else "latest",
        "isolation.level": "read_committed",
        "fetch.wait.max.ms": settings.fetch_max_wait_ms,
        "fetch.min.bytes": 1,
        "allow.auto.create.topics": False,
        "queued.max.messages.kbytes": QUEUED_MAX_KBYTES,
        "queued.min.messages": QUEUED_MIN_MESSAGES,
        "enable.partition.eof": False,
    }
