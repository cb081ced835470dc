"""How a local process (or a Lambda on the emulator) connects to the local broker:
the SASL_SSL listener as its own SCRAM-SHA-512 user, its password in Secrets Manager as
``/<stack>/kafka/scram/<principal>``, trusting only the local CA (``localstack/kafka/tls.py``)
- the ``MESH_BOOTSTRAP_SERVERS`` and ``MESH_KAFKA_*`` that ``bus.transport.connection`` reads.
``MESHGATE_LOCAL_MESH_PROTOCOL=PLAINTEXT`` keeps the old plaintext mesh."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from infra.settings import Settings

MECHANISM = "SCRAM-SHA-512"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def scram_secret_name(stack: str, principal: str) -> str:
    return f"/{stack}/kafka/scram/{principal}"


def ca_file(settings: Settings) -> Path:
    """The local CA's certificate, what every local client trusts."""
    return settings.local_dir / "kafka" / "tls" / "ca.pem"


def secure(settings: Settings) -> bool:
    return settings.local_mesh_protocol == "SASL_SSL"


def client_environment(settings: Settings, principal: str, *,
                       ca_pem: str | None = None) -> dict[str, str]:
    """``MESH_BOOTSTRAP_SERVERS`` and ``MESH_KAFKA_*`` of a local process (or a Lambda on the
    emulator) connecting as ``principal``; the CA as PEM text when given, else as the file."""
    if not secure(settings):
        return {"MESH_BOOTSTRAP_SERVERS": settings.kafka_bootstrap}
    env = {
        "MESH_BOOTSTRAP_SERVERS": settings.secure_bootstrap,
        "MESH_KAFKA_PROTOCOL": "SASL_SSL",
        "MESH_KAFKA_SASL_MECHANISM": MECHANISM,
        "MESH_KAFKA_SASL_USERNAME": principal,
        "MESH_KAFKA_SASL_PASSWORD_SECRET": scram_secret_name(settings.stack_name, principal),
    }
    if ca_pem is not None:
        env["MESH_KAFKA_SSL_CA_PEM"] = ca_pem
    else:
        env["MESH_KAFKA_SSL_CAFILE"] = str(ca_file(settings))
    return env


def local_broker(settings: Settings) -> bool:
    """The stack runs on the emulator against this machine's broker (``kafka.sh``): its
    SASL_SSL listener, CA and SCRAM users are ours to use."""
    host = settings.kafka_bootstrap.split(",")[0].rsplit(":", 1)[0]
    return settings.is_local and host in LOOPBACK_HOSTS


def lambda_environment(settings: Settings, principal: str) -> dict[str, str]:
    """A function's Kafka client on the emulator with the local broker: its SASL_SSL listener
    as ``principal``, the CA inlined (``MESH_KAFKA_SSL_CA_PEM``, as a Lambda on AWS gets it;
    the file while the broker has not made it yet). Empty otherwise (AWS, another broker, or
    a PLAINTEXT local mesh): the deploy settings say how to connect there."""
    if not (local_broker(settings) and secure(settings)):
        return {}
    try:
        ca_pem: str | None = ca_file(settings).read_text()
    except FileNotFoundError:
        ca_pem = None
    return client_environment(settings, principal, ca_pem=ca_pem)


def read_secret_statement(settings: Settings, principal: str) -> list[dict[str, Any]]:
    """What a function's role needs for ``lambda_environment``: reading its own password."""
    if not (local_broker(settings) and secure(settings)):
        return []
    name = scram_secret_name(settings.stack_name, principal)
    return [{"Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
             "Resource": {"Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:"
                                     f"${{AWS::AccountId}}:secret:{name}-*"}}]
