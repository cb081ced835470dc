"""The API-keys table as a CloudFormation resource (pure; no ``infra`` import).

One item per key, hash key ``key_id`` (S): the key id is not secret, it only finds the
record; the item holds the peppered digest, never the key (see ``dynamodb_keys``).
"""

from __future__ import annotations

from typing import Any

from functions.shared.table_resources import hash_key_table, table_access

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
    return hash_key_table(KEY_ATTRIBUTE, table_name=table_name, point_in_time_recovery=True)


def api_keys_read_access(logical_id: str) -> dict[str, Any]:
    """The IAM statement a function role needs to check keys against table ``logical_id``."""
    return table_access(logical_id, API_KEYS_READ_ACTIONS)
