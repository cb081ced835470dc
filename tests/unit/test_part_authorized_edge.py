"""infra.stack.parts.authorized_edge: the second HTTP API, with the Lambda authorizer in front of
its default route, integrated with a trusting copy of the gateway."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra.deploy.package import Artifact
from infra.settings import Settings
from infra.stack.functions import AUTHORIZER, GATEWAY
from infra.stack.model import MeshConfig
from infra.stack.parts import authorized_edge as edge
from infra.stack.parts.auth import authorizer_resources, with_authorizer
from infra.stack.template import render, stack_template

SHA = "cd" * 32
MESH = MeshConfig(keyring={"gateway": {"alg": "Ed25519", "key": "x"}}, access={})


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


def test_second_api_routes_through_the_authorizer_to_a_second_gateway(
    settings: Settings, tmp_path: Path
) -> None:
    resources = template(settings, tmp_path)["Resources"]
    api = resources[edge.API]
    assert api["Type"] == "AWS::ApiGatewayV2::Api"
    assert api["Properties"] == {"Name": "teststack-authorized-edge", "ProtocolType": "HTTP"}
    route = resources[edge.ROUTE]["Properties"]
    assert route["ApiId"] == {"Ref": edge.API}
    assert route["RouteKey"] == "$default"
    assert route["AuthorizationType"] == "CUSTOM"
    assert route["AuthorizerId"] == {"Ref": edge.AUTHORIZER}
    assert route["Target"] == {"Fn::Join": ["/", ["integrations", {"Ref": edge.INTEGRATION}]]}
    integration = resources[edge.INTEGRATION]["Properties"]
    assert integration["ApiId"] == {"Ref": edge.API}
    assert integration["IntegrationUri"] == {"Fn::GetAtt": [edge.FUNCTION, "Arn"]}
    assert integration["PayloadFormatVersion"] == "2.0"
    assert resources[edge.STAGE]["Properties"]["ApiId"] == {"Ref": edge.API}
    assert resources[edge.STAGE]["Properties"]["StageName"] == "$default"


def test_the_authorizer_is_the_one_with_authorizer_renders(settings: Settings,
                                                          tmp_path: Path) -> None:
    resources = template(settings, tmp_path)["Resources"]
    ours = resources[edge.AUTHORIZER]
    theirs = with_authorizer(template(settings, tmp_path), settings)["Resources"][
        "EdgeAuthorizer"]
    assert ours == authorizer_resources(settings, api=edge.API,
                                        logical_id=edge.AUTHORIZER)[edge.AUTHORIZER]
    # The same authorizer function and settings; only the API differs.
    assert {**ours["Properties"], "ApiId": None} == {**theirs["Properties"], "ApiId": None}
    assert ours["Properties"]["ApiId"] == {"Ref": edge.API}
    assert ours["Properties"]["EnableSimpleResponses"] is True
    assert ours["Properties"]["AuthorizerPayloadFormatVersion"] == "2.0"
    assert ours["Properties"]["IdentitySource"] == []
    assert "${AuthorizerFunction.Arn}" in ours["Properties"]["AuthorizerUri"]["Fn::Sub"]


def test_second_gateway_is_the_gateway_trusting_the_authorizer(settings: Settings,
                                                               tmp_path: Path) -> None:
    resources = template(settings, tmp_path)["Resources"]
    first = resources["GatewayFunction"]["Properties"]
    second = resources[edge.FUNCTION]["Properties"]
    assert second["Code"] == first["Code"]
    assert second["Handler"] == first["Handler"]
    assert second["Role"] == first["Role"] == {"Fn::GetAtt": ["FunctionRole", "Arn"]}
    env = second["Environment"]["Variables"]
    assert env.pop("MESH_TRUST_AUTHORIZER") == "1"
    assert env == first["Environment"]["Variables"]  # every part's variables, none missing
    assert "MESH_TRUST_AUTHORIZER" not in first["Environment"]["Variables"]
    assert list(second["Environment"]["Variables"]) == sorted(
        second["Environment"]["Variables"])


def test_only_this_api_may_invoke_the_trusting_gateway(settings: Settings,
                                                       tmp_path: Path) -> None:
    permission = template(settings, tmp_path)["Resources"][edge.PERMISSION]["Properties"]
    assert permission["FunctionName"] == {"Ref": edge.FUNCTION}
    assert permission["Principal"] == "apigateway.amazonaws.com"
    assert permission["SourceArn"]["Fn::Sub"].endswith(f":${{{edge.API}}}/*")


def test_default_edge_is_untouched_and_outputs_name_the_second(settings: Settings,
                                                              tmp_path: Path) -> None:
    t = template(settings, tmp_path)
    assert "AuthorizationType" not in t["Resources"]["DefaultRoute"]["Properties"]
    assert t["Outputs"][edge.API_OUTPUT] == {"Value": {"Ref": edge.API}}
    assert t["Outputs"][edge.FUNCTION_OUTPUT] == {"Value": {"Ref": edge.FUNCTION}}
    assert refs(t) <= set(t["Resources"]) | {"AWS::Region"}
    assert render(t) == render(template(settings, tmp_path))  # stable


def test_without_the_authorizer_artifact_there_is_no_second_edge(settings: Settings,
                                                                tmp_path: Path) -> None:
    t = template(settings, tmp_path, authorizer=False)
    assert not {edge.API, edge.FUNCTION, edge.AUTHORIZER} & set(t["Resources"])
    assert edge.API_OUTPUT not in t["Outputs"]
    assert "AuthorizedHttpApi" not in json.dumps(t)
