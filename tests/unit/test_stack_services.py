"""Every service of the policy on Lambda: one function, role and Kafka event source mapping per
service (and subset), generated from the policy; the access modes, the VPC, the optional MSK
Serverless cluster, and the deploy settings behind them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from bus.config import BusSettings
from infra.deploy.package import Artifact
from infra.policy import access_map, load_policy
from infra.settings import Settings
from infra.stack import kafka_access
from infra.stack.deploy_settings import DeploySettings, DeploySettingsInvalid
from infra.stack.functions import FUNCTIONS, GATEWAY, SERVICE_EVENTS
from infra.stack.model import MeshConfig
from infra.stack.parts import bench_echo, cluster, services
from infra.stack.template import stack_template

ROOT = Path(__file__).resolve().parents[2]
POLICY = load_policy(ROOT / "policies")
MESH = MeshConfig(keyring={"keys": []}, access=access_map(POLICY))
ARTIFACTS = {spec.name: Artifact(spec, Path(f"/tmp/{spec.name}.zip"), "ab" * 32)
             for spec in FUNCTIONS}
REST = {name: a for name, a in ARTIFACTS.items() if name != GATEWAY.name}
AWS = Settings(endpoint_url=None, kafka_bootstrap="b-1.example.com:9096,b-2.example.com:9096")
CLUSTER_ARN = "arn:aws:kafka:us-east-1:123456789012:cluster/mesh/0b1c2d3e-4444-5555-6666-7777"
SUBNETS = ("subnet-0a1b2c3d", "subnet-1a2b3c4d")
GROUPS = ("sg-0123456789abcdef0",)
# The services the policy runs on Lambda: they serve operations and have handlers.
EXPECTED = sorted(name for name, spec in POLICY.services.items()
                  if spec.operations and (ROOT / "functions" / name / "service.py").is_file())


def render(settings: Settings = AWS, deploy: DeploySettings | None = None) -> dict[str, Any]:
    resources: dict[str, Any] = stack_template(ARTIFACTS[GATEWAY.name], settings, MESH, REST,
                                               deploy or DeploySettings())["Resources"]
    return resources


def of_type(resources: dict[str, Any], kind: str) -> dict[str, Any]:
    return {k: v for k, v in resources.items() if v["Type"] == kind}


def test_every_service_with_handlers_gets_a_function_role_queue_and_mapping() -> None:
    assert EXPECTED, "the demo policy has services on Lambda"
    resources = render()
    for service in EXPECTED:
        function = resources[services.function_id(service)]["Properties"]
        assert function["Handler"] == SERVICE_EVENTS.handler == \
            "functions.kafka_service.handler.handler"
        assert function["Role"] == {"Fn::GetAtt": [services.role_id(service), "Arn"]}
        env = function["Environment"]["Variables"]
        bus = BusSettings.resolve(env={k: v for k, v in env.items() if isinstance(v, str)})
        assert bus.service_name == service
        assert bus.signing_key_secret == f"meshgate/{service}/signing-key"
        assert env["MESH_IDEMPOTENCY_TABLE"] == {"Ref": "IdempotencyTable"}
        mapping = resources[services.mapping_id(service)]["Properties"]
        assert mapping["FunctionName"] == {"Ref": services.function_id(service)}
        assert mapping["Topics"] == [f"{service}.requests"]
        assert mapping["SelfManagedEventSource"]["Endpoints"]["KafkaBootstrapServers"] == [
            "b-1.example.com:9096", "b-2.example.com:9096"]
        assert mapping["SelfManagedKafkaEventSourceConfig"] == {
            "ConsumerGroupId": f"{service}-lambda"}
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert mapping["DestinationConfig"] == {"OnFailure": {"Destination": {
            "Fn::GetAtt": [services.queue_id(service), "Arn"]}}}
    # nothing for the edge (no operations) and nothing without handlers
    mapped = {m["Properties"]["Topics"][0] for m in
              of_type(resources, "AWS::Lambda::EventSourceMapping").values()}
    assert mapped == {f"{s}.requests" for s in EXPECTED}
    assert "GatewayEventsFunction" not in resources


def test_a_role_reads_only_its_own_service_key() -> None:
    resources = render()
    for service in EXPECTED:
        [policy] = resources[services.role_id(service)]["Properties"]["Policies"]
        text = json.dumps(policy)
        assert f"secret:meshgate/{service}/signing-key-*" in text
        others = [s for s in POLICY.services if s != service]
        assert not any(f"meshgate/{other}/" in text for other in others)
    edge = json.dumps(resources["FunctionRole"])
    assert not any(f"meshgate/{service}/signing-key" in edge for service in EXPECTED)


def test_the_mapping_settings_come_from_the_deploy_settings() -> None:
    deploy = DeploySettings(batch_size=10, batching_window_s=2, starting_position="TRIM_HORIZON",
                            partial_batch_responses=False, on_failure="kafka://mesh.failed",
                            min_pollers=2, max_pollers=5)
    mapping = render(deploy=deploy)[services.mapping_id("orders")]["Properties"]
    assert (mapping["BatchSize"], mapping["MaximumBatchingWindowInSeconds"],
            mapping["StartingPosition"]) == (10, 2, "TRIM_HORIZON")
    assert "FunctionResponseTypes" not in mapping
    assert mapping["DestinationConfig"]["OnFailure"]["Destination"] == "kafka://mesh.failed"
    assert mapping["ProvisionedPollerConfig"] == {"MinimumPollers": 2, "MaximumPollers": 5}
    resources = render(deploy=DeploySettings(on_failure="none"))
    assert "DestinationConfig" not in resources[services.mapping_id("orders")]["Properties"]
    assert not of_type(resources, "AWS::SQS::Queue")


def test_self_managed_with_scram_vpc_and_root_ca() -> None:
    ca = "arn:aws:secretsmanager:us-east-1:123456789012:secret:kafka-ca-AbCdEf"
    deploy = DeploySettings(scram=True, subnet_ids=SUBNETS, security_group_ids=GROUPS,
                            root_ca_secret_arn=ca)
    resources = render(deploy=deploy)
    access = resources[services.mapping_id("orders")]["Properties"]["SourceAccessConfigurations"]
    assert access[0] == {"Type": "SASL_SCRAM_512_AUTH", "URI": {"Fn::Sub": (
        "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:"
        "secret:/meshgate/kafka/scram/orders")}}
    assert access[1:] == [{"Type": "VPC_SUBNET", "URI": "subnet:subnet-0a1b2c3d"},
                          {"Type": "VPC_SUBNET", "URI": "subnet:subnet-1a2b3c4d"},
                          {"Type": "VPC_SECURITY_GROUP", "URI": "security_group:" + GROUPS[0]},
                          {"Type": "SERVER_ROOT_CA_CERTIFICATE", "URI": ca}]
    env = resources[services.function_id("orders")]["Properties"]["Environment"]["Variables"]
    assert {k: v for k, v in env.items() if k.startswith("MESH_KAFKA_")} == {
        "MESH_KAFKA_PROTOCOL": "SASL_SSL", "MESH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "MESH_KAFKA_SASL_USERNAME": "orders",
        "MESH_KAFKA_SASL_PASSWORD_SECRET": "/meshgate/kafka/scram/orders"}
    # private brokers: every function that talks to Kafka joins the VPC, the echo does not
    functions = of_type(resources, "AWS::Lambda::Function")
    joined = {k for k, v in functions.items() if "VpcConfig" in v["Properties"]}
    assert joined == set(functions) - {bench_echo.FUNCTION}
    assert {"GatewayFunction", "AuthorizerFunction", "AuthorizedGatewayFunction"} <= joined
    assert resources["GatewayFunction"]["Properties"]["VpcConfig"] == {
        "SubnetIds": list(SUBNETS), "SecurityGroupIds": list(GROUPS)}
    roles = {v["Properties"]["Role"]["Fn::GetAtt"][0] for k, v in functions.items()
             if k in joined}
    for role in roles:
        assert kafka_access.VPC_ACCESS_POLICY in resources[role]["Properties"][
            "ManagedPolicyArns"]
    assert kafka_access.VPC_ACCESS_POLICY not in resources[bench_echo.ROLE]["Properties"][
        "ManagedPolicyArns"]


def test_msk_iam_grants_exactly_the_services_topics_and_group() -> None:
    deploy = DeploySettings(kafka_access="msk-iam", msk_cluster_arn=CLUSTER_ARN,
                            subnet_ids=SUBNETS, security_group_ids=GROUPS)
    resources = render(deploy=deploy)
    mapping = resources[services.mapping_id("orders")]["Properties"]
    assert mapping["EventSourceArn"] == CLUSTER_ARN
    assert mapping["AmazonManagedKafkaEventSourceConfig"] == {"ConsumerGroupId": "orders-lambda"}
    assert "SourceAccessConfigurations" not in mapping
    assert "SelfManagedEventSource" not in mapping
    [policy] = resources[services.role_id("orders")]["Properties"]["Policies"]
    statements = policy["PolicyDocument"]["Statement"]
    topic = "arn:aws:kafka:us-east-1:123456789012:topic/mesh/0b1c2d3e-4444-5555-6666-7777/"
    reads = next(s for s in statements if "kafka-cluster:ReadData" in s["Action"])
    assert set(reads["Resource"]) == {topic + t for t in MESH.access["consume"]["orders"]}
    writes = next(s for s in statements if "kafka-cluster:WriteData" in s["Action"])
    assert topic + "mesh.quarantine" in writes["Resource"]
    assert topic + "orders.requests" not in writes["Resource"]  # it may not forge requests
    groups = next(s for s in statements if "kafka-cluster:AlterGroup" in s["Action"])
    assert groups["Resource"] == [
        "arn:aws:kafka:us-east-1:123456789012:group/mesh/0b1c2d3e-4444-5555-6666-7777/"
        "orders-lambda"]
    env = resources[services.function_id("orders")]["Properties"]["Environment"]["Variables"]
    assert env["MESH_KAFKA_OAUTH_PROVIDER"] == "msk-iam"
    assert env["MESH_KAFKA_SASL_MECHANISM"] == "OAUTHBEARER"
    assert env["MESH_KAFKA_AWS_REGION"] == "us-east-1"
    gateway_env = resources["GatewayFunction"]["Properties"]["Environment"]["Variables"]
    assert gateway_env["MESH_KAFKA_OAUTH_PROVIDER"] == "msk-iam"
    assert "MESH_KAFKA_OAUTH_PROVIDER" in resources["AuthorizedGatewayFunction"][
        "Properties"]["Environment"]["Variables"]


def test_msk_scram_takes_amazonmsk_secrets() -> None:
    deploy = DeploySettings(kafka_access="msk-scram", msk_cluster_arn=CLUSTER_ARN)
    mapping = render(deploy=deploy)[services.mapping_id("inventory")]["Properties"]
    assert mapping["EventSourceArn"] == CLUSTER_ARN
    [scram] = mapping["SourceAccessConfigurations"]
    assert scram["Type"] == "SASL_SCRAM_512_AUTH"
    assert scram["URI"]["Fn::Sub"].endswith(":secret:AmazonMSK_meshgate_inventory")
    [policy] = render(deploy=deploy)[services.role_id("inventory")]["Properties"]["Policies"]
    [kms] = [s for s in policy["PolicyDocument"]["Statement"] if s["Action"] == "kms:Decrypt"]
    assert kms["Condition"]["StringEquals"]["kms:ViaService"] == {
        "Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"}
    with pytest.raises(DeploySettingsInvalid, match="AmazonMSK_"):
        DeploySettings.resolve({}, kafka_access="msk-scram", msk_cluster_arn=CLUSTER_ARN,
                               scram_secret_name="/{stack}/{service}")


def test_the_optional_msk_serverless_cluster() -> None:
    deploy = DeploySettings(kafka_access="msk-iam", create_cluster=True,
                            vpc_id="vpc-0abc1234", subnet_ids=SUBNETS)
    resources = render(deploy=deploy)
    made = resources[kafka_access.CLUSTER_ID]
    assert made["Type"] == "AWS::MSK::ServerlessCluster"
    assert made["Properties"]["ClientAuthentication"] == {"Sasl": {"Iam": {"Enabled": True}}}
    assert resources[services.mapping_id("orders")]["Properties"]["EventSourceArn"] == {
        "Ref": kafka_access.CLUSTER_ID}
    group = {"Fn::GetAtt": [kafka_access.CLUSTER_SECURITY_GROUP_ID, "GroupId"]}
    assert resources["GatewayFunction"]["Properties"]["VpcConfig"]["SecurityGroupIds"] == [group]
    ingress = resources[cluster.INGRESS_ID]["Properties"]
    assert (ingress["FromPort"], ingress["SourceSecurityGroupId"]) == (9098, group)
    without = render(deploy=DeploySettings())
    assert kafka_access.CLUSTER_ID not in without


@pytest.mark.parametrize(("values", "message"), [
    ({"create_cluster": True}, "IAM"),
    ({"kafka_access": "msk-iam"}, "msk_cluster_arn"),
    ({"kafka_access": "msk-iam", "create_cluster": True}, "two subnet_ids"),
    ({"subnet_ids": "subnet-0a1b2c3d"}, "go together"),
    ({"batch_size": 0}, "BATCH_SIZE"),
    ({"on_failure": "mailto:x"}, "ON_FAILURE"),
    ({"vpc_id": "vpc-1"}, "VPC_ID"),
])
def test_impossible_settings_are_refused_on_one_line(values: dict[str, Any],
                                                     message: str) -> None:
    with pytest.raises(DeploySettingsInvalid) as raised:
        DeploySettings.resolve({}, **values)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_explicit_over_environment_over_default() -> None:
    env = {"MESHGATE_DEPLOY_BATCH_SIZE": "7", "MESHGATE_DEPLOY_SUBNET_IDS": " subnet-0a1b2c3d,"
           "subnet-1a2b3c4d", "MESHGATE_DEPLOY_SECURITY_GROUP_IDS": GROUPS[0]}
    assert DeploySettings.resolve({}).batch_size == 100
    from_env = DeploySettings.resolve(env)
    assert (from_env.batch_size, from_env.subnet_ids) == (7, SUBNETS)
    assert DeploySettings.resolve(env, batch_size=9).batch_size == 9


def test_subsets_and_new_services_come_from_the_policy(tmp_path: Path) -> None:
    """A copy of the project's policy with a canary subset of orders and a service without
    handlers: one function and mapping per subset, nothing for the handler-less service."""
    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    mesh_yaml = tmp_path / "policies" / "mesh.yaml"
    document = yaml.safe_load(mesh_yaml.read_text())
    document["services"]["orders"]["subsets"] = ["", "canary"]
    document["topics"]["orders.canary.requests"] = {"partitions": 1}
    document["services"]["ghost"] = {"operations": ["ghost.haunt"]}
    document["topics"]["ghost.requests"] = {"partitions": 1}
    document["access"]["ghost"] = {"produce": ["mesh.replies"]}
    mesh_yaml.write_text(yaml.safe_dump(document))
    for service in EXPECTED:
        (tmp_path / "functions" / service).mkdir(parents=True)
        (tmp_path / "functions" / service / "service.py").write_text("")
    settings = AWS.model_copy(update={"root": tmp_path})
    resources = render(settings)
    canary = resources[services.mapping_id("orders", "canary")]["Properties"]
    assert canary["Topics"] == ["orders.canary.requests"]
    assert canary["SelfManagedKafkaEventSourceConfig"]["ConsumerGroupId"] == \
        "orders.canary-lambda"
    env = resources[services.function_id("orders", "canary")]["Properties"]["Environment"]
    assert env["Variables"][services.SUBSET_ENV] == "canary"
    assert "GhostEventsFunction" not in resources


def test_the_emulator_gets_the_same_functions_and_inert_mappings() -> None:
    """The emulator accepts Kafka mappings in a stack and never polls Kafka (they are inert
    there); it refuses AWS::MSK::ServerlessCluster, which only an AWS deploy renders."""
    resources = render(Settings())
    for service in EXPECTED:
        assert services.function_id(service) in resources
        assert services.mapping_id(service) in resources


def test_the_msk_iam_token_signer_is_vendored_only_where_a_kafka_client_needs_it() -> None:
    from infra.stack.functions import AUTHORIZER, MSK_IAM_REQUIREMENTS, for_access

    for spec in (GATEWAY, SERVICE_EVENTS):
        assert set(MSK_IAM_REQUIREMENTS) <= set(for_access(spec, msk_iam=True).requirements)
        assert for_access(spec, msk_iam=False) == spec
    assert for_access(AUTHORIZER, msk_iam=True) == AUTHORIZER  # no Kafka client
