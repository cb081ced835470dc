"""cfn-lint (AWS's resource schemas and its rules) over every template the project renders:
the emulator's and AWS's, each Kafka access mode, with and without the MSK Serverless cluster,
VPC on and off, the mappings' options, the authorizer variant, and a policy with a subset.
Zero errors and zero warnings (none is ignored: see docs/decisions.md).

cfn-lint ships the schemas in its package; the lint runs with every socket refused, so it
cannot have downloaded anything.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from cfnlint.api import ManualArgs, lint

from infra.deploy.package import Artifact
from infra.policy import access_map
from infra.settings import Settings
from infra.stack.deploy_settings import DeploySettings
from infra.stack.functions import FUNCTIONS, GATEWAY
from infra.stack.model import MeshConfig
from infra.stack.parts.auth import with_authorizer
from infra.stack.template import render, stack_template

ROOT = Path(__file__).resolve().parents[2]
MESH = MeshConfig(keyring={"keys": []}, access=access_map(ROOT / "policies"))
ARTIFACTS = {spec.name: Artifact(spec, Path(f"/tmp/{spec.name}.zip"), "cd" * 32)
             for spec in FUNCTIONS}
LOCAL = Settings()
AWS = Settings(endpoint_url=None, kafka_bootstrap="b-1.example.com:9096,b-2.example.com:9096")
EU = AWS.model_copy(update={"region": "eu-west-1"})
CLUSTER = "arn:aws:kafka:us-east-1:123456789012:cluster/mesh/0b1c2d3e-4444-5555-6666-7777"
NET: dict[str, Any] = {"subnet_ids": ("subnet-0a1b2c3d", "subnet-1a2b3c4d"),
                       "security_group_ids": ("sg-0123456789abcdef0",)}
CA = "arn:aws:secretsmanager:us-east-1:123456789012:secret:kafka-ca-AbCdEf"
# Warnings ignored, by rule id, with the reason (none so far).
IGNORED: dict[str, str] = {}

# Each access mode, VPC on and off, with and without the cluster, every mapping option
# (about 2 s of cfn-lint each: kept to what differs).
VARIANTS: dict[str, tuple[Settings, DeploySettings]] = {
    "emulator": (LOCAL, DeploySettings()),
    "aws-self-managed-public": (AWS, DeploySettings()),
    "aws-self-managed-scram-vpc-ca": (AWS, DeploySettings(scram=True, root_ca_secret_arn=CA,
                                                          **NET)),
    "aws-msk-iam-no-destination": (AWS, DeploySettings(
        kafka_access="msk-iam", msk_cluster_arn=CLUSTER, on_failure="none")),
    "aws-msk-scram-vpc-sns": (AWS, DeploySettings(
        kafka_access="msk-scram", msk_cluster_arn=CLUSTER,
        on_failure="arn:aws:sns:us-east-1:123456789012:mesh-failures", **NET)),
    "aws-msk-serverless-eu": (EU, DeploySettings(kafka_access="msk-iam", create_cluster=True,
                                                 vpc_id="vpc-0abc1234",
                                                 subnet_ids=NET["subnet_ids"])),
    "aws-mapping-options": (AWS, DeploySettings(
        batch_size=10_000, batching_window_s=300, starting_position="TRIM_HORIZON",
        partial_batch_responses=False, on_failure="kafka://mesh.failed", max_pollers=20)),
}
# The alternative deployment (the Lambda authorizer in front of the edge), on both sides.
WITH_AUTHORIZER = ("emulator", "aws-msk-serverless-eu")


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("the lint must not use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def problems(template: dict[str, Any], region: str) -> list[str]:
    matches = lint(render(template), config=ManualArgs(regions=[region]))
    return [f"{m.rule.id} {'/'.join(map(str, m.path))}: {m.message}" for m in matches
            if m.rule.id not in IGNORED]


def rendered(settings: Settings, deploy: DeploySettings) -> dict[str, Any]:
    rest = {name: a for name, a in ARTIFACTS.items() if name != GATEWAY.name}
    return stack_template(ARTIFACTS[GATEWAY.name], settings, MESH, rest, deploy)


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_rendered_template_passes_cfn_lint(variant: str) -> None:
    settings, deploy = VARIANTS[variant]
    template = rendered(settings, deploy)
    assert problems(template, settings.region) == []
    if variant in WITH_AUTHORIZER:
        assert problems(with_authorizer(template, settings), settings.region) == []


@pytest.mark.usefixtures("no_network")
def test_a_policy_with_a_subset_passes_too(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    (tmp_path / "functions" / "orders").mkdir(parents=True)
    (tmp_path / "functions" / "orders" / "service.py").write_text("")
    mesh_yaml = tmp_path / "policies" / "mesh.yaml"
    document = yaml.safe_load(mesh_yaml.read_text())
    document["services"]["orders"]["subsets"] = ["", "canary"]
    document["topics"]["orders.canary.requests"] = {"partitions": 1}
    mesh_yaml.write_text(yaml.safe_dump(document))
    settings = AWS.model_copy(update={"root": tmp_path})
    template = rendered(settings, DeploySettings(kafka_access="msk-iam", msk_cluster_arn=CLUSTER))
    assert "OrdersCanaryEventsMapping" in template["Resources"]
    assert problems(template, settings.region) == []


@pytest.mark.usefixtures("no_network")
def test_the_lint_can_fail() -> None:
    """The control: the mapping as the stack used to render it (``KAFKA_BOOTSTRAP_SERVERS``,
    which AWS refuses) is an error cfn-lint reports."""
    template = rendered(AWS, DeploySettings())
    endpoints = template["Resources"]["OrdersEventsMapping"]["Properties"][
        "SelfManagedEventSource"]["Endpoints"]
    endpoints["KAFKA_BOOTSTRAP_SERVERS"] = endpoints.pop("KafkaBootstrapServers")
    found = problems(template, AWS.region)
    assert any(p.startswith("E3002 ") and "KAFKA_BOOTSTRAP_SERVERS" in p for p in found), found
