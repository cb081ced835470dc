"""Change-set deploys against the emulator, on a small stack of the test's own."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from infra.deploy import aws as deploy
from infra.errors import DeployFailed
from infra.settings import Settings

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
