"""The direct clients (``functions.shared.aws_json.clients``, ``FastDynamoDB.direct``) against
a scripted local server (real sockets): the calls a function makes go out signed without a
botocore client, come back as botocore returns them, fail as botocore fails, and anything
else is botocore's, made on first use. Against the AWS emulator: the stores' and sources'
integration tests, and ``tests/integration/test_direct_aws_emulator.py``."""

from __future__ import annotations

import base64
import sys
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from bus.security.keys import InvalidKey
from bus.traffic.table import TrafficSourceError
from functions.shared.aws_json.clients import (
    DirectSecretsManager,
    DirectSsm,
    aws_client,
    botocore_default_timeouts,
)
from functions.shared.aws_json.dynamodb_client import FastDynamoDB
from functions.shared.aws_json.json_client import BOTOCORE_DEFAULTS, Timeouts
from functions.shared.dynamodb import LazyDynamoDB
from functions.shared.secrets import SecretsManagerSource
from functions.shared.ssm_traffic import SsmTrafficSource
from proof.procs import free_port
from tests.support import aws_environment
from tests.unit.test_aws_json_client import Scripted, running_server, without_metadata

TRACE = "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"


def env_for(port: int, **extra: str) -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret",
            "AWS_DEFAULT_REGION": "eu-west-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            **extra}


@pytest.fixture
def server() -> Any:
    with running_server() as scripted:
        yield scripted


