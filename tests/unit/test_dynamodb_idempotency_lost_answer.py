"""A claim whose answer was lost: the write landed, the connection dropped before its
answer, and the client's retry then fails its condition on the claim it made itself. The
store recognises its own token (random per claim) and holds the claim, instead of reading
it as another delivery's and waiting a whole lease for itself. Real sockets, a scripted
server (``tests.unit.test_aws_json_client``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from functions.shared.dynamodb_idempotency import DynamoDBIdempotencyStore
from tests.unit.test_aws_json_client import Scripted, running_server

NOW_MS = 1_800_000_000_000
CONDITION_FAILED = "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException"


@pytest.fixture
def server() -> Iterator[Scripted]:
    with running_server() as scripted:
        yield scripted


def store_on(port: int) -> DynamoDBIdempotencyStore:
    return DynamoDBIdempotencyStore("idem", client_args={
        "endpoint_url": f"http://127.0.0.1:{port}", "region_name": "eu-west-1",
        "aws_access_key_id": "a", "aws_secret_access_key": "b"})


def the_first_write(seen: list[dict[str, Any]]) -> dict[str, Any]:
    """DynamoDB's answer to the retry: the condition failed on the item the first try wrote."""
    return {"__type": CONDITION_FAILED, "message": "The conditional request failed",
            "Item": seen[0]["body"]["Item"]}


async def test_a_retried_claim_that_finds_its_own_write_holds_the_claim(
        server: Scripted) -> None:
    server.replies = [(0, {}, True), (400, the_first_write, True)]
    claim = await store_on(server.server_port).begin("k", now_ms=NOW_MS, lease_ms=30_000)
    assert claim.status == "claimed"
    assert claim.token == server.seen[0]["body"]["Item"]["token"]["S"]
    assert len(server.seen) == 2


async def test_another_deliverys_claim_is_still_in_progress(server: Scripted) -> None:
    def someone_elses(seen: list[dict[str, Any]]) -> dict[str, Any]:
        item = dict(seen[0]["body"]["Item"])
        item["token"] = {"S": "another-delivery"}
        return {"__type": CONDITION_FAILED, "message": "failed", "Item": item}

    server.replies = [(400, someone_elses, True)]
    claim = await store_on(server.server_port).begin("k", now_ms=NOW_MS, lease_ms=30_000)
    assert claim.status == "in_progress"
