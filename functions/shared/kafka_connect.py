"""The Kafka transport of a worker or a Lambda: connection security from ``MESH_KAFKA_*``
(``BusSettings.kafka``), its secrets (a SCRAM password, a client key) read from Secrets
Manager when the first client starts (``bus.transport.connection.resolve_kafka_secrets``)."""

from __future__ import annotations

from bus.config import BusSettings
from bus.transport.kafka import KafkaTransport
from functions.shared.secrets import SecretsManagerSource


def kafka_transport(settings: BusSettings) -> KafkaTransport:
    """``KafkaTransport(settings)`` that can read the secrets its settings name."""
    return KafkaTransport(settings, secrets=SecretsManagerSource())
