"""What a failed Kafka connection means (``bus.transport.connect_check.classify``, pure): the
exceptions are the ones aiokafka's ``create_conn`` raised against the real listeners (see
tests/integration/test_kafka_security.py for the same cases end to end)."""

from __future__ import annotations

import ssl

import pytest
from aiokafka.errors import (
    IllegalSaslStateError,
    KafkaConnectionError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from pydantic import SecretStr

from bus.errors import (
    KafkaAuthFailed,
    KafkaConnectRefused,
    KafkaTlsClientRefused,
    KafkaTlsUntrusted,
    KafkaUnreachable,
    MeshError,
    is_retriable,
)
from bus.transport.connect_check import addresses, classify
from bus.transport.connection import KafkaSecurity

ADDRESS = "127.0.0.1:9094"
SCRAM = KafkaSecurity(protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                      sasl_username="orders", sasl_password=SecretStr("wrong-secret"),
                      ssl_cafile="/ca.pem")
MTLS = KafkaSecurity(protocol="SSL", ssl_cafile="/ca.pem", ssl_certfile="/c.pem",
                     ssl_keyfile="/c.key")


def _closed_after(cause: BaseException) -> KafkaConnectionError:
    error = KafkaConnectionError(f"Connection at {ADDRESS} closed")
    error.__context__ = cause
    return error


def test_a_refused_password_names_the_user_the_address_and_the_mechanism() -> None:
    found = classify(SaslAuthenticationFailed("invalid credentials with SASL mechanism "
                                              "SCRAM-SHA-512"), ADDRESS, SCRAM)
    assert isinstance(found, KafkaAuthFailed)
    assert str(found) == ("SASL authentication failed for user 'orders' on 127.0.0.1:9094 "
                          "(SCRAM-SHA-512)")
    assert found.code == "kafka_auth_failed"
    assert not is_retriable(found)
    assert "wrong-secret" not in str(found)


def test_a_mechanism_the_listener_does_not_enable() -> None:
    found = classify(UnsupportedSaslMechanismError("Enabled mechanisms are: ['SCRAM-SHA-512']"),
                     ADDRESS, SCRAM.model_copy(update={"sasl_mechanism": "PLAIN"}))
    assert isinstance(found, KafkaAuthFailed)
    assert "does not enable SASL mechanism PLAIN" in str(found)


def test_an_untrusted_broker_certificate_names_the_ca() -> None:
    error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error.verify_message = "self-signed certificate in certificate chain"
    found = classify(error, ADDRESS, SCRAM)
    assert isinstance(found, KafkaTlsUntrusted)
    assert found.code == "kafka_tls_untrusted"
    assert str(found) == ("the broker certificate at 127.0.0.1:9094 is not trusted: "
                          "self-signed certificate in certificate chain (CA: /ca.pem)")


def test_a_refused_client_certificate() -> None:
    alert = ssl.SSLError(1, "[SSL: SSLV3_ALERT_BAD_CERTIFICATE] sslv3 alert bad certificate")
    alert.reason = "SSLV3_ALERT_BAD_CERTIFICATE"
    found = classify(_closed_after(alert), "127.0.0.1:9095", MTLS)
    assert isinstance(found, KafkaTlsClientRefused)
    assert not is_retriable(found)
    assert "the client certificate /c.pem" in str(found)


def test_a_sasl_client_on_a_listener_without_sasl() -> None:
    found = classify(IllegalSaslStateError(), "127.0.0.1:9092",
                     SCRAM.model_copy(update={"protocol": "SASL_PLAINTEXT", "ssl_cafile": None}))
    assert type(found) is KafkaConnectRefused
    assert not is_retriable(found)
    assert "takes no SASL" in str(found)
    assert "PLAINTEXT" in str(found)


def test_nothing_listening_is_retriable() -> None:
    found = classify(ConnectionRefusedError(111, "Connect call failed"), "127.0.0.1:9", SCRAM)
    assert isinstance(found, KafkaUnreachable)
    assert is_retriable(found)
    assert found.code == "kafka_unreachable"


@pytest.mark.parametrize("error", [
    _closed_after(ConnectionResetError()),  # needs a probe: TLS expected? plaintext?
    KafkaConnectionError("Connection at 127.0.0.1:9094 closed"),
    ConnectionResetError(),
    TimeoutError(),
])
def test_a_closed_or_silent_connection_needs_another_probe(error: BaseException) -> None:
    assert classify(error, ADDRESS, SCRAM) is None


def test_a_mesh_error_from_the_token_provider_is_kept() -> None:
    token_failed = KafkaAuthFailed("cannot sign an MSK IAM token in eu-west-1: no credentials")
    assert classify(token_failed, ADDRESS, SCRAM) is token_failed
    assert isinstance(token_failed, MeshError)


def test_bootstrap_addresses() -> None:
    assert addresses("a:9092, b:9093,[::1]:9094") == [("a", 9092), ("b", 9093), ("::1", 9094)]
    assert addresses("nonsense") == []
