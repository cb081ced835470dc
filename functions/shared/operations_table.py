"""The async operations table as a CloudFormation resource (pure; no ``infra`` import)."""

from __future__ import annotations

from typing import Any

KEY_ATTRIBUTE = "id"
TTL_ATTRIBUTE = "expires_at"

# What the edge and the recorder call: conditional PutItem (create), consistent GetItem
# (status reads, and a lost condition's record) and conditional UpdateItem (complete).
OPERATIONS_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")


def operations_table(table_name: str | None = None) -> dict[str, Any]:
    """The ``AWS::DynamoDB::Table`` resource: hash key ``id`` (S), on-demand billing, TTL on
    ``expires_at``. Without ``table_name`` CloudFormation names it."""
    properties: dict[str, Any] = {
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": KEY_ATTRIBUTE, "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": KEY_ATTRIBUTE, "KeyType": "HASH"}],
        "TimeToLiveSpecification": {"AttributeName": TTL_ATTRIBUTE, "Enabled": True},
    }
    if table_name is not None:
        properties["TableName"] = table_name
    return {"Type": "AWS::DynamoDB::Table", "Properties": properties}


def operations_access(logical_id: str) -> dict[str, Any]:
    """The IAM policy statement a function role needs to use the table ``logical_id``."""
    return {
        "Effect": "Allow",
        "Action": list(OPERATIONS_ACTIONS),
        "Resource": {"Fn::GetAtt": [logical_id, "Arn"]},
    }
