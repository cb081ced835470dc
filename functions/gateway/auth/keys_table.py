"""The API-keys table as a CloudFormation resource (pure; no ``infra`` import).

One item per key, hash key ``key_id`` (S): the key id is not secret, it only finds the
record; the item holds the peppered digest, never the key (see ``dynamodb_keys``).
"""

from __future__ import annotations

from typing import Any

KEY_ATTRIBUTE = "key_id"

# What the gateway and the authorizer need: a consistent GetItem. Issuing, listing and
# revoking are operator actions (``meshgate keys``), done with the operator's credentials.
API_KEYS_READ_ACTIONS = ("dynamodb:GetItem",)
API_KEYS_ADMIN_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                          "dynamodb:Scan")


def api_keys_table(table_name: str | None = None) -> dict[str, Any]:
    """The ``AWS::DynamoDB::Table`` resource: hash key ``key_id`` (S), on-demand billing,
    point-in-time recovery (a lost table means every client's key is gone). Without
    ``table_name`` CloudFormation names it."""
    properties: dict[str, Any] = {
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": KEY_ATTRIBUTE, "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": KEY_ATTRIBUTE, "KeyType": "HASH"}],
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
    }
    if table_name is not None:
        properties["TableName"] = table_name
    return {"Type": "AWS::DynamoDB::Table", "Properties": properties}


def api_keys_read_access(logical_id: str) -> dict[str, Any]:
    """The IAM statement a function role needs to check keys against table ``logical_id``."""
    return {
        "Effect": "Allow",
        "Action": list(API_KEYS_READ_ACTIONS),
        "Resource": {"Fn::GetAtt": [logical_id, "Arn"]},
    }
