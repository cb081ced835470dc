"""Which Kafka transport a process uses: ``BusSettings.transport`` (an explicit argument,
then ``MESH_TRANSPORT``, then ``aiokafka``). The librdkafka one is imported only when chosen,
so a process (or a Lambda zip) without confluent-kafka never needs it."""

from __future__ import annotations

from bus.config import BusSettings
from bus.errors import KafkaConfigError
from bus.security.keys import SecretSource
from bus.transport import Transport


def kafka_transport(settings: BusSettings, *, secrets: SecretSource | None = None) -> Transport:
    """The transport ``settings.transport`` names, connected as ``settings.kafka`` says."""
    if settings.transport == "rdkafka":
        try:
            from bus.transport.rdkafka import RdKafkaTransport
        except ImportError as exc:
            raise KafkaConfigError(f"MESH_TRANSPORT=rdkafka needs the package confluent-kafka "
                                   f"(pip install 'meshgate[rdkafka]'): {exc}") from None
        return RdKafkaTransport(settings, secrets=secrets)
    from bus.transport.kafka import KafkaTransport

    return KafkaTransport(settings, secrets=secrets)
