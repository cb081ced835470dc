"""infra.stack.template: the CloudFormation stack generated from Python."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bus.config import BusSettings
from infra.deploy.package import Artifact
from infra.settings import Settings
from infra.stack.function_env import gateway_environment
from infra.stack.functions import GATEWAY
from infra.stack.model import MeshConfig
from infra.stack.template import endpoint_url, render, stack_template

SHA = "0123456789abcdef" * 4
MESH = MeshConfig(
    keyring={"keys": [{"kid": "gateway-1", "service": "gateway", "public": "AAAA"}]},
    access={"produce": {"gateway": ["orders.requests"], "orders": ["mesh.replies"]}},
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        root=tmp_path,
        stack_name="teststack",
        region="eu-west-1",
        kafka_bootstrap="broker:29092",
        artifact_bucket="my-artifacts",
        lambda_python="3.12",
        request_timeout_s=7.5,
    )


@pytest.fixture
def artifact(tmp_path: Path) -> Artifact:
    return Artifact(GATEWAY, tmp_path / "build" / "gateway.zip", SHA)


def _function(template: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = template["Resources"]["GatewayFunction"]["Properties"]
    return props


def test_artifact_key_is_content_addressed(artifact: Artifact) -> None:
    assert artifact.key == f"functions/gateway-{SHA[:20]}.zip"


def test_gateway_function(artifact: Artifact, settings: Settings) -> None:
    template = stack_template(artifact, settings, MESH)
    assert template["Resources"]["GatewayFunction"]["Type"] == "AWS::Lambda::Function"
    props = _function(template)
    assert props["Handler"] == "functions.gateway.handler.handler"
    assert props["Runtime"] == "python3.12"
    assert props["Code"] == {"S3Bucket": "my-artifacts", "S3Key": artifact.key}
    assert props["MemorySize"] == GATEWAY.memory_mb
    assert props["Timeout"] == GATEWAY.timeout_s
    assert props["Role"] == {"Fn::GetAtt": ["FunctionRole", "Arn"]}


def test_handler_names_a_real_function() -> None:
    module_name, _, attribute = GATEWAY.handler.rpartition(".")
    assert module_name == "functions.gateway.handler"
    assert attribute == "handler"


def test_environment_variables(artifact: Artifact, settings: Settings) -> None:
    variables = _function(stack_template(artifact, settings, MESH))["Environment"]["Variables"]
    assert variables["MESH_BOOTSTRAP_SERVERS"] == "broker:29092"
    assert variables["MESH_REQUEST_TIMEOUT_S"] == "7.5"
    assert variables["MESH_SERVICE_NAME"] == "gateway"
    assert variables["MESH_SIGNING_KEY_SECRET"] == "teststack/gateway/signing-key"
    assert json.loads(variables["MESH_KEYRING_JSON"]) == MESH.keyring
    assert json.loads(variables["MESH_ACCESS_JSON"]) == MESH.access
    base = gateway_environment(settings, MESH)
    assert {name: variables[name] for name in base} == base
    # the stack parts add only their stores' names, never a secret value
    assert set(variables) - set(base) == {
        "MESH_API_KEYS_TABLE", "MESH_API_KEY_PEPPER_SECRET", "MESH_OPERATIONS_TABLE",
        "MESH_RATE_LIMIT_TABLE"}
    assert list(variables) == sorted(variables)


def test_environment_is_understood_by_the_bus_settings(settings: Settings) -> None:
    bus = BusSettings.resolve(env=gateway_environment(settings, MESH))
    assert bus.bootstrap_servers == settings.kafka_bootstrap
    assert bus.service_name == "gateway"
    assert bus.request_timeout_s == settings.request_timeout_s
    assert bus.signing_key_secret == "teststack/gateway/signing-key"
    assert bus.keyring_json is not None
    assert json.loads(bus.keyring_json) == MESH.keyring
    assert bus.insecure is False


def test_function_role_reads_only_its_own_signing_key(
    artifact: Artifact, settings: Settings
) -> None:
    role = stack_template(artifact, settings, MESH)["Resources"]["FunctionRole"]["Properties"]
    [policy] = role["Policies"]
    secret, traffic, keyring, *stores = policy["PolicyDocument"]["Statement"]
    assert secret["Action"] == "secretsmanager:GetSecretValue"
    assert secret["Resource"]["Fn::Sub"].endswith(":secret:teststack/gateway/signing-key-*")
    assert traffic["Action"] == "ssm:GetParameter"  # its traffic rules, and nothing else
    assert traffic["Resource"]["Fn::Sub"].endswith(":parameter/teststack/traffic")
    assert keyring["Action"] == "ssm:GetParameter"  # the live keyring (keys rotate)
    assert keyring["Resource"]["Fn::Sub"].endswith(":parameter/teststack/keyring")
    secrets = [s["Resource"]["Fn::Sub"] for s in stores
               if s["Action"] == "secretsmanager:GetSecretValue"]
    # besides its own key, only the API-key pepper: never another service's signing key
    assert [text.rsplit(":secret:", 1)[1] for text in secrets] == [
        "teststack/gateway/api-key-pepper-*"]
    tables = [s for s in stores if s["Action"] != "secretsmanager:GetSecretValue"]
    assert all(action.startswith("dynamodb:") for s in tables for action in s["Action"])


def test_request_timeout_fits_in_the_integration_and_function(
    artifact: Artifact, settings: Settings
) -> None:
    template = stack_template(artifact, Settings(root=settings.root, request_timeout_s=28), MESH)
    integration = template["Resources"]["GatewayIntegration"]["Properties"]
    assert integration["TimeoutInMillis"] > 28 * 1000
    assert integration["TimeoutInMillis"] <= 30_000  # HTTP API maximum
    assert _function(template)["Timeout"] > 28


def test_http_api_wiring(artifact: Artifact, settings: Settings) -> None:
    resources = stack_template(artifact, settings, MESH)["Resources"]
    assert resources["HttpApi"]["Properties"] == {"Name": "teststack-edge", "ProtocolType": "HTTP"}
    integration = resources["GatewayIntegration"]["Properties"]
    assert integration["IntegrationType"] == "AWS_PROXY"
    assert integration["PayloadFormatVersion"] == "2.0"
    assert integration["IntegrationUri"] == {"Fn::GetAtt": ["GatewayFunction", "Arn"]}
    assert resources["DefaultRoute"]["Properties"]["RouteKey"] == "$default"
    assert resources["DefaultStage"]["Properties"]["AutoDeploy"] is True
    permission = resources["GatewayInvokePermission"]["Properties"]
    assert permission["Principal"] == "apigateway.amazonaws.com"
    assert permission["FunctionName"] == {"Ref": "GatewayFunction"}


def _references(node: Any) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        if "Ref" in node:
            found.append(node["Ref"])
        if "Fn::GetAtt" in node:
            found.append(node["Fn::GetAtt"][0])
        for value in node.values():
            found.extend(_references(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_references(value))
    return found


def test_every_reference_names_a_resource(artifact: Artifact, settings: Settings) -> None:
    template = stack_template(artifact, settings, MESH)
    references = _references(template)
    assert references
    assert set(references) <= set(template["Resources"])


def test_outputs(artifact: Artifact, settings: Settings) -> None:
    outputs = stack_template(artifact, settings, MESH)["Outputs"]
    assert outputs["ApiId"] == {"Value": {"Ref": "HttpApi"}}
    assert outputs["GatewayFunctionName"] == {"Value": {"Ref": "GatewayFunction"}}


def test_render_is_deterministic_json(artifact: Artifact, settings: Settings) -> None:
    template = stack_template(artifact, settings, MESH)
    body = render(template)
    assert json.loads(body) == template
    assert render(stack_template(artifact, settings, MESH)) == body


def test_new_artifact_changes_the_rendered_template(
    artifact: Artifact, settings: Settings, tmp_path: Path
) -> None:
    other = Artifact(GATEWAY, tmp_path / "other.zip", "f" * 64)
    before = render(stack_template(artifact, settings, MESH))
    assert render(stack_template(other, settings, MESH)) != before


def test_endpoint_url_local(tmp_path: Path) -> None:
    local = Settings(root=tmp_path, endpoint_url="http://127.0.0.1:4566/")
    assert endpoint_url(local, "abc123") == "http://127.0.0.1:4566/_aws/execute-api/abc123"


def test_endpoint_url_aws(tmp_path: Path) -> None:
    aws = Settings(root=tmp_path, endpoint_url=None, region="eu-central-1")
    assert endpoint_url(aws, "abc123") == "https://abc123.execute-api.eu-central-1.amazonaws.com"
