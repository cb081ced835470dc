"""How a service's Lambda reaches Kafka, per access mode (``infra.stack.deploy_settings``), as
CloudFormation (pure: dicts out): the event source mapping's source and access configuration,
the role statements for exactly the service's own topics, secret and group, the function's
Kafka client variables (``MESH_KAFKA_*``, read by ``bus.transport.connection``) and its
``VpcConfig`` when the brokers are private.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from infra.local import kafka_env
from infra.settings import Settings
from infra.stack.deploy_settings import FAILURE_QUEUE, NO_DESTINATION, DeploySettings

CLUSTER_ID = "MskServerlessCluster"
CLUSTER_SECURITY_GROUP_ID = "MskClusterSecurityGroup"
VPC_ACCESS_POLICY = "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
# What a Kafka event source mapping's poller does in the VPC, besides the managed policy.
ESM_NETWORK_ACTIONS = ("ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface",
                       "ec2:DescribeNetworkInterfaces", "ec2:DescribeSecurityGroups",
                       "ec2:DescribeSubnets", "ec2:DescribeVpcs")


def consumer_group(service: str, subset: str = "") -> str:
    """The mapping's consumer group: not the worker's (``orders``), so a Lambda and a
    long-lived worker side by side each see every request only if meant to."""
    return f"{service}.{subset}-lambda" if subset else f"{service}-lambda"


def cluster_arn(deploy: DeploySettings) -> Any:
    if deploy.create_cluster:
        return {"Ref": CLUSTER_ID}  # an AWS::MSK::ServerlessCluster's Ref is its ARN
    return deploy.msk_cluster_arn


def secret_arn(name: str) -> dict[str, Any]:
    """A secret by name, as the partial ARN (no random suffix) Lambda and IAM both take."""
    return {"Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:"
                       f"${{AWS::AccountId}}:secret:{name}"}


def _msk_arn(deploy: DeploySettings, kind: str, name: str) -> Any:
    """The ARN of a topic or group of the MSK cluster: ``cluster/N/U`` -> ``kind/N/U/name``."""
    arn = cluster_arn(deploy)
    if isinstance(arn, str):
        prefix, rest = arn.split(":cluster/", 1)
        return f"{prefix}:{kind}/{rest}/{name}"
    parts = {"Fn::Split": [":cluster/", arn]}
    return {"Fn::Join": ["", [{"Fn::Select": [0, parts]}, f":{kind}/",
                              {"Fn::Select": [1, parts]}, f"/{name}"]]}


def source_properties(deploy: DeploySettings, settings: Settings,
                      service: str, group: str) -> dict[str, Any]:
    """Where the mapping reads and how it authenticates, for the access mode."""
    access: list[dict[str, Any]] = []
    if deploy.uses_scram:
        access.append({"Type": "SASL_SCRAM_512_AUTH",
                       "URI": secret_arn(deploy.secret_name(settings.stack_name, service))})
    if deploy.kafka_access != "self-managed":
        props: dict[str, Any] = {"EventSourceArn": cluster_arn(deploy),
                                 "AmazonManagedKafkaEventSourceConfig": {
                                     "ConsumerGroupId": group}}
    else:
        props = {"SelfManagedEventSource": {"Endpoints": {
                     "KafkaBootstrapServers": settings.kafka_bootstrap.split(",")}},
                 "SelfManagedKafkaEventSourceConfig": {"ConsumerGroupId": group}}
        access += [{"Type": "VPC_SUBNET", "URI": f"subnet:{subnet}"}
                   for subnet in deploy.subnet_ids]
        access += [{"Type": "VPC_SECURITY_GROUP", "URI": f"security_group:{group_id}"}
                   for group_id in deploy.security_group_ids]
        if deploy.root_ca_secret_arn is not None:
            access.append({"Type": "SERVER_ROOT_CA_CERTIFICATE",
                           "URI": deploy.root_ca_secret_arn})
    if access:
        props["SourceAccessConfigurations"] = access
    return props


def failure_destination(deploy: DeploySettings, queue_id: str) -> Any | None:
    """The on-failure destination: the stack's queue ``queue_id``, a given ARN or Kafka
    topic, or none."""
    if deploy.on_failure == NO_DESTINATION:
        return None
    if deploy.on_failure == FAILURE_QUEUE:
        return {"Fn::GetAtt": [queue_id, "Arn"]}
    return deploy.on_failure


def event_source_mapping(deploy: DeploySettings, settings: Settings, *, function_id: str,
                         service: str, topic: str, group: str,
                         queue_id: str) -> dict[str, Any]:
    """The ``AWS::Lambda::EventSourceMapping`` of one topic (Kafka mappings take one).
    Partial batch responses and the failure destination need provisioned pollers."""
    props: dict[str, Any] = {
        "FunctionName": {"Ref": function_id},
        "Topics": [topic],
        "StartingPosition": deploy.starting_position,
        "BatchSize": deploy.batch_size,
        "MaximumBatchingWindowInSeconds": deploy.batching_window_s,
        "ProvisionedPollerConfig": {"MinimumPollers": deploy.min_pollers,
                                    "MaximumPollers": deploy.max_pollers},
        **source_properties(deploy, settings, service, group),
    }
    if deploy.partial_batch_responses:
        props["FunctionResponseTypes"] = ["ReportBatchItemFailures"]
    destination = failure_destination(deploy, queue_id)
    if destination is not None:
        props["DestinationConfig"] = {"OnFailure": {"Destination": destination}}
    return {"Type": "AWS::Lambda::EventSourceMapping", "Properties": props}


def client_environment(deploy: DeploySettings, settings: Settings,
                       service: str) -> dict[str, str]:
    """The function's own Kafka client (replies, quarantine, nested calls): ``MESH_KAFKA_*``
    of ``bus.transport.connection.KafkaSecurity``. Self-managed without SCRAM: on the emulator
    with the local broker, its SASL_SSL listener as the service's own user
    (``infra.local.kafka_env``); elsewhere empty (PLAINTEXT, as before)."""
    if deploy.kafka_access == "msk-iam":
        return {"MESH_KAFKA_PROTOCOL": "SASL_SSL", "MESH_KAFKA_SASL_MECHANISM": "OAUTHBEARER",
                "MESH_KAFKA_OAUTH_PROVIDER": "msk-iam", "MESH_KAFKA_AWS_REGION": settings.region}
    if deploy.uses_scram:
        return {"MESH_KAFKA_PROTOCOL": "SASL_SSL", "MESH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                "MESH_KAFKA_SASL_USERNAME": service,
                "MESH_KAFKA_SASL_PASSWORD_SECRET": deploy.secret_name(settings.stack_name,
                                                                      service)}
    # on the emulator with the local broker: its SASL_SSL listener as the service's own user
    return kafka_env.lambda_environment(settings, service)


def role_statements(deploy: DeploySettings, settings: Settings, service: str, *,
                    consume: Sequence[str], produce: Sequence[str],
                    groups: Sequence[str]) -> list[dict[str, Any]]:
    """What the service's role needs to reach Kafka, for its own topics and groups only."""
    statements: list[dict[str, Any]] = []
    if not deploy.uses_scram and deploy.kafka_access == "self-managed":
        statements += kafka_env.read_secret_statement(settings, service)  # the local broker
    if deploy.uses_scram:
        name = deploy.secret_name(settings.stack_name, service)
        statements.append({"Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
                           "Resource": {"Fn::Sub": "arn:${AWS::Partition}:secretsmanager:"
                                        "${AWS::Region}:${AWS::AccountId}:secret:"
                                        f"{name}-*"}})
    if deploy.kafka_access == "msk-scram":
        # MSK's SCRAM secrets are encrypted with a customer managed key: decrypt through
        # Secrets Manager only
        statements.append({"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*",
                           "Condition": {"StringEquals": {"kms:ViaService": {
                               "Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"}}}})
    if deploy.root_ca_secret_arn is not None and deploy.kafka_access == "self-managed":
        statements.append({"Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
                           "Resource": deploy.root_ca_secret_arn})
    if deploy.kafka_access == "msk-iam":
        arn = cluster_arn(deploy)
        statements.append({"Effect": "Allow", "Resource": arn,
                           "Action": ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster",
                                      "kafka-cluster:DescribeClusterDynamicConfiguration",
                                      "kafka-cluster:WriteDataIdempotently"]})
        for actions, kind, names in (
                (["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"], "topic", consume),
                (["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"], "topic", produce),
                (["kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"], "group", groups)):
            if names:  # IAM refuses an empty resource list
                statements.append({"Effect": "Allow", "Action": actions, "Resource": [
                    _msk_arn(deploy, kind, name) for name in dict.fromkeys(names)]})
    if deploy.kafka_access != "self-managed":
        statements.append({"Effect": "Allow", "Resource": cluster_arn(deploy),
                           "Action": ["kafka:DescribeClusterV2", "kafka:GetBootstrapBrokers"]})
    if deploy.kafka_access != "self-managed" or deploy.private:
        statements.append({"Effect": "Allow", "Action": list(ESM_NETWORK_ACTIONS),
                           "Resource": "*"})
    return statements


def security_group_ids(deploy: DeploySettings) -> list[Any]:
    ids: list[Any] = list(deploy.security_group_ids)
    if deploy.create_cluster:
        ids.append({"Fn::GetAtt": [CLUSTER_SECURITY_GROUP_ID, "GroupId"]})
    return ids


def vpc_config(deploy: DeploySettings) -> dict[str, Any] | None:
    """The ``VpcConfig`` of every function that talks to Kafka, or None (public brokers)."""
    if not deploy.private:
        return None
    return {"SubnetIds": list(deploy.subnet_ids), "SecurityGroupIds": security_group_ids(deploy)}
