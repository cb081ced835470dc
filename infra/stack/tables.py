"""CloudFormation resources of the stack's DynamoDB tables (pure: dicts in, dicts out).

The idempotency table backs ``functions.shared.dynamodb_idempotency``: hash key ``id`` (the
message id), TTL on ``expires_at`` (epoch seconds), billed per request.
"""

from __future__ import annotations

from typing import Any

from functions.shared.table_resources import hash_key_table, table_access

IDEMPOTENCY_KEY = "id"
IDEMPOTENCY_TTL_ATTRIBUTE = "expires_at"
# What the store calls: conditional PutItem (claim, complete), DeleteItem (release), and a
# consistent GetItem when a failed condition did not return the old item.
IDEMPOTENCY_ACTIONS = ("dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem")


def idempotency_table(table_name: str | None = None) -> dict[str, Any]:
    """The ``AWS::DynamoDB::Table`` resource. Without ``table_name`` CloudFormation names it
    (pass the name to functions with ``{"Ref": logical_id}``)."""
    return hash_key_table(IDEMPOTENCY_KEY, table_name=table_name,
                          ttl_attribute=IDEMPOTENCY_TTL_ATTRIBUTE)


def idempotency_access(logical_id: str) -> dict[str, Any]:
    """The IAM policy statement a function role needs to use the table ``logical_id``."""
    return table_access(logical_id, IDEMPOTENCY_ACTIONS)
