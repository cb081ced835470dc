"""The stack part of the services on Lambda (see ``infra.stack.registry``): every service of the
policy that serves operations and has handlers (``functions/<name>/service.py``, as
``meshgate new service`` writes) runs as a Kafka-triggered Lambda, generated from the policy.

Per service (``Orders`` for ``orders``; a subset adds its name, ``OrdersCanary``):

- ``<Name>EventsFunction``: the one generic handler (``functions.kafka_service.handler``)
  told its service (``MESH_SERVICE_NAME``, ``MESH_SERVICE_SUBSET``), with the environment a
  local worker gets (broker, identity, the idempotency table) and its Kafka client settings
  for the access mode (``infra.stack.kafka_access.client_environment``).
- ``<Name>EventsRole``: its own role: its own signing key, its own SCRAM secret, its own topics
  and consumer group on MSK, the idempotency table, the live keyring: never another service's
  key (and the edge's role never this one's).
- ``<Name>EventsMapping``: an ``AWS::Lambda::EventSourceMapping`` on the request topic
  (one topic per Kafka mapping), from the deploy settings: batch size, batching window,
  starting position, partial batch responses, the failure destination and the access mode.
  The emulator accepts these mappings in a stack and never polls Kafka (they are inert
  there; the functions are invoked directly with Kafka events in the tests).
- ``<Name>FailedBatchesQueue``: the on-failure destination (``on_failure=queue``): records
  the mapping gave up on (the mesh's own poison records are quarantined, never here).

A service's event subscriptions (``Service.on_event``) stay with its long-lived worker: the
Lambda runner (``bus.runtime.eventsource``) serves request topics only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bus.policy.model import Policy
from bus.security.quarantine import QUARANTINE_TOPIC
from bus.topics import request_topic
from infra.deploy.package import Artifact
from infra.policy import load_policy
from infra.settings import Settings
from infra.stack import kafka_access
from infra.stack.deploy_settings import FAILURE_QUEUE, DeploySettings
from infra.stack.function_env import read_keyring_statement, service_environment
from infra.stack.functions import SERVICE_EVENTS
from infra.stack.model import MeshConfig, StackPart
from infra.stack.resources import function_resource, lambda_role
from infra.stack.tables import idempotency_access

SUBSET_ENV = "MESH_SERVICE_SUBSET"


def logical_name(service: str, subset: str = "") -> str:
    """``orders`` -> ``Orders``, ``catalog-v2``/``canary`` -> ``CatalogV2Canary``."""
    words = f"{service}-{subset}".replace("_", "-").split("-")
    return "".join(word[:1].upper() + word[1:] for word in words if word)


def function_id(service: str, subset: str = "") -> str:
    return f"{logical_name(service, subset)}EventsFunction"


def role_id(service: str) -> str:
    return f"{logical_name(service)}EventsRole"


def mapping_id(service: str, subset: str = "") -> str:
    return f"{logical_name(service, subset)}EventsMapping"


def queue_id(service: str) -> str:
    return f"{logical_name(service)}FailedBatchesQueue"


def output_id(service: str, subset: str = "") -> str:
    return f"{function_id(service, subset)}Name"


def lambda_services(policy: Policy, settings: Settings) -> list[str]:
    """The services that run on Lambda: they serve operations and have handlers."""
    return sorted(name for name, spec in policy.services.items()
                  if spec.operations
                  and (settings.root / "functions" / name / "service.py").is_file())


def function_environment(settings: Settings, mesh: MeshConfig, deploy: DeploySettings,
                         service: str, subset: str = "") -> dict[str, Any]:
    """``infra.stack.function_env.service_environment``, its subset, and its Kafka client
    for the access mode (on AWS)."""
    return {**service_environment(settings, mesh, service),
            **({SUBSET_ENV: subset} if subset else {}),
            **kafka_access.client_environment(deploy, settings, service)}


def service_role(settings: Settings, mesh: MeshConfig, deploy: DeploySettings,
                 service: str, subsets: tuple[str, ...]) -> dict[str, Any]:
    consume = mesh.access.get("consume", {}).get(service, [])
    produce = [*mesh.access.get("produce", {}).get(service, []), QUARANTINE_TOPIC]
    statements: list[Any] = [
        {
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": {"Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:"
                         "${AWS::AccountId}:secret:"
                         f"{settings.stack_name}/{service}/signing-key-*"},
        },
        idempotency_access("IdempotencyTable"),
        read_keyring_statement(settings),
        *kafka_access.role_statements(
            deploy, settings, service, consume=consume, produce=produce,
            groups=[kafka_access.consumer_group(service, subset) for subset in subsets]),
    ]
    if deploy.on_failure == FAILURE_QUEUE:  # the mapping sends with the function's role
        statements.append({"Effect": "Allow", "Action": "sqs:SendMessage",
                           "Resource": {"Fn::GetAtt": [queue_id(service), "Arn"]}})
    return lambda_role(f"{service}-events", statements)


def service_resources(artifact: Artifact, settings: Settings, mesh: MeshConfig,
                      deploy: DeploySettings, service: str,
                      subsets: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    resources: dict[str, Any] = {role_id(service): service_role(settings, mesh, deploy,
                                                                service, subsets)}
    outputs: dict[str, Any] = {}
    if deploy.on_failure == FAILURE_QUEUE:
        resources[queue_id(service)] = {
            "Type": "AWS::SQS::Queue",
            "Properties": {"MessageRetentionPeriod": 1_209_600,  # 14 days, the maximum
                           "SqsManagedSseEnabled": True},
        }
    for subset in subsets:
        function = function_id(service, subset)
        resources[function] = function_resource(
            artifact, settings, function_environment(settings, mesh, deploy, service, subset),
            role=role_id(service))
        resources[mapping_id(service, subset)] = kafka_access.event_source_mapping(
            deploy, settings, function_id=function, service=service,
            topic=request_topic(service, subset),
            group=kafka_access.consumer_group(service, subset), queue_id=queue_id(service))
        outputs[output_id(service, subset)] = {"Value": {"Ref": function}}
    return resources, outputs


def part(artifacts: Mapping[str, Artifact], settings: Settings, mesh: MeshConfig, *,
         deploy: DeploySettings) -> StackPart:
    artifact = artifacts.get(SERVICE_EVENTS.name)
    if artifact is None:  # a template rendered without the functions' zip
        return StackPart()
    policy = load_policy(settings.root / "policies")
    resources: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    for service in lambda_services(policy, settings):
        subsets = policy.services[service].subsets
        more, more_outputs = service_resources(artifact, settings, mesh, deploy, service,
                                               subsets)
        resources.update(more)
        outputs.update(more_outputs)
    return StackPart(resources=resources, outputs=outputs)
