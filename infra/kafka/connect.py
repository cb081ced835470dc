"""How the operator's tools connect to Kafka (``policy plan/apply``, ``topics``, ``tail``,
``dlq``): ``Settings.kafka_security`` (``MESHGATE_KAFKA_*``), its secrets read from the
stack's Secrets Manager (the emulator's, or AWS's), then the same
``bus.transport.connection.aiokafka_kwargs`` the mesh uses.

Locally the default is the broker's PLAINTEXT listener (the operator's door on 127.0.0.1);
set ``MESHGATE_KAFKA_PROTOCOL`` and friends to go through a secure one.
"""

from __future__ import annotations

import logging
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from bus.config import BusSettings
from bus.errors import KafkaConfigError
from bus.transport.connection import KafkaSecurity, aiokafka_kwargs, resolve_kafka_secrets
from infra.settings import Settings


class _BootstrapNoise(logging.Filter):
    """Drops aiokafka's "Unable connect to ..." line: the tools say why in one line of
    their own (``bus.transport.connect_check``), so a person sees one line, not two."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Unable connect to")


_NOISE = _BootstrapNoise()


def quiet_bootstrap_errors() -> None:
    """Install the filter on aiokafka's logger (once; harmless to repeat)."""
    logger = logging.getLogger("aiokafka")
    if _NOISE not in logger.filters:
        logger.addFilter(_NOISE)


class OperatorSecrets:
    """A ``SecretSource`` over the Secrets Manager of ``settings`` (blocking; called off the
    loop by ``resolve_kafka_secrets``)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def get(self, name: str) -> bytes:
        client = boto3.client("secretsmanager", **self._settings.aws_client_args())
        try:
            secret = client.get_secret_value(SecretId=name)
        except (BotoCoreError, ClientError) as exc:
            raise KafkaConfigError(f"cannot read the Kafka secret {name}: {exc}") from None
        if "SecretBinary" in secret:
            return bytes(secret["SecretBinary"])
        return str(secret["SecretString"]).encode()


async def operator_security(settings: Settings | None = None) -> KafkaSecurity:
    """The operator's connection settings with their secrets read."""
    quiet_bootstrap_errors()
    settings = settings or Settings.resolve()
    return await resolve_kafka_secrets(settings.kafka_security, OperatorSecrets(settings))


async def operator_kwargs(bootstrap: str, settings: Settings | None = None
                          ) -> tuple[dict[str, Any], KafkaSecurity]:
    """The aiokafka connection arguments of an operator's client of ``bootstrap``."""
    security = await operator_security(settings)
    return aiokafka_kwargs(bootstrap, security), security


def door_security(settings: Settings | None = None) -> KafkaSecurity:
    """How the test harness's mesh clients connect at the operator's broker address
    (``MESHGATE_KAFKA_*`` as set; locally the PLAINTEXT door)."""
    quiet_bootstrap_errors()
    return (settings or Settings.resolve()).kafka_security


def door_kwargs(bootstrap: str, settings: Settings | None = None) -> dict[str, Any]:
    """The connection arguments of a raw client of the test harness (the attack and chaos
    suites, the benchmarks) at the operator's broker address: ``MESHGATE_KAFKA_*`` as set,
    no secret read (give a password itself, or use ``operator_kwargs``). Locally: the
    PLAINTEXT door."""
    return aiokafka_kwargs(bootstrap, door_security(settings))


async def operator_bus_settings(settings: Settings, service_name: str) -> BusSettings:
    """Mesh-client settings for an operator tool (insecure: it signs nothing of a service's),
    connecting like the operator's tools."""
    return BusSettings.resolve(bootstrap_servers=settings.kafka_bootstrap,
                               service_name=service_name, insecure=True,
                               kafka=await operator_security(settings))
