"""The CloudFormation template of the stack, generated from Python (plain CloudFormation, no
SAM: the emulator runs it the same as AWS): the gateway behind its HTTP API, plus every
feature's part from ``infra.stack.registry``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bus.security.quarantine import QUARANTINE_TOPIC
from infra.deploy.package import Artifact
from infra.settings import Settings
from infra.stack.deploy_settings import DeploySettings
from infra.stack.function_env import gateway_environment, read_keyring_statement, traffic_parameter
from infra.stack.kafka_access import client_environment, role_statements
from infra.stack.model import MeshConfig, merge
from infra.stack.parts import bench_echo
from infra.stack.registry import part_builders
from infra.stack.resources import function_resource, lambda_role, proxy_integration
from infra.stack.tables import idempotency_table
from infra.stack.vpc import join_vpc

Template = dict[str, Any]
EDGE = "gateway"  # the edge's service name: its key, its access


def stack_template(gateway: Artifact, settings: Settings, mesh: MeshConfig,
                   artifacts: Mapping[str, Artifact] | None = None,
                   deploy: DeploySettings | None = None) -> Template:
    """The whole stack: the gateway behind its HTTP API, plus every feature's part
    (``infra.stack.registry``); ``artifacts`` are the functions' zips by function name;
    ``deploy``: the AWS side (access mode, network, mappings; default from the environment).
    When the brokers are private every function but the bench's echo joins their VPC."""
    deploy = deploy or DeploySettings.resolve()
    built = {"gateway": gateway, **(artifacts or {})}
    extra = merge([builder(built, settings, mesh) for builder in part_builders(deploy)])
    # the edge's role (gateway, authorizer): its own Kafka identity, topics, no group
    kafka = role_statements(
        deploy, settings, EDGE, consume=mesh.access.get("consume", {}).get(EDGE, []),
        produce=[*mesh.access.get("produce", {}).get(EDGE, []), QUARANTINE_TOPIC], groups=[])
    template = _template(gateway, settings, mesh, [*extra.role_statements, *kafka],
                         {**extra.gateway_env,
                          **client_environment(deploy, settings, EDGE)},
                         extra.resources, extra.outputs)
    join_vpc(template["Resources"], deploy, outside={bench_echo.FUNCTION})
    return template


def _template(gateway: Artifact, settings: Settings, mesh: MeshConfig,
              role_statements: Any, gateway_env: Mapping[str, Any],
              resources: Mapping[str, Any], outputs: Mapping[str, Any]) -> Template:
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "meshgate: edge gateway on Lambda behind an HTTP API",
        "Resources": {
            "FunctionRole": lambda_role("read-own-signing-key", [{
                "Effect": "Allow",
                "Action": "secretsmanager:GetSecretValue",
                "Resource": {"Fn::Sub": "arn:${AWS::Partition}:secretsmanager:"
                             "${AWS::Region}:${AWS::AccountId}:secret:"
                             f"{settings.stack_name}/gateway/signing-key-*"},
            }, {
                "Effect": "Allow",
                "Action": "ssm:GetParameter",
                "Resource": {"Fn::Sub": "arn:${AWS::Partition}:ssm:"
                             "${AWS::Region}:${AWS::AccountId}:parameter"
                             f"{traffic_parameter(settings)}"},
            }, read_keyring_statement(settings), *role_statements]),
            "GatewayFunction": function_resource(
                gateway, settings, {**gateway_environment(settings, mesh), **gateway_env}),
            **resources,
            "IdempotencyTable": idempotency_table(f"{settings.stack_name}-idempotency"),
            "HttpApi": {
                "Type": "AWS::ApiGatewayV2::Api",
                "Properties": {"Name": f"{settings.stack_name}-edge", "ProtocolType": "HTTP"},
            },
            "GatewayIntegration": proxy_integration("HttpApi", "GatewayFunction"),
            "DefaultRoute": {
                "Type": "AWS::ApiGatewayV2::Route",
                "Properties": {
                    "ApiId": {"Ref": "HttpApi"},
                    "RouteKey": "$default",
                    "Target": {"Fn::Join": ["/", ["integrations", {"Ref": "GatewayIntegration"}]]},
                },
            },
            "DefaultStage": {
                "Type": "AWS::ApiGatewayV2::Stage",
                "Properties": {"ApiId": {"Ref": "HttpApi"}, "StageName": "$default",
                               "AutoDeploy": True},
            },
            "GatewayInvokePermission": {
                "Type": "AWS::Lambda::Permission",
                "Properties": {
                    "Action": "lambda:InvokeFunction",
                    "FunctionName": {"Ref": "GatewayFunction"},
                    "Principal": "apigateway.amazonaws.com",
                },
            },
        },
        "Outputs": {
            "ApiId": {"Value": {"Ref": "HttpApi"}},
            "GatewayFunctionName": {"Value": {"Ref": "GatewayFunction"}},
            "IdempotencyTableName": {"Value": {"Ref": "IdempotencyTable"}},
            **outputs,
        },
    }


def render(template: Template) -> str:
    return json.dumps(template, indent=1, sort_keys=True)


def endpoint_url(settings: Settings, api_id: str) -> str:
    """The base URL clients call: the emulator's execute-api path, or AWS's own host."""
    if settings.endpoint_url is not None:
        return f"{settings.endpoint_url.rstrip('/')}/_aws/execute-api/{api_id}"
    return f"https://{api_id}.execute-api.{settings.region}.amazonaws.com"
