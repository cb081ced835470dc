"""The stack part of the end-to-end benchmark (see ``infra.stack.registry``): an echo Lambda
(``functions.bench_echo``, no dependencies) routed in the *same* HTTP API as the gateway,
``ANY /bench/echo``, so ``bench.e2e_echo`` compares ``POST /v1/orders`` (gateway, Kafka,
orders worker) with a call that crosses the same API Gateway and Lambda runtime and does
nothing else. A specific route key beats ``$default`` (on AWS and in the emulator), so the
gateway's routes are unchanged.

The function gets its own role with logs only: it reads no secret and no table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from infra.deploy.package import Artifact
from infra.settings import Settings
from infra.stack.functions import BENCH_ECHO
from infra.stack.model import MeshConfig, StackPart
from infra.stack.resources import function_resource, lambda_role, proxy_integration

ROUTE_PATH = "/bench/echo"
FUNCTION = "BenchEchoFunction"
ROLE = "BenchEchoRole"
INTEGRATION = "BenchEchoIntegration"
ROUTE = "BenchEchoRoute"
PERMISSION = "BenchEchoInvokePermission"
OUTPUT = "BenchEchoFunctionName"
API = "HttpApi"  # the gateway's API (infra.stack.template.stack_template)
LOGS_ONLY = {
    "Effect": "Allow",
    "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
    "Resource": {"Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:"
                 "log-group:/aws/lambda/*"},
}


def api_resources() -> dict[str, Any]:
    """Integration, route and invoke permission of the echo function in the gateway's API."""
    return {
        INTEGRATION: proxy_integration(API, FUNCTION),
        ROUTE: {
            "Type": "AWS::ApiGatewayV2::Route",
            "Properties": {
                "ApiId": {"Ref": API},
                "RouteKey": f"ANY {ROUTE_PATH}",
                "Target": {"Fn::Join": ["/", ["integrations", {"Ref": INTEGRATION}]]},
            },
        },
        PERMISSION: {
            "Type": "AWS::Lambda::Permission",
            "Properties": {
                "Action": "lambda:InvokeFunction",
                "FunctionName": {"Ref": FUNCTION},
                "Principal": "apigateway.amazonaws.com",
            },
        },
    }


def part(artifacts: Mapping[str, Artifact], settings: Settings, mesh: MeshConfig) -> StackPart:
    artifact = artifacts.get(BENCH_ECHO.name)
    if artifact is None:  # a template rendered without this function's zip
        return StackPart()

    resources: dict[str, Any] = {
        ROLE: lambda_role("bench-echo", [LOGS_ONLY]),
        FUNCTION: function_resource(artifact, settings, {}, role=ROLE),
        **api_resources(),
    }
    return StackPart(resources=resources, outputs={OUTPUT: {"Value": {"Ref": FUNCTION}}})
