"""The stack part of edge authentication (see ``infra.stack.registry``).

- ``ApiKeysTable``: API-key records (digests only; ``functions.gateway.auth.keys_table``);
  the functions' role may read it (GetItem) and read the pepper secret
  ``<stack>/gateway/api-key-pepper`` (created by ``infra.keys.pepper`` during the deploy).
- The gateway's environment names both: ``MESH_API_KEYS_TABLE``,
  ``MESH_API_KEY_PEPPER_SECRET``.
- ``AuthorizerFunction`` (``functions/authorizer``) with a permission for API Gateway to
  invoke it. It is *not* attached to the routes: by default the gateway checks credentials
  itself. :func:`with_authorizer` turns a rendered template into the alternative deployment
  (an HTTP API v2 REQUEST authorizer, payload 2.0, simple responses, in front of the default
  route, and the gateway told to trust its context).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from functions.gateway.auth.authorizer_context import TRUST_AUTHORIZER_ENV
from functions.gateway.auth.dynamodb_keys import API_KEYS_TABLE_ENV
from functions.gateway.auth.keys_table import api_keys_read_access, api_keys_table
from functions.shared.secrets import API_KEY_PEPPER_ENV
from infra.deploy.package import Artifact
from infra.keys.pepper import pepper_secret_name
from infra.settings import Settings
from infra.stack.model import MeshConfig, StackPart
from infra.stack.resources import function_resource

TABLE = "ApiKeysTable"
FUNCTION = "AuthorizerFunction"
PERMISSION = "AuthorizerInvokePermission"
AUTHORIZER = "EdgeAuthorizer"
AUTHORIZER_FUNCTION_NAME = "authorizer"  # the FunctionSpec's name (infra.stack.functions)


def auth_environment(settings: Settings) -> dict[str, Any]:
    """What the gateway and the authorizer need to check API keys."""
    return {API_KEYS_TABLE_ENV: {"Ref": TABLE},
            API_KEY_PEPPER_ENV: pepper_secret_name(settings)}


def pepper_access(settings: Settings) -> dict[str, Any]:
    return {
        "Effect": "Allow",
        "Action": "secretsmanager:GetSecretValue",
        "Resource": {"Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:"
                     f"${{AWS::AccountId}}:secret:{pepper_secret_name(settings)}-*"},
    }


def authorizer_function(artifact: Artifact, settings: Settings) -> dict[str, Any]:
    return function_resource(artifact, settings, auth_environment(settings))


def part(artifacts: Mapping[str, Artifact], settings: Settings, mesh: MeshConfig) -> StackPart:
    resources: dict[str, Any] = {TABLE: api_keys_table(f"{settings.stack_name}-api-keys")}
    outputs: dict[str, Any] = {"ApiKeysTableName": {"Value": {"Ref": TABLE}}}
    artifact = artifacts.get(AUTHORIZER_FUNCTION_NAME)
    if artifact is not None:
        resources[FUNCTION] = authorizer_function(artifact, settings)
        resources[PERMISSION] = {
            "Type": "AWS::Lambda::Permission",
            "Properties": {
                "Action": "lambda:InvokeFunction",
                "FunctionName": {"Ref": FUNCTION},
                "Principal": "apigateway.amazonaws.com",
            },
        }
        outputs["AuthorizerFunctionName"] = {"Value": {"Ref": FUNCTION}}
    return StackPart(
        resources=resources,
        outputs=outputs,
        role_statements=[api_keys_read_access(TABLE), pepper_access(settings)],
        gateway_env=auth_environment(settings),
    )


def authorizer_resources(settings: Settings, api: str = "HttpApi",
                         logical_id: str = AUTHORIZER) -> dict[str, Any]:
    """The ``AWS::ApiGatewayV2::Authorizer`` ``logical_id`` of ``AuthorizerFunction`` on the
    HTTP API ``api``: REQUEST type, payload 2.0, simple responses. No identity source (an
    explicit empty list: the emulator's CloudFormation defaults an absent one to the
    ``Authorization`` header) and no result cache: a caller presents *either* a bearer token
    *or* an API key, and API Gateway would answer 401 by itself to a request that lacks one
    of several identity sources."""
    return {logical_id: {
        "Type": "AWS::ApiGatewayV2::Authorizer",
        "Properties": {
            "ApiId": {"Ref": api},
            "Name": f"{settings.stack_name}-edge-authorizer",
            "AuthorizerType": "REQUEST",
            "AuthorizerUri": {"Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}:"
                              "lambda:path/2015-03-31/functions/"
                              f"${{{FUNCTION}.Arn}}/invocations"},
            "AuthorizerPayloadFormatVersion": "2.0",
            "EnableSimpleResponses": True,
            "AuthorizerResultTtlInSeconds": 0,
            "IdentitySource": [],
        },
    }}


def attach_authorizer(route: dict[str, Any], authorizer: str = AUTHORIZER) -> None:
    """Put the authorizer ``authorizer`` (a logical id) in front of the ``AWS::ApiGatewayV2
    ::Route`` resource ``route`` (changed in place)."""
    route["Properties"].update(AuthorizationType="CUSTOM", AuthorizerId={"Ref": authorizer})


def trusting_authorizer(env: Mapping[str, Any]) -> dict[str, Any]:
    """A gateway environment ``env`` that trusts the principal the authorizer passes on."""
    return {**env, TRUST_AUTHORIZER_ENV: "1"}


def with_authorizer(template: Mapping[str, Any], settings: Settings,
                    routes: tuple[str, ...] = ("DefaultRoute",)) -> dict[str, Any]:
    """A copy of the rendered stack ``template`` in which API Gateway calls the authorizer
    before ``routes`` and the gateway trusts the principal it passes on
    (``MESH_TRUST_AUTHORIZER=1``, read with ``principal_from_authorizer``)."""
    result = copy.deepcopy(dict(template))
    resources = result["Resources"]
    if FUNCTION not in resources:
        raise ValueError("the template has no AuthorizerFunction: build the authorizer too")
    resources.update(authorizer_resources(settings))
    for route in routes:
        attach_authorizer(resources[route])
    environment = resources["GatewayFunction"]["Properties"]["Environment"]
    environment["Variables"] = trusting_authorizer(environment["Variables"])
    return result
