"""A scratch DynamoDB table made from the stack's own CloudFormation table resource (the API
takes the same property names) and deleted afterwards: for bench runs on the emulator, the
integration tests (``tests.support.scratch_table``) and the chaos scenarios
(``proof.chaos.stack.idempotency_table_on``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import boto3


def dynamodb_client(client_args: Mapping[str, Any]) -> Any:
    return boto3.session.Session().client("dynamodb", **client_args)


@contextmanager
def scratch_table(dynamodb: Any, prefix: str, resource: Mapping[str, Any], *,
                  ttl: bool = False, wait_s: int = 60) -> Iterator[str]:
    """``<prefix>-<random>`` with ``resource``'s keys and billing mode, and its TTL turned on
    when ``ttl`` is set."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    props = resource["Properties"]
    dynamodb.create_table(TableName=name, BillingMode=props["BillingMode"],
                          AttributeDefinitions=props["AttributeDefinitions"],
                          KeySchema=props["KeySchema"])
    try:
        dynamodb.get_waiter("table_exists").wait(
            TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": wait_s})
        if ttl and "TimeToLiveSpecification" in props:
            dynamodb.update_time_to_live(
                TableName=name, TimeToLiveSpecification=props["TimeToLiveSpecification"])
        yield name
    finally:
        dynamodb.delete_table(TableName=name)
