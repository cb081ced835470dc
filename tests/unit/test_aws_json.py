"""``functions.shared.aws_json``: SigV4 equal to botocore's, binary attribute values on the
wire, errors and retries as botocore shapes them (the client against the emulator:
tests/integration, every DynamoDB store)."""

from __future__ import annotations

import binascii
import datetime
import random
import string
from typing import Any
from unittest import mock

import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from functions.shared.aws_json.attribute_values import from_wire, to_wire
from functions.shared.aws_json.json_client import (
    BACKOFF_BASE_S,
    attempts_of,
    backoff_s,
    code_of,
    error_response,
    retriable_answer,
)
from functions.shared.aws_json.sigv4 import (
    Credentials,
    SigningKeys,
    derive_signing_key,
    signed_headers,
)

HOST = "dynamodb.eu-west-1.amazonaws.com"


def botocore_authorization(body: bytes, target: str, moment: datetime.datetime,
                           credentials: Credentials, region: str, host: str) -> str:
    request = AWSRequest(method="POST", url=f"https://{host}/", data=body,
                         headers={"Content-Type": "application/x-amz-json-1.0",
                                  "X-Amz-Target": target})
    signer = botocore.auth.SigV4Auth(
        BotoCredentials(credentials.access_key, credentials.secret_key, credentials.token),
        "dynamodb", region)

    frozen = moment.astimezone(datetime.UTC).replace(tzinfo=None)
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=frozen):
        signer.add_auth(request)
    return str(request.headers["Authorization"])


@pytest.mark.parametrize("seed", range(25))
def test_the_signature_is_the_one_botocore_computes(seed: int) -> None:
    rng = random.Random(seed)
    moment = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(
        seconds=rng.randrange(400 * 86400))
    credentials = Credentials(
        "AKIA" + "".join(rng.choices(string.ascii_uppercase, k=16)),
        "".join(rng.choices(string.ascii_letters + string.digits + "/+", k=40)),
        None if seed % 2 else "".join(rng.choices(string.ascii_letters, k=rng.randrange(20, 300))))
    region = rng.choice(["us-east-1", "eu-west-1", "ap-southeast-2"])
    host = rng.choice([HOST, "127.0.0.1:4566", "localhost:8000"])
    body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 500)))
    target = "DynamoDB_20120810." + rng.choice(["PutItem", "GetItem", "UpdateItem"])
    amz_date = moment.strftime("%Y%m%dT%H%M%SZ")
    headers = signed_headers(
        host=host, target=target, content_type="application/x-amz-json-1.0", body=body,
        amz_date=amz_date, region=region, service="dynamodb", credentials=credentials,
        signing_key=derive_signing_key(credentials.secret_key, amz_date[:8], region,
                                       "dynamodb"))
    assert headers["authorization"] == botocore_authorization(body, target, moment, credentials,
                                                              region, host)
    assert headers["x-amz-date"] == amz_date
    assert ("x-amz-security-token" in headers) == (credentials.token is not None)


def test_the_derived_key_is_kept_for_its_day_only() -> None:
    keys = SigningKeys()
    first = keys.get("secret", "20261205", "us-east-1", "dynamodb")
    assert keys.get("secret", "20261205", "us-east-1", "dynamodb") is first
    assert keys.get("secret", "20261206", "us-east-1", "dynamodb") == derive_signing_key(
        "secret", "20261206", "us-east-1", "dynamodb") != first
    assert keys.get("other", "20261206", "us-east-1", "dynamodb") != first


def test_binary_values_travel_as_base64_and_come_back_as_bytes_at_any_depth() -> None:
    item = {"id": {"S": "k"}, "result": {"B": b"\x00\xffok"}, "n": {"N": "1.5"},
            "set": {"BS": [b"a", b"\x01"]},
            "nested": {"M": {"inner": {"L": [{"B": b"deep"}, {"S": "text"}]}}}}
    wire = to_wire({"TableName": "t", "Item": item,
                    "ExpressionAttributeValues": {":v": {"B": b"cond"}}})
    assert wire["Item"]["result"] == {"B": "AP9vaw=="}
    assert wire["Item"]["set"] == {"BS": ["YQ==", "AQ=="]}
    assert wire["Item"]["nested"]["M"]["inner"]["L"][0] == {"B": "ZGVlcA=="}
    assert wire["ExpressionAttributeValues"] == {":v": {"B": "Y29uZA=="}}
    assert wire["TableName"] == "t"
    assert wire["Item"]["n"] == {"N": "1.5"}
    assert from_wire({"Attributes": wire["Item"]})["Attributes"] == item
    assert from_wire({"Items": [wire["Item"]]})["Items"] == [item]
    assert to_wire({"Item": {"s": {"B": "text"}}})["Item"]["s"] == {"B": "dGV4dA=="}


def test_a_value_that_is_not_base64_is_refused() -> None:
    with pytest.raises(binascii.Error, match="base64"):
        from_wire({"Item": {"x": {"B": "not base64!"}}})


def test_an_error_body_becomes_the_response_botocore_raises_with() -> None:
    body: dict[str, Any] = {
        "__type": "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException",
        "message": "The conditional request failed",
        "Item": {"id": {"S": "k"}, "result": {"B": "b2s="}}}
    response = error_response(400, body, "REQ1", from_wire)  # DynamoDB's modeled members
    assert response["Error"] == {"Code": "ConditionalCheckFailedException",
                                 "Message": "The conditional request failed"}
    assert response["ResponseMetadata"] == {"HTTPStatusCode": 400, "RequestId": "REQ1"}
    assert response["Item"] == {"id": {"S": "k"}, "result": {"B": b"ok"}}
    # another service's members are left as they are (no attribute values there)
    assert error_response(400, body, "REQ1")["Item"]["result"] == {"B": "b2s="}
    assert code_of("ThrottlingException") == "ThrottlingException"
    assert error_response(500, {"Message": "boom"}, None)["Error"] == {"Code": "",
                                                                     "Message": "boom"}


def test_throttling_and_5xx_are_retried_refusals_are_not() -> None:
    assert retriable_answer(400, "ProvisionedThroughputExceededException")
    assert retriable_answer(400, "ThrottlingException")
    assert retriable_answer(503, "")
    assert not retriable_answer(400, "ConditionalCheckFailedException")
    assert not retriable_answer(400, "ValidationException")


def test_backoff_is_full_jitter_doubling_from_50_ms() -> None:
    assert backoff_s(1, lambda: 1.0) == BACKOFF_BASE_S
    assert backoff_s(3, lambda: 1.0) == 4 * BACKOFF_BASE_S
    assert backoff_s(40, lambda: 1.0) == 20.0
    assert backoff_s(2, lambda: 0.0) == 0.0


def test_attempts_are_counted_as_botocore_counts_them() -> None:
    assert attempts_of({"mode": "standard", "total_max_attempts": 4}) == 4
    assert attempts_of({"max_attempts": 3}) == 4  # max_attempts counts retries
    assert attempts_of({"mode": "standard"}) == 3
    assert attempts_of({"total_max_attempts": 0}) == 1
