"""The stack part of the events feature (see ``infra.stack.registry``): the ``orders`` service as
a Lambda fed by a Kafka event source mapping.

The function gets the environment a local ``orders`` worker gets (broker, identity, the
idempotency table), with the public keyring and access map inline as the gateway gets them.
The ``AWS::Lambda::EventSourceMapping`` (self-managed Kafka on ``orders.requests``) is
only rendered for real AWS: the emulator has no Kafka event source mapping, so locally the
function is invoked directly with Kafka events built from real records.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bus.topics import request_topic
from infra.deploy.package import Artifact
from infra.settings import Settings
from infra.stack.function_env import keyring_environment, read_keyring_statement
from infra.stack.functions import ORDERS_EVENTS
from infra.stack.model import MeshConfig, StackPart
from infra.stack.otel_env import otel_environment
from infra.stack.resources import function_resource, lambda_role
from infra.stack.tables import idempotency_access

SERVICE = "orders"
FUNCTION_ID = "OrdersEventsFunction"
ROLE_ID = "OrdersEventsRole"
MAPPING_ID = "OrdersEventsMapping"
BATCH_SIZE = 100
BATCHING_WINDOW_S = 0  # requests wait on the answer: never hold a batch back


def events_environment(settings: Settings, mesh: MeshConfig) -> dict[str, Any]:
    return {
        "MESH_BOOTSTRAP_SERVERS": settings.kafka_bootstrap,
        "MESH_SERVICE_NAME": SERVICE,
        "MESH_SIGNING_KEY_SECRET": f"{settings.stack_name}/{SERVICE}/signing-key",
        "MESH_KEYRING_JSON": json.dumps(mesh.keyring, separators=(",", ":"), sort_keys=True),
        **keyring_environment(settings),
        "MESH_ACCESS_JSON": json.dumps(mesh.access, separators=(",", ":"), sort_keys=True),
        "MESH_IDEMPOTENCY_TABLE": {"Ref": "IdempotencyTable"},
        **otel_environment(settings, SERVICE),  # traces to the local collector, or as asked
    }


def event_source_mapping(settings: Settings) -> dict[str, Any]:
    """Self-managed Kafka -> the function, with partial batch responses (Kafka mappings
    accept ReportBatchItemFailures in provisioned mode). Broker authentication and VPC
    access (SourceAccessConfigurations) depend on the cluster and are not rendered."""
    return {
        "Type": "AWS::Lambda::EventSourceMapping",
        "Properties": {
            "FunctionName": {"Ref": FUNCTION_ID},
            "SelfManagedEventSource": {"Endpoints": {
                "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap.split(","),
            }},
            "SelfManagedKafkaEventSourceConfig": {"ConsumerGroupId": f"{SERVICE}-lambda"},
            "Topics": [request_topic(SERVICE)],
            "StartingPosition": "LATEST",
            "BatchSize": BATCH_SIZE,
            "MaximumBatchingWindowInSeconds": BATCHING_WINDOW_S,
            "ProvisionedPollerConfig": {"MinimumPollers": 1, "MaximumPollers": 2},
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
        },
    }


def part(artifacts: Mapping[str, Artifact], settings: Settings, mesh: MeshConfig) -> StackPart:
    artifact = artifacts.get(ORDERS_EVENTS.name)
    if artifact is None:  # a template rendered without this function's zip
        return StackPart()

    # Its own role: it holds the orders service's key, which the edge must never read.
    role = lambda_role("orders-events", [
        {
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": {"Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:"
                         "${AWS::AccountId}:secret:"
                         f"{settings.stack_name}/{SERVICE}/signing-key-*"},
        },
        idempotency_access("IdempotencyTable"),
        read_keyring_statement(settings),
    ])
    resources: dict[str, Any] = {
        ROLE_ID: role,
        FUNCTION_ID: function_resource(artifact, settings, events_environment(settings, mesh),
                                       role=ROLE_ID),
    }
    if settings.endpoint_url is None:
        resources[MAPPING_ID] = event_source_mapping(settings)
    return StackPart(
        resources=resources,
        outputs={"OrdersEventsFunctionName": {"Value": {"Ref": FUNCTION_ID}}},
    )
