"""What the librdkafka transport's parts share: its errors as the bus's (``mesh_error``),
and the connection (settings, resolved security, token callback, the last error librdkafka
reported) that turns a failed start into one line (``connect_check.diagnose``)."""

from __future__ import annotations

import logging

from confluent_kafka import KafkaError, KafkaException

from bus.config import BusSettings
from bus.errors import BrokerRefused, MeshError, TransportError
from bus.transport.connect_check import diagnose
from bus.transport.connection import KafkaSecurity
from bus.transport.rdkafka_config import START_TIMEOUT_S, OAuthCallback

log = logging.getLogger("bus.transport.rdkafka")
librdkafka_log = logging.getLogger("bus.transport.rdkafka.librdkafka")  # not on stderr
CLOSE_TIMEOUT_S = 15.0

# Errors a record may carry that are not about the records (an assigned reader has a group
# id only because librdkafka wants one: its coordinator lookups may be refused).
GROUP_ERRORS = frozenset({KafkaError.GROUP_AUTHORIZATION_FAILED,
                          KafkaError.COORDINATOR_NOT_AVAILABLE,
                          KafkaError.NOT_COORDINATOR})
SKIPPED = frozenset({KafkaError._PARTITION_EOF})
# librdkafka says so when the connection, not the request, failed.
CONNECTION_ERRORS = frozenset({KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN,
                               KafkaError._AUTHENTICATION, KafkaError._SSL,
                               KafkaError._TIMED_OUT, KafkaError.SASL_AUTHENTICATION_FAILED})


# Kafka's retriable errors and librdkafka's local ones that pass (a delivery report's error
# does not carry librdkafka's retriable flag, so the codes are named here).
_RETRIABLE = frozenset({
    KafkaError._MSG_TIMED_OUT, KafkaError._TIMED_OUT, KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN, KafkaError._QUEUE_FULL, KafkaError._WAIT_COORD,
    KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.REQUEST_TIMED_OUT, KafkaError.NETWORK_EXCEPTION,
    KafkaError.NOT_ENOUGH_REPLICAS, KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NOT_COORDINATOR, KafkaError.KAFKA_STORAGE_ERROR,
    KafkaError.REBALANCE_IN_PROGRESS,
})


def mesh_error(what: str, error: KafkaError) -> MeshError:
    """A librdkafka error as the bus's: retriable ones TransportError, the rest (and any
    fatal one) BrokerRefused."""
    retriable = error.retriable() or error.code() in _RETRIABLE
    kind = TransportError if retriable and not error.fatal() else BrokerRefused
    return kind(f"{what}: {error.name()}: {error.str()}")


def error_of(exc: KafkaException) -> KafkaError | None:
    first = exc.args[0] if exc.args else None
    return first if isinstance(first, KafkaError) else None


def raised(what: str, exc: KafkaException) -> MeshError:
    error = error_of(exc)
    return mesh_error(what, error) if error is not None else TransportError(f"{what}: {exc}")


class Connection:
    """The resolved security and the errors librdkafka reported (for one-line failures)."""

    def __init__(self, settings: BusSettings, security: KafkaSecurity,
                 oauth_cb: OAuthCallback | None) -> None:
        self.settings = settings
        self.security = security
        self.oauth_cb = oauth_cb
        self.last_error: KafkaError | None = None

    def on_error(self, error: KafkaError) -> None:  # librdkafka's threads
        self.last_error = error
        log.debug("librdkafka: %s", error)

    async def refused(self, what: str, exc: BaseException | None) -> MeshError:
        """Why ``what`` failed to reach the broker: the diagnosed one-line error, else the
        last error librdkafka reported, else ``exc``."""
        found = await diagnose(self.settings.bootstrap_servers, self.security)
        if found is not None:
            return found
        if self.last_error is not None:
            return mesh_error(what, self.last_error)
        if isinstance(exc, KafkaException):
            return raised(what, exc)
        return TransportError(f"{what}: no answer from the broker in {START_TIMEOUT_S:g}s")
