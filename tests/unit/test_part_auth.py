"""infra.stack.parts.auth: the API-keys table, the pepper, the authorizer function, and the
alternative deployment that puts the authorizer in front of the routes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra.deploy.package import Artifact
from infra.settings import Settings
from infra.stack.functions import AUTHORIZER, GATEWAY
from infra.stack.model import MeshConfig
from infra.stack.parts.auth import authorizer_resources, with_authorizer
from infra.stack.template import stack_template

SHA = "ab" * 32
MESH = MeshConfig(keyring={}, access={})


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(root=tmp_path, stack_name="teststack", endpoint_url=None)


def template(settings: Settings, tmp_path: Path, *, authorizer: bool = True) -> dict[str, Any]:
    artifacts = {"authorizer": Artifact(AUTHORIZER, tmp_path / "a.zip", SHA)} if authorizer \
        else {}
    return stack_template(Artifact(GATEWAY, tmp_path / "g.zip", SHA), settings, MESH, artifacts)


def refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["Ref"]} if isinstance(node.get("Ref"), str) else set()
        if isinstance(node.get("Fn::GetAtt"), list):
            found.add(node["Fn::GetAtt"][0])
        return found.union(*(refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(refs(v) for v in node))
    return set()


def test_table_env_role_and_outputs(settings: Settings, tmp_path: Path) -> None:
    t = template(settings, tmp_path)
    table = t["Resources"]["ApiKeysTable"]
    assert table["Type"] == "AWS::DynamoDB::Table"
    assert table["Properties"]["TableName"] == "teststack-api-keys"
    assert table["Properties"]["KeySchema"] == [{"AttributeName": "key_id", "KeyType": "HASH"}]
    env = t["Resources"]["GatewayFunction"]["Properties"]["Environment"]["Variables"]
    assert env["MESH_API_KEYS_TABLE"] == {"Ref": "ApiKeysTable"}
    assert env["MESH_API_KEY_PEPPER_SECRET"] == "teststack/gateway/api-key-pepper"
    assert "MESH_TRUST_AUTHORIZER" not in env
    statements = t["Resources"]["FunctionRole"]["Properties"]["Policies"][0][
        "PolicyDocument"]["Statement"]
    [keys] = [s for s in statements if s["Resource"] == {"Fn::GetAtt": ["ApiKeysTable", "Arn"]}]
    assert keys["Action"] == ["dynamodb:GetItem"]  # read only: issuing is the operator's
    [pepper] = [s for s in statements if "api-key-pepper" in json.dumps(s)]
    assert pepper["Action"] == "secretsmanager:GetSecretValue"
    assert pepper["Resource"]["Fn::Sub"].endswith(":secret:teststack/gateway/api-key-pepper-*")
    assert t["Outputs"]["ApiKeysTableName"] == {"Value": {"Ref": "ApiKeysTable"}}
    assert refs(t) <= set(t["Resources"]) | {"AWS::Region"}


def test_authorizer_is_deployed_but_not_attached(settings: Settings, tmp_path: Path) -> None:
    t = template(settings, tmp_path)
    function = t["Resources"]["AuthorizerFunction"]["Properties"]
    assert function["Handler"] == "functions.authorizer.handler.handler"
    assert function["Environment"]["Variables"]["MESH_API_KEYS_TABLE"] == {"Ref": "ApiKeysTable"}
    permission = t["Resources"]["AuthorizerInvokePermission"]["Properties"]
    assert permission["Principal"] == "apigateway.amazonaws.com"
    assert permission["FunctionName"] == {"Ref": "AuthorizerFunction"}
    assert t["Outputs"]["AuthorizerFunctionName"] == {"Value": {"Ref": "AuthorizerFunction"}}
    assert not any(r["Type"] == "AWS::ApiGatewayV2::Authorizer"  # on the default edge
                   and r["Properties"]["ApiId"] == {"Ref": "HttpApi"}
                   for r in t["Resources"].values())
    assert "AuthorizationType" not in t["Resources"]["DefaultRoute"]["Properties"]


def test_without_the_authorizer_artifact_only_the_table(settings: Settings,
                                                         tmp_path: Path) -> None:
    t = template(settings, tmp_path, authorizer=False)
    assert "ApiKeysTable" in t["Resources"]
    assert "AuthorizerFunction" not in t["Resources"]
    with pytest.raises(ValueError, match="AuthorizerFunction"):
        with_authorizer(t, settings)


def test_with_authorizer_attaches_it_in_front_of_the_route(settings: Settings,
                                                           tmp_path: Path) -> None:
    t = template(settings, tmp_path)
    attached = with_authorizer(t, settings)
    authorizer = attached["Resources"]["EdgeAuthorizer"]["Properties"]
    assert authorizer == authorizer_resources(settings)["EdgeAuthorizer"]["Properties"]
    assert authorizer["AuthorizerType"] == "REQUEST"
    assert authorizer["AuthorizerPayloadFormatVersion"] == "2.0"
    assert authorizer["EnableSimpleResponses"] is True
    assert authorizer["AuthorizerResultTtlInSeconds"] == 0
    assert authorizer["IdentitySource"] == []  # either credential, not both
    assert "${AuthorizerFunction.Arn}" in authorizer["AuthorizerUri"]["Fn::Sub"]
    route = attached["Resources"]["DefaultRoute"]["Properties"]
    assert route["AuthorizationType"] == "CUSTOM"
    assert route["AuthorizerId"] == {"Ref": "EdgeAuthorizer"}
    env = attached["Resources"]["GatewayFunction"]["Properties"]["Environment"]["Variables"]
    assert env["MESH_TRUST_AUTHORIZER"] == "1"
    assert "AuthorizationType" not in t["Resources"]["DefaultRoute"]["Properties"]  # a copy
