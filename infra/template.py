"""The CloudFormation template of the stack, generated from Python (plain CloudFormation, no
SAM: the emulator runs it the same as AWS)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from infra.deploy.package import Artifact
from infra.otel_env import otel_environment
from infra.settings import Settings
from infra.stack_parts import merge, part_builders
from infra.tables import idempotency_table

Template = dict[str, Any]


def lambda_role(policy_name: str, statements: list[Any]) -> dict[str, Any]:
    """An execution role for functions: logs, plus exactly ``statements``."""
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "AssumeRolePolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [{
                    "Effect": "Allow",
                    "Principal": {"Service": "lambda.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                }],
            },
            "ManagedPolicyArns": [
                "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
            ],
            "Policies": [{
                "PolicyName": policy_name,
                "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
            }],
        },
    }


# API Gateway ends an integration after 29 s.
INTEGRATION_TIMEOUT_MS = 29_000


def proxy_integration(api: str, function: str) -> dict[str, Any]:
    """The HTTP API ``api`` hands requests to ``function`` (payload 2.0, at most 29 s)."""
    return {
        "Type": "AWS::ApiGatewayV2::Integration",
        "Properties": {
            "ApiId": {"Ref": api},
            "IntegrationType": "AWS_PROXY",
            "IntegrationUri": {"Fn::GetAtt": [function, "Arn"]},
            "PayloadFormatVersion": "2.0",
            "TimeoutInMillis": INTEGRATION_TIMEOUT_MS,
        },
    }


def function_resource(artifact: Artifact, settings: Settings, env: Mapping[str, Any],
                      role: str = "FunctionRole") -> dict[str, Any]:
    """A function of the stack; ``role`` is the logical id of its execution role (the
    edge's ``FunctionRole`` unless the function must not share the edge's rights)."""
    spec = artifact.function
    return {
        "Type": "AWS::Lambda::Function",
        "Properties": {
            "Runtime": f"python{settings.lambda_python}",
            "Handler": spec.handler,
            "Role": {"Fn::GetAtt": [role, "Arn"]},
            "Code": {"S3Bucket": settings.artifact_bucket, "S3Key": artifact.key},
            "MemorySize": spec.memory_mb,
            "Timeout": spec.timeout_s,
            "Architectures": ["x86_64"],
            "Environment": {"Variables": dict(sorted(env.items()))},
        },
    }


@dataclass(frozen=True)
class MeshConfig:
    """Public mesh configuration handed to functions: trusted keys and the access map."""

    keyring: dict[str, Any]
    access: dict[str, Any]


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


def stack_template(gateway: Artifact, settings: Settings, mesh: MeshConfig,
                   artifacts: Mapping[str, Artifact] | None = None) -> Template:
    """The whole stack: the gateway behind its HTTP API, plus every feature's part
    (``infra.stack_parts``); ``artifacts`` are the functions' zips by function name."""
    built = {"gateway": gateway, **(artifacts or {})}
    extra = merge([builder(built, settings, mesh) for builder in part_builders()])
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
            }, read_keyring_statement(settings), *extra.role_statements]),
            "GatewayFunction": function_resource(
                gateway, settings, {**gateway_environment(settings, mesh), **extra.gateway_env}),
            **extra.resources,
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
            **extra.outputs,
        },
    }


def render(template: Template) -> str:
    return json.dumps(template, indent=1, sort_keys=True)


def endpoint_url(settings: Settings, api_id: str) -> str:
    """The base URL clients call: the emulator's execute-api path, or AWS's own host."""
    if settings.endpoint_url is not None:
        return f"{settings.endpoint_url.rstrip('/')}/_aws/execute-api/{api_id}"
    return f"https://{api_id}.execute-api.{settings.region}.amazonaws.com"
