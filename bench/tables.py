"""A scratch DynamoDB table on the emulator for a bench run, made from the stack's own
CloudFormation table resource and deleted afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import boto3


@contextmanager
def scratch_table(client_args: Mapping[str, Any], prefix: str,
                  resource: Mapping[str, Any]) -> Iterator[str]:
    """``bench-<prefix>-<random>`` with ``resource``'s key schema and billing mode."""
    ddb: Any = boto3.session.Session().client("dynamodb", **client_args)
    name = f"bench-{prefix}-{uuid.uuid4().hex[:10]}"
    props = resource["Properties"]
    ddb.create_table(TableName=name, BillingMode=props["BillingMode"],
                     AttributeDefinitions=props["AttributeDefinitions"],
                     KeySchema=props["KeySchema"])
    try:
        ddb.get_waiter("table_exists").wait(TableName=name,
                                            WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        yield name
    finally:
        ddb.delete_table(TableName=name)
