"""``FastDynamoDB``'s HTTP behaviour against a scripted local server (real sockets): what a
refusal, throttling, a wrong CRC32, a closed idle connection and a dead endpoint become.
Its calls against the AWS emulator are the DynamoDB stores' integration tests."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import (
    ChecksumError,
    ClientError,
    EndpointConnectionError,
    HTTPClientError,
)

from functions.shared.aws_json.dynamodb_client import FAST_CLIENT_ENV, FastDynamoDB
from functions.shared.dynamodb import (
    ConditionFailed,
    LazyDynamoDB,
    fast_client_wanted,
    translated,
)
from proof.procs import free_port
from proof.serving import serving

# status (0: close the connection unanswered), body (or a function of the requests seen so
# far), correct CRC32
Reply = tuple[int, dict[str, Any] | bytes | Callable[[list[dict[str, Any]]], dict[str, Any]],
              bool]


class Scripted(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.replies: list[Reply] = []
        self.seen: list[dict[str, Any]] = []
        self.close_after_reply = False


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Scripted

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.server.seen.append({"target": self.headers["x-amz-target"],
                                 "authorization": self.headers["authorization"],
                                 "headers": {k.lower(): v for k, v in self.headers.items()},
                                 "body": json.loads(body)})
        status, answer, good_crc = self.server.replies.pop(0)
        if status == 0:  # the request arrived; its answer is lost with the connection
            self.close_connection = True
            return
        data = answer if isinstance(answer, bytes) else json.dumps(
            answer(self.server.seen) if callable(answer) else answer).encode()
        self.send_response(status)
        self.send_header("content-type", "application/x-amz-json-1.0")
        self.send_header("content-length", str(len(data)))
        self.send_header("x-amz-crc32", str(zlib.crc32(data) + (0 if good_crc else 1)))
        self.send_header("x-amzn-requestid", f"req-{len(self.server.seen)}")
        self.end_headers()
        self.wfile.write(data)
        if self.server.close_after_reply:
            self.close_connection = True

    def log_message(self, *_: Any) -> None:
        pass


@contextmanager
def running_server_on(port: int) -> Iterator[Scripted]:
    with serving(Scripted(port)) as scripted:
        yield scripted


@contextmanager
def running_server() -> Iterator[Scripted]:
    with running_server_on(free_port()) as scripted:
        yield scripted


@pytest.fixture
def server() -> Iterator[Scripted]:
    with running_server() as scripted:
        yield scripted


def client_for(port: int, attempts: int = 3) -> FastDynamoDB:
    botocore_client = botocore.session.get_session().create_client(
        "dynamodb", endpoint_url=f"http://127.0.0.1:{port}", region_name="eu-west-1",
        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret",
        config=Config(connect_timeout=1, read_timeout=2,
                      retries={"mode": "standard", "total_max_attempts": attempts}))
    fast = FastDynamoDB.wrap(botocore_client)
    assert isinstance(fast, FastDynamoDB)
    return FastDynamoDB.of_client(botocore_client, sleep=lambda _: None)


def without_metadata(answer: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in answer.items() if name != "ResponseMetadata"}


def test_an_answer_carries_botocore_s_response_metadata(server: Scripted) -> None:
    server.replies = [(200, {}, True)]
    metadata = client_for(server.server_port).put_item(TableName="t", Item={})[
        "ResponseMetadata"]
    assert metadata["HTTPStatusCode"] == 200
    assert metadata["RetryAttempts"] == 0
    assert metadata["HTTPHeaders"]["content-type"] == "application/x-amz-json-1.0"
    assert metadata["RequestId"] == "req-1"


def test_an_item_call_is_signed_json_and_binary_values_come_back_as_bytes(
        server: Scripted) -> None:
    server.replies = [(200, {"Item": {"id": {"S": "k"}, "result": {"B": "b2s="}}}, True)]
    answer = client_for(server.server_port).get_item(TableName="t", Key={"id": {"S": "k"}})
    assert without_metadata(answer) == {"Item": {"id": {"S": "k"}, "result": {"B": b"ok"}}}
    (request,) = server.seen
    assert request["target"] == "DynamoDB_20120810.GetItem"
    assert request["body"] == {"TableName": "t", "Key": {"id": {"S": "k"}}}
    assert request["authorization"].startswith(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")


def test_a_failed_condition_is_a_client_error_with_the_old_item(server: Scripted) -> None:
    server.replies = [(400, {"__type": "com.amazonaws.dynamodb.v20120810#"
                             "ConditionalCheckFailedException", "message": "failed",
                             "Item": {"result": {"B": "b2s="}}}, True)]
    client = client_for(server.server_port)
    with pytest.raises(ConditionFailed) as failed, translated(
            "claim", retriable=RuntimeError, refused=ValueError):
        client.put_item(TableName="t", Item={"id": {"S": "k"}})
    assert failed.value.item == {"result": {"B": b"ok"}}
    assert len(server.seen) == 1  # a refusal is not retried


def test_throttling_is_retried_until_it_passes(server: Scripted) -> None:
    throttled = {"__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException",
                 "message": "slow down"}
    server.replies = [(400, throttled, True), (400, throttled, True), (200, {}, True)]
    answer = client_for(server.server_port).put_item(TableName="t", Item={})
    assert answer["ResponseMetadata"]["RetryAttempts"] == 2  # as botocore counts them
    assert without_metadata(answer) == {}
    assert len(server.seen) == 3


def test_throttling_past_the_attempts_is_raised_as_botocore_would(server: Scripted) -> None:
    throttled = {"__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException",
                 "message": "slow down"}
    server.replies = [(400, throttled, True)] * 2
    with pytest.raises(ClientError, match="ThrottlingException") as raised:
        client_for(server.server_port, attempts=2).put_item(TableName="t", Item={})
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_a_body_whose_crc32_is_wrong_is_asked_again_then_refused(server: Scripted) -> None:
    server.replies = [(200, {}, False), (200, {"Attributes": {}}, True)]
    assert without_metadata(client_for(server.server_port).update_item(TableName="t")) == {
        "Attributes": {}}
    server.replies = [(200, {}, False)] * 3
    with pytest.raises(ChecksumError):
        client_for(server.server_port).delete_item(TableName="t", Key={})


def test_an_idle_connection_the_server_closed_is_replaced_without_an_attempt(
        server: Scripted) -> None:
    client = client_for(server.server_port, attempts=1)
    server.close_after_reply = True
    server.replies = [(200, {}, True), (200, {"Item": {}}, True)]
    client.put_item(TableName="t", Item={})
    assert without_metadata(client.get_item(TableName="t", Key={})) == {"Item": {}}
    assert len(server.seen) == 2


def test_when_every_idle_connection_was_closed_the_retry_takes_a_new_one() -> None:
    """The emulator closes idle connections after a while: a pool of several goes stale at
    once, and the one free retry must not take another of them."""
    port = free_port()
    with running_server_on(port) as first:
        client = client_for(port, attempts=1)
        first.replies = [(200, {}, True)]
        client.put_item(TableName="t", Item={})
        pool = client._json.connections
        idle = [pool.take()[0], pool.take()[0]]  # the used one and a second, connected
        for connection in idle:
            pool.give_back(connection)
    with running_server_on(port) as second:  # the first server's connections are dead
        second.replies = [(200, {"Item": {}}, True)]
        assert without_metadata(client.get_item(TableName="t", Key={})) == {"Item": {}}
        assert len(second.seen) == 1


def test_a_page_that_is_not_json_is_a_client_error_or_a_parser_error(
        server: Scripted) -> None:
    page = b"<html><body>502 Bad Gateway</body></html>"
    server.replies = [(502, page, True)] * 2
    with pytest.raises(ClientError, match="502 Bad Gateway") as raised:
        client_for(server.server_port, attempts=2).put_item(TableName="t", Item={})
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 502
    assert len(server.seen) == 2  # a 5xx is retried
    server.replies = [(200, b"[1, 2]", True)]
    with pytest.raises(HTTPClientError, match="not a JSON object"):
        client_for(server.server_port).get_item(TableName="t", Key={})


def test_an_endpoint_that_is_not_there_is_a_connection_error() -> None:
    client = client_for(free_port(), attempts=2)
    with pytest.raises(EndpointConnectionError):
        client.put_item(TableName="t", Item={})


def test_a_proxy_keeps_botocore_on_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    botocore_client = botocore.session.get_session().create_client(
        "dynamodb", region_name="eu-west-1", aws_access_key_id="a", aws_secret_access_key="b")
    assert FastDynamoDB.wrap(botocore_client) is botocore_client


def test_explicit_choice_over_environment_over_default() -> None:
    assert fast_client_wanted(None, {}) is True
    assert fast_client_wanted(None, {FAST_CLIENT_ENV: "0"}) is False
    assert fast_client_wanted(True, {FAST_CLIENT_ENV: "0"}) is True
    assert fast_client_wanted(False, {}) is False


def test_the_lazy_client_is_the_fast_one_unless_turned_off() -> None:
    args = {"endpoint_url": "http://127.0.0.1:1", "region_name": "eu-west-1",
            "aws_access_key_id": "a", "aws_secret_access_key": "b"}
    assert isinstance(LazyDynamoDB(args).get(), FastDynamoDB)
    plain = LazyDynamoDB(args, fast=False).get()
    assert not isinstance(plain, FastDynamoDB)
    assert plain.meta.service_model.service_name == "dynamodb"
