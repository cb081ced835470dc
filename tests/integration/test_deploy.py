"""Change-set deploys against the emulator, on a small stack of the test's own."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from infra.deploy import aws as deploy
from infra.deploy import dry_run, msk
from infra.errors import DeployFailed
from infra.settings import Settings
from infra.stack.parts import cluster

pytestmark = pytest.mark.integration


def parameter_template(value: str) -> str:
    return json.dumps({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {"Flag": {"Type": "AWS::SSM::Parameter",
                               "Properties": {"Type": "String", "Value": value}}},
        "Outputs": {"FlagName": {"Value": {"Ref": "Flag"}}},
    })


@pytest.fixture
def small_stack(infra_settings: Settings) -> Iterator[Settings]:
    settings = infra_settings.model_copy(update={"stack_name": f"itest-{uuid.uuid4().hex[:8]}"})
    yield settings
    deploy.client(settings, "cloudformation").delete_stack(StackName=settings.stack_name)


def test_create_then_no_change_then_modify(small_stack: Settings) -> None:
    said: list[str] = []
    created = deploy.deploy_template(small_stack, parameter_template("a"), said.append)
    assert created.changes == ("Add Flag (AWS::SSM::Parameter)",)
    assert "FlagName" in created.outputs

    unchanged = deploy.deploy_template(small_stack, parameter_template("a"), said.append)
    assert not unchanged.changed
    assert said[-1] == f"stack {small_stack.stack_name}: no changes"

    modified = deploy.deploy_template(small_stack, parameter_template("b"), said.append)
    assert [c.split(" ")[:2] for c in modified.changes] == [["Modify", "Flag"]]
    ssm = deploy.client(small_stack, "ssm")
    value = ssm.get_parameter(Name=modified.outputs["FlagName"])["Parameter"]["Value"]
    assert value == "b"


def test_a_refused_template_is_one_clear_error_and_changes_nothing(small_stack: Settings) -> None:
    broken = json.dumps({"AWSTemplateFormatVersion": "2010-09-09",
                         "Resources": {"X": {"Type": "AWS::Nope::Thing", "Properties": {}}}})
    with pytest.raises(DeployFailed) as raised:
        deploy.deploy_template(small_stack, broken, lambda _line: None)
    message = str(raised.value)
    assert "\n" not in message
    assert "Unrecognized resource types" in message
    assert deploy.stack_outputs(small_stack) is None


def test_the_dry_run_says_what_would_change_and_changes_nothing(small_stack: Settings) -> None:
    """``meshgate deploy --dry-run``'s comparison on the real emulator: against a deployed
    stack it names what a deploy would add, modify and remove; the stack, its template and
    its change sets are as they were."""
    deploy.deploy_template(small_stack, parameter_template("a"), lambda _line: None)
    cfn = deploy.client(small_stack, "cloudformation")
    before = cfn.get_template(StackName=small_stack.stack_name)["TemplateBody"]
    change_sets = cfn.list_change_sets(StackName=small_stack.stack_name).get("Summaries", [])
    rendered = json.loads(parameter_template("b"))
    rendered["Resources"]["Other"] = {"Type": "AWS::SSM::Parameter",
                                      "Properties": {"Type": "String", "Value": "new"}}
    said: list[str] = []
    changes = dry_run.report_changes(small_stack, rendered, said.append)
    assert changes == dry_run.Changes(added=("Other",), removed=(), modified=("Flag",))
    assert said[1:] == ["  Add Other (AWS::SSM::Parameter)",
                        "  Modify Flag (AWS::SSM::Parameter: Value)"]
    del rendered["Resources"]["Flag"]
    removed = dry_run.report_changes(small_stack, rendered, said.append)
    assert removed is not None
    assert removed.removed == ("Flag",)
    assert cfn.get_template(StackName=small_stack.stack_name)["TemplateBody"] == before
    assert cfn.list_change_sets(StackName=small_stack.stack_name).get(
        "Summaries", []) == change_sets  # none created
    ssm = deploy.client(small_stack, "ssm")
    name = deploy.stack_outputs(small_stack)["FlagName"]  # type: ignore[index]
    assert ssm.get_parameter(Name=name)["Parameter"]["Value"] == "a"


def test_the_dry_run_of_a_stack_not_deployed_says_so(small_stack: Settings) -> None:
    said: list[str] = []
    assert dry_run.report_changes(small_stack, json.loads(parameter_template("a")),
                                  said.append) is None
    assert said == [f"changes: no stack {small_stack.stack_name} at "
                    f"{small_stack.endpoint_url}: a deploy creates all 1 resources"]


def test_a_created_clusters_bootstrap_servers_are_read_back(infra_settings: Settings) -> None:
    """``meshgate deploy`` with ``create_cluster`` reads the cluster's IAM bootstrap servers
    (no CloudFormation attribute gives them): the adapter's call against the emulator's MSK
    API (a provisioned cluster: the emulator refuses MSK Serverless in a stack, and its MSK
    has no data plane, so the servers are placeholders)."""
    kafka = deploy.client(infra_settings, "kafka")
    name = f"itest-{uuid.uuid4().hex[:8]}"
    arn = kafka.create_cluster(
        ClusterName=name, KafkaVersion="3.6.0", NumberOfBrokerNodes=2,
        BrokerNodeGroupInfo={"InstanceType": "kafka.t3.small",
                             "ClientSubnets": ["subnet-0a1b2c3d", "subnet-1a2b3c4d"]},
    )["ClusterArn"]
    try:
        servers = msk.cluster_bootstrap(infra_settings, {cluster.OUTPUT: arn})
        assert servers is not None
        assert servers.endswith(":9098")  # MSK's SASL/IAM listener
        assert msk.cluster_bootstrap(infra_settings, {}) is None  # the stack made none
    finally:
        kafka.delete_cluster(ClusterArn=arn)