@pytest.fixture
def lambda_env(server: Scripted, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The process's environment as a Lambda's, pointed at the scripted server."""
    env = env_for(server.server_port, AWS_LAMBDA_FUNCTION_NAME="gw", _X_AMZN_TRACE_ID=TRACE)
    aws_environment(monkeypatch, env)
    return env


def test_a_secret_is_read_without_botocore_and_its_binary_comes_back_as_bytes(
        server: Scripted, lambda_env: dict[str, str]) -> None:
    server.replies = [(200, {"Name": "s", "SecretBinary": base64.b64encode(b"\x00key").decode()},
                       True), (200, {"Name": "t", "SecretString": "text"}, True)]
    source = SecretsManagerSource()
    assert source.get("s") == b"\x00key"
    assert source.get("t") == b"text"
    assert isinstance(source._client, DirectSecretsManager)
    first = server.seen[0]
    assert first["target"] == "secretsmanager.GetSecretValue"
    assert first["headers"]["content-type"] == "application/x-amz-json-1.1"
    assert first["headers"]["x-amzn-trace-id"] == TRACE  # botocore's recursion detection
    assert first["body"] == {"SecretId": "s"}
    assert first["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/secretsmanager/aws4_request" in first["authorization"]


def test_a_missing_secret_is_refused_and_not_retriable(
        server: Scripted, lambda_env: dict[str, str]) -> None:
    server.replies = [(400, {"__type": "ResourceNotFoundException",
                             "Message": "Secrets Manager can't find the specified secret."},
                       True)]
    with pytest.raises(InvalidKey, match="ResourceNotFoundException") as raised:
        SecretsManagerSource().get("nope")
    assert raised.value.retriable is False
    assert isinstance(raised.value.__cause__, ClientError)


def test_throttling_is_retried_and_an_outage_is_retriable(
        server: Scripted, lambda_env: dict[str, str]) -> None:
    throttled = {"__type": "ThrottlingException", "Message": "Rate exceeded"}
    server.replies = [(400, throttled, True), (200, {"SecretString": "ok"}, True)]
    client = aws_client("secretsmanager", timeouts=Timeouts(1, 1, 2), env=lambda_env)
    client.json._sleep = lambda _: None
    assert SecretsManagerSource(client=client).get("s") == b"ok"
    gone = aws_client("secretsmanager", {"endpoint_url": f"http://127.0.0.1:{free_port()}"},
                      timeouts=Timeouts(1, 1, 1), env=lambda_env)
    with pytest.raises(InvalidKey) as raised:
        SecretsManagerSource(client=gone).get("s")
    assert raised.value.retriable is True
    assert isinstance(raised.value.__cause__, EndpointConnectionError)


def test_a_parameter_is_read_without_botocore(server: Scripted,
                                              lambda_env: dict[str, str]) -> None:
    server.replies = [(200, {"Parameter": {"Name": "/p", "Value": '{"orders.create": {}}'}},
                       True),
                      (400, {"__type": "ParameterNotFound", "message": ""}, True)]
    source = SsmTrafficSource("/p")
    assert source.load() == {"orders.create": {}}
    assert isinstance(source._client, DirectSsm)
    assert server.seen[0]["target"] == "AmazonSSM.GetParameter"
    assert server.seen[0]["body"] == {"Name": "/p"}
    with pytest.raises(TrafficSourceError, match="ParameterNotFound") as raised:
        source.load()
    assert raised.value.retriable is False


def test_the_dynamodb_item_calls_make_no_botocore_client_and_other_calls_do(
        server: Scripted, lambda_env: dict[str, str]) -> None:
    server.replies = [(200, {"Item": {"id": {"S": "k"}, "v": {"B": "b2s="}}}, True)]
    client = LazyDynamoDB().get()
    assert isinstance(client, FastDynamoDB)
    answer = client.get_item(TableName="t", Key={"id": {"S": "k"}})
    assert without_metadata(answer) == {"Item": {"id": {"S": "k"}, "v": {"B": b"ok"}}}
    assert server.seen[0]["headers"]["x-amzn-trace-id"] == TRACE
    assert client._botocore.made is None  # no botocore client was needed
    assert client.meta.service_model.service_name == "dynamodb"  # made now, for `meta`
    assert client._botocore.made is not None
    assert client.meta.endpoint_url == lambda_env["AWS_ENDPOINT_URL"]
    # from now on what is registered on it runs, as for a wrapped client
    seen: list[str] = []
    client.meta.events.register("before-call.dynamodb.GetItem",
                                lambda **_: seen.append("hook"))
    server.replies = [(200, {}, True)]
    client.get_item(TableName="t", Key={"id": {"S": "k"}})
    assert seen == ["hook"]


def test_without_the_environment_s_way_the_client_is_botocore_s(
        monkeypatch: pytest.MonkeyPatch) -> None:
    aws_environment(monkeypatch, {})
    client = aws_client("ssm", {"region_name": "eu-west-1"})
    assert not isinstance(client, DirectSsm)
    assert client.meta.service_model.service_name == "ssm"
    assert client.meta.config.connect_timeout == 60  # botocore's own defaults, as before


def test_importing_the_gateway_imports_no_botocore_session() -> None:
    """The cold start's saving (issue 15): what the handler imports never reaches botocore's
    session, client or urllib3 (``botocore.exceptions`` alone is kept: the callers catch
    its types)."""
    import subprocess

    code = ("import sys, mangum, functions.gateway.wiring, functions.shared.key_reload; "
            "print(sorted(m for m in sys.modules if m.startswith(('botocore.session', "
            "'botocore.client', 'urllib3', 'botocore.httpsession'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(("env", "attempts"), [
    ({}, 3), ({"AWS_RETRY_MODE": "legacy"}, 5), ({"AWS_RETRY_MODE": "adaptive"}, 3),
    ({"AWS_MAX_ATTEMPTS": "7", "AWS_RETRY_MODE": "standard"}, 7)])
def test_without_a_config_the_direct_client_attempts_as_botocore_would(
        env: dict[str, str], attempts: int, monkeypatch: pytest.MonkeyPatch) -> None:
    assert botocore_default_timeouts(env).attempts == attempts
    aws_environment(monkeypatch, {**env, "AWS_DEFAULT_REGION": "eu-west-1"})
    # botocore's own client in the same environment counts the same (standard mode: 3
    # attempts, legacy: 5)
    client = aws_client("ssm", {"aws_access_key_id": "a", "aws_secret_access_key": "b"},
                        env={"AWS_ACCESS_KEY_ID": "x"})  # no route: botocore's
    retries = client.meta.config.retries or {}
    default = 5 if retries.get("mode") == "legacy" else 3
    assert retries.get("total_max_attempts", default) == attempts
    assert BOTOCORE_DEFAULTS.read_s == client.meta.config.read_timeout


def test_an_attempt_count_that_is_not_a_number_is_refused_as_botocore_refuses_it() -> None:
    with pytest.raises(ValueError, match="zero"):
        botocore_default_timeouts({"AWS_MAX_ATTEMPTS": "zero"})


def test_where_botocore_decides_the_item_calls_still_skip_its_pipeline(
        server: Scripted, monkeypatch: pytest.MonkeyPatch) -> None:
    """No direct route (here: a ``verify`` argument), so the botocore client is made first,
    and the fast item calls wrap it, its hooks and credentials included."""
    aws_environment(monkeypatch, {})
    client = LazyDynamoDB({"endpoint_url": f"http://127.0.0.1:{server.server_port}",
                           "region_name": "eu-west-1", "aws_access_key_id": "AKIDEXAMPLE",
                           "aws_secret_access_key": "secret", "verify": False}).get()
    assert isinstance(client, FastDynamoDB)
    assert client._botocore.made is not None  # botocore's, made before the first call
    server.replies = [(200, {"Item": {"id": {"S": "k"}}}, True)]
    answer = client.get_item(TableName="t", Key={"id": {"S": "k"}})
    assert without_metadata(answer) == {"Item": {"id": {"S": "k"}}}
    assert server.seen[0]["authorization"].startswith(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
