"""DynamoDB tables as CloudFormation resources (pure; no ``infra`` import): every table of
the stack has one string hash key, on-demand billing, and a TTL or point-in-time recovery."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def hash_key_table(key: str, *, table_name: str | None = None, ttl_attribute: str | None = None,
                   point_in_time_recovery: bool = False) -> dict[str, Any]:
    """An ``AWS::DynamoDB::Table`` keyed by the string ``key``. Without ``table_name``
    CloudFormation names it."""
    properties: dict[str, Any] = {
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": key, "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": key, "KeyType": "HASH"}],
    }
    if ttl_attribute is not None:
        properties["TimeToLiveSpecification"] = {"AttributeName": ttl_attribute,
                                                 "Enabled": True}
    if point_in_time_recovery:
        properties["PointInTimeRecoverySpecification"] = {"PointInTimeRecoveryEnabled": True}
    if table_name is not None:
        properties["TableName"] = table_name
    return {"Type": "AWS::DynamoDB::Table", "Properties": properties}


def table_access(logical_id: str, actions: Sequence[str]) -> dict[str, Any]:
    """The IAM statement allowing ``actions`` on the table ``logical_id``."""
    return {"Effect": "Allow", "Action": list(actions),
            "Resource": {"Fn::GetAtt": [logical_id, "Arn"]}}
