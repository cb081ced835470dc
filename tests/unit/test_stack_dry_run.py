"""``meshgate template`` / ``meshgate deploy --dry-run`` with no emulator or account: the
template is printed, the changes are said not computed; and the comparison itself (pure)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from infra.cli.main import main, run
from infra.deploy import dry_run
from infra.stack.parts import services


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def unreachable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("MESHGATE_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("MESHGATE_LOCAL_DIR", str(tmp_path))  # no local keyring either
    return endpoint


def test_template_prints_the_stack_with_nothing_reachable(
        unreachable: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["template"]) == 0
    out, err = capsys.readouterr()
    template = json.loads(out)
    assert template["AWSTemplateFormatVersion"] == "2010-09-09"
    assert services.function_id("orders") in template["Resources"]
    assert services.mapping_id("inventory") in template["Resources"]
    assert f"changes: not computed: {unreachable} does not answer" in err
    key = template["Resources"]["GatewayFunction"]["Properties"]["Code"]["S3Key"]
    assert key.endswith(f"-{dry_run.PLACEHOLDER_SHA[:20]}.zip")  # unbuilt: it says so


def test_an_aws_template_renders_without_credentials(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MESHGATE_ENDPOINT_URL", "aws")
    monkeypatch.setenv("MESHGATE_LOCAL_DIR", str(tmp_path))
    monkeypatch.setenv("MESHGATE_DEPLOY_KAFKA_ACCESS", "msk-iam")
    monkeypatch.setenv("MESHGATE_DEPLOY_MSK_CLUSTER_ARN",
                       "arn:aws:kafka:us-east-1:123456789012:cluster/mesh/abc-1")
    assert run(["template", "--no-changes"]) == 0
    out, err = capsys.readouterr()
    mapping = json.loads(out)["Resources"][services.mapping_id("orders")]["Properties"]
    assert mapping["EventSourceArn"] == "arn:aws:kafka:us-east-1:123456789012:cluster/mesh/abc-1"
    assert err == ""


def test_a_refused_deploy_setting_is_one_error_line(
        monkeypatch: pytest.MonkeyPatch, unreachable: str) -> None:
    monkeypatch.setenv("MESHGATE_DEPLOY_CREATE_CLUSTER", "true")
    with pytest.raises(SystemExit) as exited:
        main(["template"])
    assert exited.value.code == 1


def test_compare_names_added_removed_and_modified_resources() -> None:
    deployed = {"A": {"Type": "AWS::SQS::Queue", "Properties": {"DelaySeconds": 1}},
                "B": {"Type": "AWS::SQS::Queue"},
                "C": {"Type": "AWS::SNS::Topic"}}
    rendered = {"A": {"Type": "AWS::SQS::Queue", "Properties": {"DelaySeconds": 2}},
                "B": {"Type": "AWS::SQS::Queue"},
                "D": {"Type": "AWS::SNS::Topic"}}
    changes = dry_run.compare(rendered, deployed)
    assert changes == dry_run.Changes(added=("D",), removed=("C",), modified=("A",))
    assert changes.lines(rendered, deployed) == [
        "Add D (AWS::SNS::Topic)", "Modify A (AWS::SQS::Queue: DelaySeconds)",
        "Remove C (AWS::SNS::Topic)"]
    assert dry_run.compare(rendered, rendered).empty


def test_aws_without_credentials_is_said_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role either
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("MESHGATE_ENDPOINT_URL", "aws")
    monkeypatch.setenv("MESHGATE_LOCAL_DIR", str(tmp_path))
    assert run(["template"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["Resources"]
    assert err.strip() == ("changes: not computed: no credentials for AWS; the template above "
                           "is what a deploy would send")
