"""The Kafka transport of a worker or a Lambda: connection security from ``MESH_KAFKA_*``
(``BusSettings.kafka``), its secrets (a SCRAM password, a client key) read from Secrets
Manager when the first client starts (``bus.transport.connection.resolve_kafka_secrets``),
and the client library from ``MESH_TRANSPORT`` (``bus.transport.select``: aiokafka unless
set; the Lambda zips carry no librdkafka, so their functions stay on aiokafka)."""

from __future__ import annotations

from bus.config import BusSettings
from bus.transport import Transport
from bus.transport.select import kafka_transport as selected_transport
from functions.shared.secrets import SecretsManagerSource


def kafka_transport(settings: BusSettings) -> Transport:
    """The transport ``settings.transport`` names, able to read the secrets its settings
    name."""
    return selected_transport(settings, secrets=SecretsManagerSource())
