"""infra.deploy.aws: the pure parts (change descriptions, results, error translation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from infra.deploy.aws import DeployResult, aws_errors, describe_change
from infra.errors import DeployFailed, InfraError, NotReachable
from infra.settings import Settings


def _change(action: str, replacement: str | None = None) -> dict[str, Any]:
    rc: dict[str, Any] = {
        "Action": action,
        "LogicalResourceId": "GatewayFunction",
        "ResourceType": "AWS::Lambda::Function",
    }
    if replacement is not None:
        rc["Replacement"] = replacement
    return {"Type": "Resource", "ResourceChange": rc}


def test_describe_added_resource() -> None:
    assert describe_change(_change("Add")) == "Add GatewayFunction (AWS::Lambda::Function)"


def test_describe_replacement() -> None:
    assert describe_change(_change("Modify", "True")) == (
        "Modify GatewayFunction (AWS::Lambda::Function) (replacement)"
    )


@pytest.mark.parametrize("replacement", ["False", "Conditional"])
def test_describe_modify_without_certain_replacement(replacement: str) -> None:
    assert describe_change(_change("Modify", replacement)) == (
        "Modify GatewayFunction (AWS::Lambda::Function)"
    )


def test_deploy_result_changed() -> None:
    assert DeployResult(("Add X (T)",), {}).changed
    assert not DeployResult((), {"ApiId": "a"}).changed


def test_unreachable_endpoint_becomes_not_reachable(tmp_path: Path) -> None:
    settings = Settings(root=tmp_path, endpoint_url="http://127.0.0.1:4566")
    with pytest.raises(NotReachable) as info, aws_errors(settings, "upload"):
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:4566")
    assert "http://127.0.0.1:4566" in info.value.what
    assert info.value.retriable is True


def test_client_error_becomes_deploy_failed(tmp_path: Path) -> None:
    error = ClientError({"Error": {"Code": "ValidationError", "Message": "bad"}}, "CreateStack")
    with pytest.raises(DeployFailed) as info, aws_errors(Settings(root=tmp_path), "deploy"):
        raise error
    assert info.value.what.startswith("deploy:")
    assert isinstance(info.value, InfraError)
    assert info.value.__cause__ is error


def test_other_errors_pass_through(tmp_path: Path) -> None:
    with pytest.raises(KeyError), aws_errors(Settings(root=tmp_path), "deploy"):
        raise KeyError("x")
