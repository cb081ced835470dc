"""The stack part of the authorized edge (see ``infra.stack.registry``): the alternative
deployment of ``infra.stack.parts.auth.with_authorizer``, deployed *beside* the default edge so
both are always there to call.

- ``AuthorizedHttpApi``: a second HTTP API whose ``$default`` route has the Lambda
  authorizer (``AuthorizerFunction``: REQUEST, payload 2.0, simple responses) attached.
- ``AuthorizedGatewayFunction``: the same gateway artifact, role and environment as
  ``GatewayFunction``, plus ``MESH_TRUST_AUTHORIZER=1``: it checks no credentials itself and
  takes the principal (and an API key's usage plan) from ``requestContext.authorizer.lambda``.
  Scopes, rate limits, quotas and validation still apply in the gateway.
- Outputs: ``AuthorizedApiId`` (``meshgate status --json`` shows its endpoint as
  ``authorized_endpoint``) and ``AuthorizedGatewayFunctionName``.

Anyone allowed to invoke ``AuthorizedGatewayFunction`` directly can write that context, so
only API Gateway is given the right to (its permission names this API).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from infra.deploy.package import Artifact
from infra.settings import Settings
from infra.stack.function_env import gateway_environment
from infra.stack.functions import AUTHORIZER as AUTHORIZER_SPEC
from infra.stack.functions import GATEWAY
from infra.stack.model import MeshConfig, StackPart
from infra.stack.parts.auth import attach_authorizer, authorizer_resources, trusting_authorizer
from infra.stack.resources import function_resource, proxy_integration

API = "AuthorizedHttpApi"
FUNCTION = "AuthorizedGatewayFunction"
INTEGRATION = "AuthorizedGatewayIntegration"
ROUTE = "AuthorizedDefaultRoute"
STAGE = "AuthorizedDefaultStage"
PERMISSION = "AuthorizedGatewayInvokePermission"
AUTHORIZER = "AuthorizedEdgeAuthorizer"
API_OUTPUT = "AuthorizedApiId"
FUNCTION_OUTPUT = "AuthorizedGatewayFunctionName"


def http_api(settings: Settings) -> dict[str, Any]:
    """The second HTTP API, its ``$default`` route (behind the authorizer), stage,
    integration with ``AuthorizedGatewayFunction`` and the permission to invoke it."""
    route: dict[str, Any] = {
        "Type": "AWS::ApiGatewayV2::Route",
        "Properties": {
            "ApiId": {"Ref": API},
            "RouteKey": "$default",
            "Target": {"Fn::Join": ["/", ["integrations", {"Ref": INTEGRATION}]]},
        },
    }
    attach_authorizer(route, AUTHORIZER)
    return {
        API: {
            "Type": "AWS::ApiGatewayV2::Api",
            "Properties": {"Name": f"{settings.stack_name}-authorized-edge",
                           "ProtocolType": "HTTP"},
        },
        INTEGRATION: proxy_integration(API, FUNCTION),
        ROUTE: route,
        STAGE: {
            "Type": "AWS::ApiGatewayV2::Stage",
            "Properties": {"ApiId": {"Ref": API}, "StageName": "$default", "AutoDeploy": True},
        },
        PERMISSION: {
            "Type": "AWS::Lambda::Permission",
            "Properties": {
                "Action": "lambda:InvokeFunction",
                "FunctionName": {"Ref": FUNCTION},
                "Principal": "apigateway.amazonaws.com",
                "SourceArn": {"Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:"
                              f"${{AWS::AccountId}}:${{{API}}}/*"},
            },
        },
        **authorizer_resources(settings, api=API, logical_id=AUTHORIZER),
    }


def part(artifacts: Mapping[str, Artifact], settings: Settings, mesh: MeshConfig, *,
         other_parts_env: Mapping[str, Any]) -> StackPart:
    """``other_parts_env``: the gateway environment every other part adds (the registry's
    ``other_parts_gateway_env``), so this gateway is configured like ``GatewayFunction``."""
    gateway = artifacts.get(GATEWAY.name)
    if gateway is None or AUTHORIZER_SPEC.name not in artifacts:
        return StackPart()  # a template rendered without the gateway's or authorizer's zip

    env = trusting_authorizer({**gateway_environment(settings, mesh),
                               **other_parts_env})
    return StackPart(
        resources={FUNCTION: function_resource(gateway, settings, env), **http_api(settings)},
        outputs={API_OUTPUT: {"Value": {"Ref": API}},
                 FUNCTION_OUTPUT: {"Value": {"Ref": FUNCTION}}},
    )
