"""infra.settings: explicit argument over MESHGATE_* environment over default."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from infra.settings import ROOT, Settings


def test_defaults() -> None:
    settings = Settings.resolve(env={})
    assert settings == Settings()
    assert settings.root == ROOT
    assert settings.endpoint_url == "http://127.0.0.1:4566"
    assert settings.is_local
    assert settings.lambda_python == "3.11"
    assert settings.build_dir == ROOT / "build"


def test_environment_over_default() -> None:
    settings = Settings.resolve(
        env={
            "MESHGATE_STACK_NAME": "staging",
            "MESHGATE_REGION": "eu-west-1",
            "MESHGATE_KAFKA_BOOTSTRAP": "kafka:9092",
            "MESHGATE_REQUEST_TIMEOUT_S": "20",
            "MESHGATE_ROOT": "/srv/meshgate",
            "MESH_SERVICE_NAME": "not ours",
        }
    )
    assert settings.stack_name == "staging"
    assert settings.region == "eu-west-1"
    assert settings.kafka_bootstrap == "kafka:9092"
    assert settings.request_timeout_s == 20.0
    assert settings.root == Path("/srv/meshgate")


def test_explicit_over_environment() -> None:
    env = {"MESHGATE_STACK_NAME": "from-env", "MESHGATE_REGION": "eu-west-1"}
    settings = Settings.resolve(env=env, stack_name="explicit")
    assert settings.stack_name == "explicit"
    assert settings.region == "eu-west-1"


def test_explicit_none_keeps_the_environment_value() -> None:
    settings = Settings.resolve(env={"MESHGATE_STACK_NAME": "from-env"}, stack_name=None)
    assert settings.stack_name == "from-env"


@pytest.mark.parametrize("value", ["aws", ""])
def test_endpoint_url_aws_or_empty_means_real_aws(value: str) -> None:
    settings = Settings.resolve(env={"MESHGATE_ENDPOINT_URL": value})
    assert settings.endpoint_url is None
    assert not settings.is_local


def test_endpoint_url_from_environment() -> None:
    settings = Settings.resolve(env={"MESHGATE_ENDPOINT_URL": "http://emulator:4566"})
    assert settings.endpoint_url == "http://emulator:4566"
    assert settings.is_local


def test_reads_os_environ_when_no_env_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHGATE_STACK_NAME", "os-env")
    assert Settings.resolve().stack_name == "os-env"


@pytest.mark.parametrize("value", ["0", "-1", "29", "soon"])
def test_request_timeout_must_fit_the_api(value: str) -> None:
    with pytest.raises(ValidationError):
        Settings.resolve(env={"MESHGATE_REQUEST_TIMEOUT_S": value})


def test_unknown_explicit_setting_is_refused() -> None:
    with pytest.raises(ValidationError):
        Settings.resolve(env={}, stack="typo")


def test_aws_client_args_local(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    args = Settings(region="us-west-2", endpoint_url="http://127.0.0.1:4566").aws_client_args()
    assert args == {
        "region_name": "us-west-2",
        "endpoint_url": "http://127.0.0.1:4566",
        "aws_access_key_id": "test",
        "aws_secret_access_key": "test",
    }


def test_aws_client_args_real_aws_uses_the_default_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "should-not-be-copied")
    args = Settings(region="us-west-2", endpoint_url=None).aws_client_args()
    assert args == {"region_name": "us-west-2"}


def test_local_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MESHGATE_LOCAL_DIR", raising=False)
    assert Settings(root=tmp_path).local_dir == tmp_path / ".local"
    monkeypatch.setenv("MESHGATE_LOCAL_DIR", str(tmp_path / "elsewhere"))
    assert Settings(root=tmp_path).local_dir == tmp_path / "elsewhere"


def test_explicit_endpoint_url_aws_means_real_aws() -> None:
    settings = Settings.resolve(
        env={"MESHGATE_ENDPOINT_URL": "http://127.0.0.1:4566"}, endpoint_url="aws"
    )
    assert settings.endpoint_url is None
