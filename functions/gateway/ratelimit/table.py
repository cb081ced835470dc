"""The rate-limit table as a CloudFormation resource (pure; no ``infra`` import)."""

from __future__ import annotations

from typing import Any

from functions.shared.table_resources import hash_key_table, table_access

KEY_ATTRIBUTE = "bucket"
TTL_ATTRIBUTE = "expires_at"

# What a function role needs: a consistent GetItem (read) and a conditional PutItem (take).
RATE_LIMIT_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem")


def rate_limit_table(table_name: str | None = None) -> dict[str, Any]:
    """The ``AWS::DynamoDB::Table`` resource: hash key ``bucket`` (S), on-demand billing, TTL
    on ``expires_at``. Without ``table_name`` CloudFormation names it."""
    return hash_key_table(KEY_ATTRIBUTE, table_name=table_name, ttl_attribute=TTL_ATTRIBUTE)


def rate_limit_access(logical_id: str) -> dict[str, Any]:
    """The IAM policy statement a function role needs to use the table ``logical_id``."""
    return table_access(logical_id, RATE_LIMIT_ACTIONS)
