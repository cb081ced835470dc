"""CloudFormation building blocks the template and its parts share (pure: dicts out):
an execution role, a Lambda function, an HTTP API's proxy integration."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from infra.deploy.package import Artifact
from infra.settings import Settings


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
