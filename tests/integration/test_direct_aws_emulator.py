"""The direct clients on the REAL AWS emulator (issue 15, cold start): a function whose
environment gives endpoint, region and credentials (a Lambda's, a local worker's) reads its
secrets, parameters and items without a botocore session, and reads exactly what botocore
reads, field by field. The deployed gateway runs on them: ``tests/e2e``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from functions.gateway.auth.keys_table import api_keys_table
from functions.shared.aws_json.clients import DirectSecretsManager, DirectSsm, aws_client
from functions.shared.aws_json.dynamodb_client import FastDynamoDB
from functions.shared.dynamodb import LazyDynamoDB
from infra.deploy.aws import client as boto3_client
from infra.settings import Settings
from tests.support import scratch_table

pytestmark = pytest.mark.integration
# What a caller reads of each answer (the request id and dates differ call by call).
SECRET_FIELDS = ("ARN", "Name", "VersionId", "SecretString", "SecretBinary", "VersionStages")
PARAMETER_FIELDS = ("Name", "Type", "Value", "Version", "ARN", "DataType")


@pytest.fixture
def lambda_like(infra_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This process's environment as the deploy gives a function on the emulator."""
    env = {"AWS_ENDPOINT_URL": str(infra_settings.endpoint_url), "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": infra_settings.region}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def secrets(infra_settings: Settings) -> Iterator[tuple[Any, list[str]]]:
    client = boto3_client(infra_settings, "secretsmanager")
    names: list[str] = []
    yield client, names
    for name in names:
        client.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)


def _fields(answer: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {name: answer[name] for name in names if name in answer}


def test_secrets_read_as_botocore_reads_them(lambda_like: dict[str, str],
                                             secrets: tuple[Any, list[str]]) -> None:
    boto, names = secrets
    binary, text = f"itest-direct-{uuid.uuid4().hex[:8]}", f"itest-direct-{uuid.uuid4().hex[:8]}"
    boto.create_secret(Name=binary, SecretBinary=b"\x00\xffsigning-key")
    boto.create_secret(Name=text, SecretString='{"k": "v"}')
    names += [binary, text]
    direct = aws_client("secretsmanager")
    assert isinstance(direct, DirectSecretsManager)
    for name in (binary, text):
        mine = direct.get_secret_value(SecretId=name)
        theirs = boto.get_secret_value(SecretId=name)
        assert _fields(mine, SECRET_FIELDS) == _fields(theirs, SECRET_FIELDS)
        assert mine["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert direct.get_secret_value(SecretId=binary)["SecretBinary"] == b"\x00\xffsigning-key"
    with pytest.raises(ClientError) as refused:
        direct.get_secret_value(SecretId=f"itest-no-such-{uuid.uuid4().hex[:8]}")
    assert refused.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_parameters_read_as_botocore_reads_them(lambda_like: dict[str, str],
                                                infra_settings: Settings) -> None:
    boto = boto3_client(infra_settings, "ssm")
    name = f"/itest/direct/{uuid.uuid4().hex[:8]}"
    boto.put_parameter(Name=name, Type="String", Value='{"orders.create": {}}')
    try:
        direct = aws_client("ssm")
        assert isinstance(direct, DirectSsm)
        mine = direct.get_parameter(Name=name)["Parameter"]
        assert _fields(mine, PARAMETER_FIELDS) == _fields(
            boto.get_parameter(Name=name)["Parameter"], PARAMETER_FIELDS)
        assert mine["Value"] == '{"orders.create": {}}'
        # any other call is botocore's, made on first use with the same way
        assert direct.describe_parameters(
            ParameterFilters=[{"Key": "Name", "Values": [name]}])["Parameters"][0]["Name"] == name
    finally:
        boto.delete_parameter(Name=name)


def test_dynamodb_items_without_a_botocore_client(lambda_like: dict[str, str],
                                                  dynamodb: Any) -> None:
    with scratch_table(dynamodb, "direct", api_keys_table()) as table:
        client = LazyDynamoDB().get()
        assert isinstance(client, FastDynamoDB)
        item = {"key_id": {"S": "k1"}, "blob": {"B": b"\x00\x01"}, "n": {"N": "7"}}
        client.put_item(TableName=table, Item=item)
        assert client.get_item(TableName=table, Key={"key_id": {"S": "k1"}})["Item"] == item
        assert dynamodb.get_item(TableName=table, Key={"key_id": {"S": "k1"}})["Item"] == item
        with pytest.raises(ClientError) as failed:
            client.put_item(TableName=table, Item=item,
                            ConditionExpression="attribute_not_exists(key_id)")
        assert failed.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
        assert client._botocore.made is None  # four item calls, no botocore client made
