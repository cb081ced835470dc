"""Functions join the brokers' VPC (pure: the template's resources changed in place).

When the brokers are private (``DeploySettings.private``), every function that talks to Kafka
gets the ``VpcConfig`` of ``infra.stack.kafka_access.vpc_config``, and its role the managed
policy that lets Lambda create its network interfaces. The gateway and the authorizer join
too (the authorizer reads DynamoDB and Secrets Manager, and the JWKS URL: in a VPC they need
VPC endpoints or a NAT gateway, which this stack does not create).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from infra.stack.deploy_settings import DeploySettings
from infra.stack.kafka_access import VPC_ACCESS_POLICY, vpc_config

FUNCTION_TYPE = "AWS::Lambda::Function"


def join_vpc(resources: dict[str, Any], deploy: DeploySettings,
             outside: Collection[str] = ()) -> None:
    """Put every function of ``resources`` but ``outside`` (logical ids) in the VPC."""
    config = vpc_config(deploy)
    if config is None:
        return
    for logical_id, resource in resources.items():
        if resource.get("Type") != FUNCTION_TYPE or logical_id in outside:
            continue
        properties = resource["Properties"]
        properties["VpcConfig"] = config
        role = properties.get("Role", {}).get("Fn::GetAtt", [None])[0]
        if role in resources:
            arns = resources[role]["Properties"].setdefault("ManagedPolicyArns", [])
            if VPC_ACCESS_POLICY not in arns:
                arns.append(VPC_ACCESS_POLICY)
