"""What the stack's functions are told: the gateway's environment, and the SSM parameters
every function reloads its keyring and traffic rules from."""

from __future__ import annotations

import json
from typing import Any

from infra.settings import Settings
from infra.stack.model import MeshConfig
from infra.stack.otel_env import otel_environment


def gateway_environment(settings: Settings, mesh: MeshConfig) -> dict[str, str]:
    return {
        "MESH_BOOTSTRAP_SERVERS": settings.kafka_bootstrap,
        "MESH_SERVICE_NAME": "gateway",
        "MESH_REQUEST_TIMEOUT_S": str(settings.request_timeout_s),
        "MESH_SIGNING_KEY_SECRET": f"{settings.stack_name}/gateway/signing-key",
        "MESH_KEYRING_JSON": json.dumps(mesh.keyring, separators=(",", ":"), sort_keys=True),
        "MESH_ACCESS_JSON": json.dumps(mesh.access, separators=(",", ":"), sort_keys=True),
        **keyring_environment(settings),
        "MESH_TRAFFIC_PARAMETER": traffic_parameter(settings),
        "MESH_TRAFFIC_RELOAD_S": "30" if settings.endpoint_url is None else "2",
        **otel_environment(settings, "gateway"),  # traces to the local collector
    }


def service_environment(settings: Settings, mesh: MeshConfig, service: str) -> dict[str, Any]:
    """A service's Kafka-triggered function (``infra.stack.parts.services``): what a local
    worker of ``service`` gets (broker, identity, the idempotency table), with the public
    keyring and access map inline as the gateway gets them."""
    return {
        "MESH_BOOTSTRAP_SERVERS": settings.kafka_bootstrap,
        "MESH_SERVICE_NAME": service,
        "MESH_SIGNING_KEY_SECRET": f"{settings.stack_name}/{service}/signing-key",
        "MESH_KEYRING_JSON": json.dumps(mesh.keyring, separators=(",", ":"), sort_keys=True),
        **keyring_environment(settings),
        "MESH_ACCESS_JSON": json.dumps(mesh.access, separators=(",", ":"), sort_keys=True),
        "MESH_IDEMPOTENCY_TABLE": {"Ref": "IdempotencyTable"},
        **otel_environment(settings, service),  # traces to the local collector, or as asked
    }


def keyring_parameter(settings: Settings) -> str:
    """The SSM parameter holding the live keyring (``meshgate keys rotate`` updates it)."""
    return f"/{settings.stack_name}/keyring"


def keyring_reload_s(settings: Settings) -> float:
    """How often a process re-reads its keys: a rotation waits at least this long per step."""
    return 30.0 if settings.endpoint_url is None else 2.0


def keyring_environment(settings: Settings) -> dict[str, str]:
    """Where a function reloads its keys from (``functions.shared.key_reload``)."""
    return {"MESH_KEYRING_PARAMETER": keyring_parameter(settings),
            "MESH_KEYRING_RELOAD_S": f"{keyring_reload_s(settings):g}"}


def read_keyring_statement(settings: Settings) -> dict[str, Any]:
    return {
        "Effect": "Allow",
        "Action": "ssm:GetParameter",
        "Resource": {"Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:"
                     f"parameter{keyring_parameter(settings)}"},
    }


def traffic_parameter(settings: Settings) -> str:
    """The SSM parameter holding the policies' traffic rules (JSON by operation)."""
    return f"/{settings.stack_name}/traffic"
