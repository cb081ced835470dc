"""The async operations table as a CloudFormation resource (pure; no ``infra`` import)."""

from __future__ import annotations

from typing import Any

from functions.shared.table_resources import hash_key_table, table_access

KEY_ATTRIBUTE = "id"
TTL_ATTRIBUTE = "expires_at"

# What the edge and the recorder call: conditional PutItem (create), consistent GetItem
# (status reads, and a lost condition's record) and conditional UpdateItem (complete).
OPERATIONS_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")


def operations_table(table_name: str | None = None) -> dict[str, Any]:
    """The ``AWS::DynamoDB::Table`` resource: hash key ``id`` (S), on-demand billing, TTL on
    ``expires_at``. Without ``table_name`` CloudFormation names it."""
    return hash_key_table(KEY_ATTRIBUTE, table_name=table_name, ttl_attribute=TTL_ATTRIBUTE)


def operations_access(logical_id: str) -> dict[str, Any]:
    """The IAM policy statement a function role needs to use the table ``logical_id``."""
    return table_access(logical_id, OPERATIONS_ACTIONS)
