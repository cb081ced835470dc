"""The stack part of the authorized edge (see ``infra.stack_parts``): the alternative
deployment of ``infra.part_auth.with_authorizer``, deployed *beside* the default edge so
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
from typing import TYPE_CHECKING, Any

from infra.deploy.package import Artifact
from infra.functions import AUTHORIZER as AUTHORIZER_SPEC
from infra.functions import GATEWAY
from infra.part_auth import attach_authorizer, authorizer_resources, trusting_authorizer
from infra.settings import Settings
from infra.stack_parts import StackPart, merge, part_builders

if TYPE_CHECKING:
    from infra.template import MeshConfig

API = "AuthorizedHttpApi"
FUNCTION = "AuthorizedGatewayFunction"
INTEGRATION = "AuthorizedGatewayIntegration"
ROUTE = "AuthorizedDefaultRoute"
STAGE = "AuthorizedDefaultStage"
PERMISSION = "AuthorizedGatewayInvokePermission"
AUTHORIZER = "AuthorizedEdgeAuthorizer"
API_OUTPUT = "AuthorizedApiId"
FUNCTION_OUTPUT = "AuthorizedGatewayFunctionName"


def other_parts_gateway_env(settings: Settings, mesh: MeshConfig) -> dict[str, Any]:
    """The gateway environment every other part adds (what ``GatewayFunction`` gets on top of
    ``infra.template.gateway_environment``)."""
    return dict(merge([builder({}, settings, mesh) for builder in part_builders()
                       if builder is not part]).gateway_env)


def http_api(settings: Settings) -> dict[str, Any]:
    """The second HTTP API, its ``$default`` route (behind the authorizer), stage,
    integration with ``AuthorizedGatewayFunction`` and the permission to invoke it."""
    from infra.template import proxy_integration  # infra.template imports the parts

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


def part(artifacts: Mapping[str, Artifact], settings: Settings, mesh: MeshConfig) -> StackPart:
    gateway = artifacts.get(GATEWAY.name)
    if gateway is None or AUTHORIZER_SPEC.name not in artifacts:
        return StackPart()  # a template rendered without the gateway's or authorizer's zip
    from infra.template import function_resource, gateway_environment  # imports the parts

    env = trusting_authorizer({**gateway_environment(settings, mesh),
                               **other_parts_gateway_env(settings, mesh)})
    return StackPart(
        resources={FUNCTION: function_resource(gateway, settings, env), **http_api(settings)},
        outputs={API_OUTPUT: {"Value": {"Ref": API}},
                 FUNCTION_OUTPUT: {"Value": {"Ref": FUNCTION}}},
    )
