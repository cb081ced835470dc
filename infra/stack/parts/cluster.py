"""The stack part of the optional MSK Serverless cluster (``DeploySettings.create_cluster``):
the cluster (IAM access control only, as MSK Serverless has), its security group, and the
rule that lets the group's members (the cluster and every function in it) reach port 9098.

Rendered for AWS only: the emulator refuses ``AWS::MSK::ServerlessCluster`` ("Unrecognized
resource types"). Its bootstrap servers are no attribute of the resource: ``meshgate deploy``
reads them with ``kafka:GetBootstrapBrokers`` after the stack is up (``ClusterArn`` output),
and topics are then provisioned by ``meshgate policy apply`` against them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from infra.deploy.package import Artifact
from infra.settings import Settings
from infra.stack.deploy_settings import DeploySettings
from infra.stack.kafka_access import CLUSTER_ID, CLUSTER_SECURITY_GROUP_ID
from infra.stack.model import MeshConfig, StackPart

INGRESS_ID = "MskClusterSelfIngress"
OUTPUT = "ClusterArn"
IAM_PORT = 9098  # MSK's SASL/IAM listener


def cluster_resources(settings: Settings, deploy: DeploySettings) -> dict[str, Any]:
    return {
        CLUSTER_SECURITY_GROUP_ID: {
            "Type": "AWS::EC2::SecurityGroup",
            "Properties": {
                "GroupDescription": f"{settings.stack_name}: MSK Serverless and its clients",
                "VpcId": deploy.vpc_id,
            },
        },
        INGRESS_ID: {
            "Type": "AWS::EC2::SecurityGroupIngress",
            "Properties": {
                "GroupId": {"Fn::GetAtt": [CLUSTER_SECURITY_GROUP_ID, "GroupId"]},
                "SourceSecurityGroupId": {"Fn::GetAtt": [CLUSTER_SECURITY_GROUP_ID, "GroupId"]},
                "IpProtocol": "tcp", "FromPort": IAM_PORT, "ToPort": IAM_PORT,
                "Description": "Kafka over SASL/IAM from the group's members",
            },
        },
        CLUSTER_ID: {
            "Type": "AWS::MSK::ServerlessCluster",
            "Properties": {
                "ClusterName": f"{settings.stack_name}-mesh"[:64],
                "ClientAuthentication": {"Sasl": {"Iam": {"Enabled": True}}},
                "VpcConfigs": [{
                    "SubnetIds": list(deploy.subnet_ids),
                    "SecurityGroups": [{"Fn::GetAtt": [CLUSTER_SECURITY_GROUP_ID, "GroupId"]}],
                }],
            },
        },
    }


def part(artifacts: Mapping[str, Artifact], settings: Settings, mesh: MeshConfig, *,
         deploy: DeploySettings) -> StackPart:
    if not deploy.create_cluster:
        return StackPart()
    return StackPart(resources=cluster_resources(settings, deploy),
                     outputs={OUTPUT: {"Value": {"Ref": CLUSTER_ID}}})
