"""The librdkafka transport's configuration (pure) and the transport setting: the connection
security as librdkafka properties, the producer's and consumer's guarantees, the error
mapping, and MESH_TRANSPORT (explicit > environment > aiokafka). No broker: the contract
suite runs the transport on the real one (tests/contract, params rdkafka and rdkafka-sasl)."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError
from pydantic import SecretStr, ValidationError

from bus.config import BusSettings
from bus.errors import BrokerRefused, KafkaConfigError, TransportError
from bus.transport.connection import KafkaSecurity
from bus.transport.kafka import KafkaTransport
from bus.transport.rdkafka import RdKafkaTransport
from bus.transport.rdkafka_config import consumer_config, producer_config, security_config
from bus.transport.rdkafka_connection import mesh_error
from bus.transport.select import kafka_transport
from functions.shared.kafka_connect import kafka_transport as worker_transport

PASSWORD = "hunter2-do-not-print"


def scram(**extra: object) -> KafkaSecurity:
    return KafkaSecurity.model_validate({"protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                                         "sasl_username": "orders", **extra})


def test_plaintext_is_only_the_protocol() -> None:
    assert security_config(KafkaSecurity()) == {"security.protocol": "plaintext"}


def test_scram_over_tls_with_a_ca_file() -> None:
    config = security_config(scram(sasl_password=SecretStr(PASSWORD), ssl_cafile="/ca.pem"))
    assert config == {
        "security.protocol": "sasl_ssl",
        "ssl.ca.location": "/ca.pem",
        "ssl.endpoint.identification.algorithm": "https",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "orders",
        "sasl.password": PASSWORD,
    }


def test_ca_pem_client_certificate_and_no_hostname_check() -> None:
    security = KafkaSecurity(protocol="SSL", ssl_ca_pem="-----BEGIN CERTIFICATE-----",
                             ssl_certfile="/client.pem", ssl_keyfile="/client.key",
                             ssl_check_hostname=False)
    assert security_config(security) == {
        "security.protocol": "ssl",
        "ssl.ca.pem": "-----BEGIN CERTIFICATE-----",
        "ssl.endpoint.identification.algorithm": "none",
        "ssl.certificate.location": "/client.pem",
        "ssl.key.location": "/client.key",
    }


def test_no_ca_means_the_systems_cas() -> None:
    assert security_config(KafkaSecurity(protocol="SSL"))["ssl.ca.location"] == "probe"


def test_unread_secrets_are_refused_without_showing_them() -> None:
    with pytest.raises(KafkaConfigError, match="resolve it first"):
        security_config(scram(sasl_password_secret="/meshgate/kafka/scram/orders"))
    with pytest.raises(KafkaConfigError, match="resolve it first"):
        security_config(KafkaSecurity(protocol="SSL", ssl_certfile="/c.pem",
                                      ssl_key_secret="/meshgate/kafka/key"))


def test_oauthbearer_needs_its_callback() -> None:
    msk = KafkaSecurity(protocol="SASL_SSL", sasl_mechanism="OAUTHBEARER",
                        oauth_provider="msk-iam", aws_region="eu-west-1")
    with pytest.raises(KafkaConfigError, match="token callback"):
        security_config(msk)

    def token(_config: str | None) -> tuple[str, float]:
        return "token", 1.0

    config = security_config(msk, token)
    assert config["sasl.mechanisms"] == "OAUTHBEARER"
    assert config["oauth_cb"] is token


def test_producer_keeps_the_aiokafka_transports_guarantees() -> None:
    settings = BusSettings(service_name="orders", linger_ms=0, max_batch_bytes=4096,
                           max_message_bytes=1000)
    config = producer_config(settings, KafkaSecurity())
    assert config["acks"] == "all"
    assert config["enable.idempotence"] is True
    assert config["linger.ms"] == 0  # librdkafka's default is 5 ms, paid twice a round trip
    assert config["batch.size"] == 4096
    assert config["message.max.bytes"] == 1000 + 64 * 1024
    assert config["partitioner"] == "murmur2_random"  # keyed records land where Java's do
    assert config["allow.auto.create.topics"] is False
    assert config["client.id"] == "orders-producer"
    assert config["socket.nagle.disable"] is True  # as asyncio's sockets
    assert config["bootstrap.servers"] == settings.bootstrap_servers


@pytest.mark.parametrize(("grouped", "reset"), [(True, "earliest"), (False, "latest")])
def test_consumer_reads_committed_and_never_commits_by_itself(grouped: bool, reset: str) -> None:
    settings = BusSettings(service_name="orders", fetch_max_wait_ms=100)
    config = consumer_config(settings, KafkaSecurity(), "orders", grouped=grouped)
    assert config["isolation.level"] == "read_committed"
    assert config["enable.auto.commit"] is False
    assert config["auto.offset.reset"] == reset
    assert config["fetch.wait.max.ms"] == 100
    assert config["group.id"] == "orders"


def test_error_mapping() -> None:
    assert isinstance(mesh_error("send", KafkaError(KafkaError._MSG_TIMED_OUT)), TransportError)
    assert mesh_error("send", KafkaError(KafkaError._MSG_TIMED_OUT)).retriable is True
    assert mesh_error("send", KafkaError(KafkaError.NOT_ENOUGH_REPLICAS)).retriable is True
    refused = mesh_error("send", KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))
    assert isinstance(refused, BrokerRefused)
    assert refused.retriable is False
    assert "TOPIC_AUTHORIZATION_FAILED" in str(refused)
    fatal = KafkaError(KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, fatal=True)
    assert mesh_error("send", fatal).retriable is False


def test_transport_setting_explicit_over_environment_over_default() -> None:
    assert BusSettings.resolve(env={}).transport == "aiokafka"
    assert BusSettings.resolve(env={"MESH_TRANSPORT": "rdkafka"}).transport == "rdkafka"
    assert BusSettings.resolve(env={"MESH_TRANSPORT": "rdkafka"},
                               transport="aiokafka").transport == "aiokafka"
    with pytest.raises(ValidationError):
        BusSettings.resolve(env={"MESH_TRANSPORT": "kafka-python"})


def test_the_setting_picks_the_transport() -> None:
    assert isinstance(kafka_transport(BusSettings()), KafkaTransport)
    assert isinstance(kafka_transport(BusSettings(transport="rdkafka")), RdKafkaTransport)
    # the workers' (functions.shared.worker_main) and the Lambdas' way to make one
    assert isinstance(worker_transport(BusSettings()), KafkaTransport)
    assert isinstance(worker_transport(BusSettings.resolve(env={"MESH_TRANSPORT": "rdkafka"})),
                      RdKafkaTransport)
